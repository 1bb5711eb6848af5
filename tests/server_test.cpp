// The server over loopback, with real faces: NUAA subject 0001 ("alice") enrols from her first
// recording and logs in from her second; subject 0002 and alice's printed photo try to log in as
// her. Also the API's contract: OpenAPI document, errors, limits, sessions, CSRF, lockout.

#include "facelogin/server.h"

#include <fmt/format.h>
#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include <atomic>
#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <boost/beast/websocket.hpp>
#include <fstream>
#include <iterator>
#include <map>
#include <random>
#include <nlohmann/json.hpp>
#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>
#include <thread>

#include "facelogin/auth.h"
#include "facelogin/auth_store.h"
#include "facelogin/liveness.h"
#include "server/api.h"
#include "facelogin/models.h"
#include "store_backends.h"
#include "synthetic_faces.h"
#include "test_data.h"
#include "test_engine.h"

namespace facelogin {
namespace {

namespace fs = std::filesystem;
namespace beast = boost::beast;
namespace http = beast::http;
namespace net = boost::asio;
using json = nlohmann::json;

struct Reply {
  unsigned status = 0;
  json body;
  std::string raw;
  std::map<std::string, std::string> headers;
};

std::string read_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

// One request on a new connection.
Reply call(std::uint16_t port, http::verb method, const std::string& target,
           const std::string& body = "", const std::string& type = "",
           const std::map<std::string, std::string>& headers = {},
           const std::string& source = "127.0.0.1") {
  net::io_context ioc;
  beast::tcp_stream stream(ioc);
  // Any 127.x.y.z is this machine: a different source address is another client.
  stream.socket().open(net::ip::tcp::v4());
  stream.socket().bind(net::ip::tcp::endpoint(net::ip::make_address(source), 0));
  stream.connect(net::ip::tcp::endpoint(net::ip::make_address("127.0.0.1"), port));
  http::request<http::string_body> req(method, target, 11);
  req.set(http::field::host, "127.0.0.1");
  if (!type.empty()) {
    req.set(http::field::content_type, type);
  }
  for (const auto& [k, v] : headers) {
    req.set(k, v);
  }
  req.body() = body;
  req.prepare_payload();
  http::write(stream, req);
  beast::flat_buffer buffer;
  http::response_parser<http::string_body> parser;
  parser.body_limit(16 << 20);
  beast::error_code ec;
  http::read(stream, buffer, parser, ec);
  Reply r;
  if (ec) {
    r.status = 0;
    return r;
  }
  auto& res = parser.get();
  r.status = res.result_int();
  r.raw = res.body();
  for (const auto& field : res) {
    r.headers[std::string(field.name_string())] = std::string(field.value());
  }
  r.body = json::parse(r.raw, nullptr, false);
  return r;
}

Reply post_json(std::uint16_t port, const std::string& target, const json& body,
                const std::map<std::string, std::string>& headers = {}) {
  return call(port, http::verb::post, target, body.dump(), "application/json", headers);
}

class ServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    FACELOGIN_REQUIRE_DATA(data);
    FACELOGIN_REQUIRE_ENGINE(engine);
    nuaa_ = data / "nuaa";
    if (!fs::is_directory(nuaa_)) {
      GTEST_SKIP() << nuaa_ << " not found: skipping real-face test";
    }
    auto liveness = LivenessModels::load(*testing::model_dir());
    if (!liveness) {
      GTEST_SKIP() << "liveness models unavailable: " << liveness.error().message();
    }
    dir_ = testing::make_temp_dir("facelogin-server");
    SqliteStoreOptions store_options;
    store_options.key = std::string(32, '\x44');
    auto store = open_sqlite_store(dir_ / "facelogin.db", store_options);
    ASSERT_TRUE(store) << store.error().to_string();
    store_ = std::move(*store);
    auto auth = open_sqlite_auth_store(dir_ / "facelogin.db");
    ASSERT_TRUE(auth) << auth.error().to_string();
    auth_store_ = std::move(*auth);
    deps_.engine = engine;
    deps_.store = store_.get();
    deps_.auth_store = auth_store_.get();
    deps_.liveness = *liveness;
    options_.port = 0;
    options_.workers = 2;
    // Sanitizer builds run frames ten times slower than a camera; the deadline is about the
    // stream, not the machine.
    options_.login.liveness.deadline = std::chrono::seconds(120);
    options_.flow_ttl = std::chrono::seconds(180);
  }

  void TearDown() override {
    if (server_) {
      server_->stop();
    }
    server_.reset();
    if (!dir_.empty()) {
      fs::remove_all(dir_);
    }
  }

  // An application's API key, as `facelogin apikeys create` makes it.
  std::string make_key(const std::string& name, std::vector<std::string> scopes,
                       const std::string& liveness = "") {
    auto key = new_api_key();
    EXPECT_TRUE(key);
    ApiKeyRecord record;
    record.name = name;
    record.scopes = std::move(scopes);
    record.liveness = liveness;
    EXPECT_TRUE(auth_store_->create_api_key(record, token_hash(*key)));
    return *key;
  }

  // The key the helpers send with bearer-session requests.
  std::map<std::string, std::string> key_for(const std::string& session) {
    if (session != "bearer") {
      return {};
    }
    if (app_key_.empty()) {
      // Configured passive, as an application that runs its own camera loop and accepts that
      // risk would: under the default (adaptive) every bearer login steps up to the challenge,
      // which a recording cannot answer (AdaptiveStepsUpTheLoginsThatNeedIt).
      app_key_ = make_key("tests", {"login", "enroll"}, "passive");
    }
    return {{"X-API-Key", app_key_}};
  }

  void start() {
    auto server = Server::start(options_, deps_);
    ASSERT_TRUE(server) << server.error().to_string();
    server_ = std::move(*server);
    port_ = server_->port();
  }

  // The frames of one NUAA recording in camera order.
  std::vector<fs::path> recording(const std::string& folder, const std::string& prefix) {
    std::vector<fs::path> out;
    for (const auto& [n, path] : testing::recording_frames(nuaa_ / folder, prefix)) {
      out.push_back(path);
    }
    return out;
  }

  // Enrols `user` from a recording; returns the finish reply.
  Reply enrol(const std::string& user, const std::vector<fs::path>& frames,
              const std::string& session = "bearer") {
    EXPECT_FALSE(frames.empty()) << "no frames for this recording";
    Reply start = post_json(port_, "/api/v1/enrollments", {{"user", user}, {"session", session}},
                            key_for(session));
    EXPECT_EQ(start.status, 201u) << start.raw;
    const std::string id = start.body.value("id", "");
    bool ready = false;
    for (const auto& f : frames) {
      Reply r = call(port_, http::verb::post, "/api/v1/enrollments/" + id + "/frames", read_file(f),
                     "image/jpeg");
      EXPECT_EQ(r.status, 200u) << r.raw;
      if (r.body.value("ready", false)) {
        ready = true;
        break;
      }
    }
    EXPECT_TRUE(ready) << "enrolment never became ready";
    return call(port_, http::verb::post, "/api/v1/enrollments/" + id + "/finish");
  }

  // Plays a recording as a login attempt for `user`; returns the last frame's reply.
  Reply login(const std::string& user, const std::vector<fs::path>& frames,
              const std::string& session = "bearer") {
    EXPECT_FALSE(frames.empty()) << "no frames for this recording";
    Reply start = post_json(port_, "/api/v1/login/attempts", {{"user", user}, {"session", session}},
                            key_for(session));
    if (start.status != 201u) {
      return start;
    }
    const std::string id = start.body["id"];
    const std::string nonce = start.body["nonce"];
    Reply last;
    for (const auto& f : frames) {
      last = call(port_, http::verb::post, "/api/v1/login/attempts/" + id + "/frames", read_file(f),
                  "image/jpeg", {{"X-Attempt-Nonce", nonce}});
      if (last.status != 200u || last.body.value("state", "") != "pending") {
        break;
      }
    }
    return last;
  }

  fs::path nuaa_;
  fs::path dir_;
  std::unique_ptr<Store> store_;
  std::unique_ptr<AuthStore> auth_store_;
  ServerDeps deps_;
  ServerOptions options_;
  std::unique_ptr<Server> server_;
  std::uint16_t port_ = 0;
  std::string app_key_;
};

TEST_F(ServerTest, HealthMetricsAndSecurityHeaders) {
  start();
  Reply health = call(port_, http::verb::get, "/healthz");
  EXPECT_EQ(health.status, 200u);
  EXPECT_EQ(health.headers["X-Content-Type-Options"], "nosniff");
  EXPECT_NE(health.headers["Content-Security-Policy"].find("frame-ancestors 'none'"),
            std::string::npos);
  EXPECT_EQ(health.headers["Content-Security-Policy"].find("unsafe-inline"), std::string::npos);
  Reply ready = call(port_, http::verb::get, "/readyz");
  EXPECT_EQ(ready.status, 200u) << ready.raw;
  EXPECT_EQ(ready.body["liveness"], true);
  Reply metrics = call(port_, http::verb::get, "/metrics");
  EXPECT_EQ(metrics.status, 200u);
  EXPECT_NE(metrics.raw.find("facelogin_http_requests_total{route=\"/healthz\",status=\"200\"} 1"),
            std::string::npos)
      << metrics.raw;
  EXPECT_NE(metrics.raw.find("facelogin_workers 2"), std::string::npos);
}

TEST_F(ServerTest, OpenApiDocumentListsExactlyTheRoutes) {
  start();
  Reply doc = call(port_, http::verb::get, "/api/v1/openapi.json");
  ASSERT_EQ(doc.status, 200u);
  std::size_t operations = 0;
  for (const auto& [path, methods] : doc.body["paths"].items()) {
    operations += methods.size();
  }
  EXPECT_EQ(operations, server::Api::routes().size());
  for (const auto& route : server::Api::routes()) {
    std::string method(http::to_string(route.method));
    for (auto& ch : method) {
      ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
    }
    EXPECT_TRUE(doc.body["paths"][route.pattern].contains(method)) << route.pattern;
    // Every documented operation exists: it never answers "no such endpoint" or 405.
    std::string target;
    bool in_placeholder = false;
    for (char ch : route.pattern) {
      if (ch == '{') {
        in_placeholder = true;
        target += '1';
      } else if (ch == '}') {
        in_placeholder = false;
      } else if (!in_placeholder) {
        target += ch;
      }
    }
    Reply r = call(port_, route.method, target);
    EXPECT_NE(r.status, 405u) << route.pattern;
    if (r.status == 404u) {
      EXPECT_NE(r.body["error"]["message"], "no such endpoint") << route.pattern;
    }
  }
  EXPECT_EQ(call(port_, http::verb::put, "/api/v1/login/attempts").status, 405u);
  EXPECT_EQ(call(port_, http::verb::get, "/api/v1/nothing").status, 404u);
  // A target that is not a path is refused, not matched after its first character (api_fuzzer
  // found "&metrics" answered as /metrics).
  for (const char* target : {"&metrics", "Xapi/v1/session", "*", "http://x/metrics"}) {
    Reply bad = call(port_, http::verb::get, target);
    EXPECT_EQ(bad.status, 400u) << target << ": " << bad.raw;
    EXPECT_NE(bad.raw.find("starts with /"), std::string::npos) << target;
  }
}

TEST_F(ServerTest, EnrolLogInUseTheSessionAndDeleteTheAccount) {
  start();
  Reply enrolled = enrol("alice", recording("ClientRaw/0001", "0001_00_00_01_"), "cookie");
  ASSERT_EQ(enrolled.status, 201u) << enrolled.raw;
  EXPECT_EQ(enrolled.body["templates"], 5);
  const std::string recovery = enrolled.body["recovery_code"];
  EXPECT_EQ(recovery.size(), 64u);
  EXPECT_NE(enrolled.headers["Set-Cookie"].find("HttpOnly"), std::string::npos);
  EXPECT_NE(enrolled.headers["Set-Cookie"].find("SameSite=Strict"), std::string::npos);

  // The name is now taken.
  EXPECT_EQ(post_json(port_, "/api/v1/enrollments", {{"user", "alice"}}).status, 409u);

  // Her second recording logs her in.
  Reply in = login("alice", recording("ClientRaw/0001", "0001_00_00_02_"));
  ASSERT_EQ(in.status, 200u) << in.raw;
  ASSERT_EQ(in.body["state"], "accepted") << in.raw;
  EXPECT_FALSE(in.body.contains("score")) << "per-frame scores must not reach the client";
  const std::string token = in.body["session"]["token"];
  const std::map<std::string, std::string> bearer = {{"Authorization", "Bearer " + token}};

  Reply account = call(port_, http::verb::get, "/api/v1/account", "", "", bearer);
  ASSERT_EQ(account.status, 200u) << account.raw;
  EXPECT_EQ(account.body["user"], "alice");
  EXPECT_EQ(account.body["faces"].size(), 5u);
  EXPECT_EQ(account.raw.find("embedding"), std::string::npos);
  EXPECT_EQ(account.body["sessions"].size(), 2u);  // the enrolment's cookie, this bearer

  // /metrics has the latency of every stage of the frames just processed.
  Reply metrics = call(port_, http::verb::get, "/metrics");
  for (const char* stage : {"decode", "detect", "quality", "align", "embed", "liveness"}) {
    EXPECT_NE(metrics.raw.find(fmt::format(
                  "facelogin_stage_seconds_count{{flow=\"login\",stage=\"{}\"}}", stage)),
              std::string::npos)
        << stage;
  }
  EXPECT_NE(metrics.raw.find("facelogin_decisions_total{flow=\"login\",outcome=\"ok\"} 1"),
            std::string::npos);

  // A cookie session needs the CSRF header for anything that changes state.
  const std::string cookie =
      enrolled.headers["Set-Cookie"].substr(0, enrolled.headers["Set-Cookie"].find(';'));
  Reply session = call(port_, http::verb::get, "/api/v1/session", "", "", {{"Cookie", cookie}});
  ASSERT_EQ(session.status, 200u);
  const std::string csrf = session.body["csrf"];
  EXPECT_EQ(
      call(port_, http::verb::post, "/api/v1/account/recovery-code", "", "", {{"Cookie", cookie}})
          .status,
      403u);
  EXPECT_EQ(call(port_, http::verb::post, "/api/v1/account/recovery-code", "", "",
                 {{"Cookie", cookie}, {"X-CSRF-Token", std::string(64, 'a')}})
                .status,
            403u);
  Reply fresh = call(port_, http::verb::post, "/api/v1/account/recovery-code", "", "",
                     {{"Cookie", cookie}, {"X-CSRF-Token", csrf}});
  EXPECT_EQ(fresh.status, 200u) << fresh.raw;

  // Logout ends the cookie session only.
  EXPECT_EQ(call(port_, http::verb::post, "/api/v1/logout", "", "",
                 {{"Cookie", cookie}, {"X-CSRF-Token", csrf}})
                .status,
            200u);
  EXPECT_EQ(call(port_, http::verb::get, "/api/v1/session", "", "", {{"Cookie", cookie}}).status,
            401u);
  EXPECT_EQ(call(port_, http::verb::get, "/api/v1/session", "", "", bearer).status, 200u);

  // The audit log has the enrolment and the login, with scores but no templates.
  auto events = auth_store_->list_audit({});
  ASSERT_TRUE(events);
  std::map<std::string, std::string> outcome;
  for (const auto& e : *events) {
    outcome[e.event] = e.outcome;
    EXPECT_EQ(e.detail.find("embedding"), std::string::npos);
    EXPECT_EQ(e.detail.find(token), std::string::npos);
  }
  EXPECT_EQ(outcome["enroll"], "ok");
  EXPECT_EQ(outcome["login"], "ok");
  EXPECT_EQ(outcome["logout"], "ok");

  // Deleting the account removes the faces and ends every session.
  EXPECT_EQ(call(port_, http::verb::delete_, "/api/v1/account", "", "", bearer).status, 200u);
  EXPECT_EQ(call(port_, http::verb::get, "/api/v1/account", "", "", bearer).status, 401u);
  EXPECT_FALSE(store_->get_user("alice"));
}

TEST_F(ServerTest, ImpostorPhotoAndUnknownNameAreRefusedThenLockedOut) {
  start();
  ASSERT_EQ(enrol("alice", recording("ClientRaw/0001", "0001_00_00_01_")).status, 201u);

  Reply impostor = login("alice", recording("ClientRaw/0002", "0002_01_00_01_"));
  ASSERT_EQ(impostor.status, 200u) << impostor.raw;
  EXPECT_EQ(impostor.body["state"], "rejected");
  EXPECT_EQ(impostor.body["reason"], "no_match");
  EXPECT_FALSE(impostor.body.contains("session"));

  Reply photo = login("alice", recording("ImposterRaw/0001", "0001_00_01_02_"));
  ASSERT_EQ(photo.status, 200u) << photo.raw;
  EXPECT_EQ(photo.body["state"], "rejected");
  EXPECT_EQ(photo.body["reason"], "not_live");
  {
    auto events = auth_store_->list_audit({.subject = "alice", .before_id = 0, .limit = 1});
    ASSERT_TRUE(events);
    EXPECT_NE(events->front().detail.find(R"("signal":"passive_liveness")"), std::string::npos)
        << events->front().detail;
  }

  // An unknown name fails like a wrong face: the answer does not say the account is missing.
  Reply unknown = login("carol", recording("ClientRaw/0001", "0001_00_00_02_"));
  ASSERT_EQ(unknown.status, 200u) << unknown.raw;
  EXPECT_EQ(unknown.body["reason"], "no_match");

  // Failures on alice from this address: 2 so far, counted for the address and the pair. The
  // address is one alice enrolled from (a known context), so the account-wide counter, which
  // only strangers' attempts feed, has none.
  auto st = auth_store_->failure_state("pair:127.0.0.1/alice");
  ASSERT_TRUE(st);
  EXPECT_EQ(st->failures, 2);
  EXPECT_EQ(auth_store_->failure_state("user:alice")->failures, 0);
  // Three more and the next start from here is refused for a while, even with her own face.
  for (int i = 0; i < 4; ++i) {
    ASSERT_TRUE(auth_store_->record_failure("pair:127.0.0.1/alice", 0, 1, {}));
  }
  ASSERT_TRUE(auth_store_->record_failure("pair:127.0.0.1/alice",
                                          std::chrono::duration_cast<std::chrono::milliseconds>(
                                              std::chrono::system_clock::now().time_since_epoch())
                                              .count(),
                                          86'400'000, [](int) { return 60'000; }));
  Reply locked = post_json(port_, "/api/v1/login/attempts", {{"user", "alice"}});
  EXPECT_EQ(locked.status, 429u) << locked.raw;
  EXPECT_FALSE(locked.headers["Retry-After"].empty());
  // The recovery code path is locked too, from this address.
  Reply recovery = post_json(port_, "/api/v1/login/recovery",
                             {{"user", "alice"}, {"code", std::string(64, '0')}});
  EXPECT_EQ(recovery.status, 429u);
}

TEST_F(ServerTest, FaceOnlyLoginFindsAliceWhileTheGalleryIsSmall) {
  // Under the default (adaptive) a face-only login always steps up to the challenge.
  options_.login.liveness.policy = LivenessPolicy::kPassive;
  start();
  ASSERT_EQ(enrol("alice", recording("ClientRaw/0001", "0001_00_00_01_")).status, 201u);

  Reply alice = login("", recording("ClientRaw/0001", "0001_00_00_02_"));
  ASSERT_EQ(alice.status, 200u) << alice.raw;
  ASSERT_EQ(alice.body["state"], "accepted") << alice.raw;
  EXPECT_EQ(alice.body["session"]["user"], "alice");

  Reply stranger = login("", recording("ClientRaw/0002", "0002_01_00_01_"));
  ASSERT_EQ(stranger.status, 200u) << stranger.raw;
  EXPECT_EQ(stranger.body["state"], "rejected");
  EXPECT_EQ(stranger.body["reason"], "no_match");
  // The failure counts against the address (no account was named or found).
  auto st = auth_store_->failure_state("addr:127.0.0.1");
  ASSERT_TRUE(st);
  EXPECT_EQ(st->failures, 1);

  // Five templates at 1e-5 each: a bound of 1e-5 per attempt is too tight for them.
  server_->stop();
  options_.identify_max_fmr = 1e-5;
  start();
  Reply refused = post_json(port_, "/api/v1/login/attempts", json::object());
  EXPECT_EQ(refused.status, 403u) << refused.raw;
  EXPECT_NE(refused.raw.find("user name"), std::string::npos);
}

// Issue 15: face-only login is offered while the enrolled population's bound allows it, and the
// audit log records the operating threshold when it moves.
TEST_F(ServerTest, FaceOnlyLoginFollowsThePopulationAndThresholdChangesAreAudited) {
  options_.identify_max_fmr = 4e-5;
  // A small population for a test (the product waits for 30 people and 1e-5).
  options_.gallery.population.min_users = 5;
  options_.gallery.population.target_fmr = 1e-3;
  start();
  std::mt19937 rng(9);
  const std::string model = deps_.engine->recognizer().id;
  const auto shared = testing::random_direction(
      static_cast<std::size_t>(recognizer_embedding_size(deps_.engine->recognizer())), rng);
  const auto add = [&](const std::string& name, float likeness, int faces) {
    ASSERT_TRUE(store_->create_user(name, testing::synthetic_person(model, shared, likeness,
                                                                    faces, rng)));
  };
  const auto threshold_events = [&] {
    std::vector<json> out;
    auto events = auth_store_->list_audit({.subject = "", .before_id = 0, .limit = 1000});
    EXPECT_TRUE(events);
    for (const auto& e : *events) {
      if (e.event == "operating_threshold") {
        out.push_back(json::parse(e.detail));
      }
    }
    return out;  // newest first
  };
  // Three people of one face each: too few for an estimate; LFW's rate x 3 faces = 3e-5.
  for (int i = 0; i < 3; ++i) add("stranger" + std::to_string(i), 0.f, 1);
  Reply allowed = post_json(port_, "/api/v1/login/attempts", json::object());
  EXPECT_EQ(allowed.status, 201u) << allowed.raw;

  // Five: over the 4e-5 allowed (their 20 claims cannot resolve an estimate yet: LFW's rate).
  for (int i = 3; i < 5; ++i) add("stranger" + std::to_string(i), 0.f, 1);
  Reply refused = post_json(port_, "/api/v1/login/attempts", json::object());
  EXPECT_EQ(refused.status, 403u) << refused.raw;

  // Look-alikes raise the operating threshold; the next decision records it (someone else's
  // face claiming stranger0, refused).
  for (int i = 0; i < 6; ++i) add("twin" + std::to_string(i), 0.92f, 3);
  Reply decided = login("stranger0", recording("ClientRaw/0002", "0002_01_00_01_"), "bearer");
  EXPECT_EQ(decided.body.value("state", ""), "rejected") << decided.raw;
  const auto events = threshold_events();
  ASSERT_EQ(events.size(), 1u);
  const float base = deps_.engine->recognizer().cosine_threshold();
  EXPECT_GT(events[0]["operating_threshold"].get<float>(), base + 0.02f) << events[0].dump();
  EXPECT_FLOAT_EQ(events[0]["base_threshold"].get<float>(), base);
  EXPECT_EQ(events[0]["users"], 11);
  // With an estimate, face-only login is bounded by the people: 11 x 1e-3 per claim.
  Reply bounded = post_json(port_, "/api/v1/login/attempts", json::object());
  EXPECT_EQ(bounded.status, 403u) << bounded.raw;
  EXPECT_NE(bounded.raw.find("enrolled people"), std::string::npos) << bounded.raw;
  // The admin overview shows the same.
  ASSERT_TRUE(auth_store_->set_admin("stranger0", true).ok());
  const std::string admin_key = make_key("ops", {"admin"});
  Reply stats = call(port_, http::verb::get, "/api/v1/admin/stats", "", "",
                     {{"X-API-Key", admin_key}});
  ASSERT_EQ(stats.status, 200u) << stats.raw;
  EXPECT_EQ(stats.body["recognition"]["operating_threshold"], events[0]["operating_threshold"]);
  Reply metrics = call(port_, http::verb::get, "/metrics");
  EXPECT_NE(metrics.raw.find("facelogin_threshold_operating"), std::string::npos);
  EXPECT_NE(metrics.raw.find("facelogin_population_users 11"), std::string::npos) << metrics.raw;
}

TEST_F(ServerTest, AdminRoutesAreForAdminsOnly) {
  start();
  Reply alice = enrol("alice", recording("ClientRaw/0001", "0001_00_00_01_"));
  ASSERT_EQ(alice.status, 201u) << alice.raw;
  Reply bob = enrol("bob", recording("ClientRaw/0002", "0002_01_00_01_"));
  ASSERT_EQ(bob.status, 201u) << bob.raw;
  const std::map<std::string, std::string> as_alice = {
      {"Authorization", "Bearer " + alice.body["session"]["token"].get<std::string>()}};
  const std::map<std::string, std::string> as_bob = {
      {"Authorization", "Bearer " + bob.body["session"]["token"].get<std::string>()}};

  // Nobody is an admin by default: every admin route refuses both, and anonymous callers.
  for (const auto& route : server::Api::routes()) {
    if (route.access != server::Access::kAdmin) {
      continue;
    }
    std::string target = route.pattern;
    if (const auto p = target.find("{name}"); p != std::string::npos) {
      target.replace(p, 6, "bob");
    }
    EXPECT_EQ(call(port_, route.method, target).status, 401u) << target;
    EXPECT_EQ(call(port_, route.method, target, "", "", as_alice).status, 403u) << target;
  }
  EXPECT_TRUE(store_->get_user("bob"));

  ASSERT_TRUE(auth_store_->set_admin("alice", true).ok());  // what `users admin alice` does
  Reply users = call(port_, http::verb::get, "/api/v1/admin/users?q=BO", "", "", as_alice);
  ASSERT_EQ(users.status, 200u) << users.raw;
  ASSERT_EQ(users.body["users"].size(), 1u);
  EXPECT_EQ(users.body["users"][0]["user"], "bob");
  EXPECT_EQ(users.body["users"][0]["faces"], 5);

  // Disabling bob ends his session and refuses his logins.
  EXPECT_EQ(
      call(port_, http::verb::post, "/api/v1/admin/users/bob/disable", "", "", as_alice).status,
      200u);
  EXPECT_EQ(call(port_, http::verb::get, "/api/v1/account", "", "", as_bob).status, 401u);
  Reply refused = login("bob", recording("ClientRaw/0002", "0002_01_00_01_"));
  EXPECT_EQ(refused.body["state"], "rejected") << refused.raw;
  EXPECT_EQ(
      call(port_, http::verb::post, "/api/v1/admin/users/bob/enable", "", "", as_alice).status,
      200u);
  EXPECT_EQ(
      call(port_, http::verb::post, "/api/v1/admin/users/alice/disable", "", "", as_alice).status,
      403u);

  Reply stats = call(port_, http::verb::get, "/api/v1/admin/stats", "", "", as_alice);
  ASSERT_EQ(stats.status, 200u);
  EXPECT_EQ(stats.body["users"], 2);
  EXPECT_EQ(stats.body["faces"], 10);
  EXPECT_GE(stats.body["last_24h"]["enroll:ok"].get<int>(), 2);

  // An application with the admin scope, no session.
  const std::string admin_app = make_key("directory", {"admin"});
  Reply listed =
      call(port_, http::verb::get, "/api/v1/admin/users", "", "", {{"X-API-Key", admin_app}});
  EXPECT_EQ(listed.status, 200u) << listed.raw;
  EXPECT_EQ(
      call(port_, http::verb::get, "/api/v1/admin/users", "", "", {{"X-API-Key", app_key_}}).status,
      401u);  // login/enroll scopes only, and no session

  EXPECT_EQ(call(port_, http::verb::delete_, "/api/v1/admin/users/bob", "", "", as_alice).status,
            200u);
  EXPECT_FALSE(store_->get_user("bob"));
  Reply audit =
      call(port_, http::verb::get, "/api/v1/admin/audit?subject=bob&limit=5", "", "", as_alice);
  ASSERT_EQ(audit.status, 200u);
  ASSERT_FALSE(audit.body["events"].empty());
  EXPECT_EQ(audit.body["events"][0]["event"], "delete_account");
  EXPECT_EQ(audit.body["events"][0]["actor"], "admin:alice");
  EXPECT_EQ(audit.raw.find("embedding"), std::string::npos);
}

TEST_F(ServerTest, BearerSessionsNeedAnApiKeyWithTheScope) {
  start();
  const std::string enroll_only = make_key("kiosk", {"enroll"});
  Reply none =
      post_json(port_, "/api/v1/login/attempts", {{"user", "alice"}, {"session", "bearer"}});
  EXPECT_EQ(none.status, 401u) << none.raw;
  EXPECT_NE(none.raw.find("X-API-Key"), std::string::npos);
  Reply scope = post_json(port_, "/api/v1/login/attempts",
                          {{"user", "alice"}, {"session", "bearer"}}, {{"X-API-Key", enroll_only}});
  EXPECT_EQ(scope.status, 403u) << scope.raw;
  Reply wrong = post_json(port_, "/api/v1/login/attempts", {{"user", "alice"}},
                          {{"X-API-Key", "flk_" + std::string(64, '0')}});
  EXPECT_EQ(wrong.status, 401u);
  // The web app's cookie sessions need no key.
  EXPECT_EQ(post_json(port_, "/api/v1/login/attempts", {{"user", "alice"}}).status, 201u);
  EXPECT_EQ(post_json(port_, "/api/v1/enrollments", {{"user", "carol"}, {"session", "bearer"}},
                      {{"X-API-Key", enroll_only}})
                .status,
            201u);
  ASSERT_TRUE(auth_store_->revoke_api_key("kiosk").ok());
  EXPECT_EQ(post_json(port_, "/api/v1/enrollments", {{"user", "dave"}, {"session", "bearer"}},
                      {{"X-API-Key", enroll_only}})
                .status,
            401u);
}

TEST_F(ServerTest, AnApiKeyCarriesItsOwnLivenessPolicy) {
  start();
  ASSERT_EQ(enrol("alice", recording("ClientRaw/0001", "0001_00_00_01_")).status, 201u);
  // Under the server's passive policy alice's printed photo is refused...
  Reply photo = login("alice", recording("ImposterRaw/0001", "0001_00_01_02_"));
  EXPECT_EQ(photo.body["reason"], "not_live") << photo.raw;
  // ...but a deployment that checks liveness itself (a kiosk with its own sensor) can turn it
  // off for its key, and the same face then matches.
  const std::string kiosk = make_key("kiosk", {"login"}, "off");
  Reply start = post_json(port_, "/api/v1/login/attempts",
                          {{"user", "alice"}, {"session", "bearer"}}, {{"X-API-Key", kiosk}});
  ASSERT_EQ(start.status, 201u) << start.raw;
  EXPECT_EQ(start.body["liveness"], false);
  Reply last;
  for (const auto& f : recording("ImposterRaw/0001", "0001_00_01_02_")) {
    last = call(port_, http::verb::post,
                "/api/v1/login/attempts/" + start.body["id"].get<std::string>() + "/frames",
                read_file(f), "image/jpeg", {{"X-Attempt-Nonce", start.body["nonce"]}});
    if (last.body.value("state", "") != "pending") {
      break;
    }
  }
  EXPECT_EQ(last.body["state"], "accepted") << last.raw;
  auto events = auth_store_->list_audit({.subject = "alice", .before_id = 0, .limit = 1});
  ASSERT_TRUE(events);
  EXPECT_EQ(events->front().outcome, "ok");

  // A key that asks for the active policy: the attempt carries a challenge, every answer says
  // what to do, and alice's live recording (which does not turn her head) is not let in.
  const std::string strict = make_key("bank", {"login"}, "active");
  start = post_json(port_, "/api/v1/login/attempts", {{"user", "alice"}, {"session", "bearer"}},
                    {{"X-API-Key", strict}});
  ASSERT_EQ(start.status, 201u) << start.raw;
  EXPECT_EQ(start.body["policy"], "active");
  EXPECT_EQ(start.body["challenge_steps"], 3);
  for (const auto& f : recording("ClientRaw/0001", "0001_00_00_02_")) {
    last = call(port_, http::verb::post,
                "/api/v1/login/attempts/" + start.body["id"].get<std::string>() + "/frames",
                read_file(f), "image/jpeg", {{"X-Attempt-Nonce", start.body["nonce"]}});
    ASSERT_EQ(last.status, 200u) << last.raw;
    ASSERT_TRUE(last.body.contains("challenge")) << last.raw;
    EXPECT_EQ(last.body["challenge"]["steps"], 3);
    EXPECT_FALSE(last.body["challenge"]["prompt"].get<std::string>().empty());
    if (last.body.value("state", "") != "pending") {
      break;
    }
  }
  EXPECT_NE(last.body["state"], "accepted") << last.raw;
  EXPECT_LT(last.body["progress"].get<double>(), 0.99) << last.raw;
}

TEST_F(ServerTest, StartsAreRateLimitedPerAddressAndPerAccount) {
  options_.starts_per_minute = 2;
  start();
  const auto start_as = [&](const std::string& user, const std::string& source) {
    return call(port_, http::verb::post, "/api/v1/login/attempts", json{{"user", user}}.dump(),
                "application/json", {}, source);
  };
  EXPECT_EQ(start_as("alice", "127.0.0.1").status, 201u);
  EXPECT_EQ(start_as("alice", "127.0.0.1").status, 201u);
  Reply address = start_as("bob", "127.0.0.1");
  EXPECT_EQ(address.status, 429u);
  EXPECT_NE(address.raw.find("address"), std::string::npos);
  EXPECT_FALSE(address.headers["Retry-After"].empty());
  // Another address, the same account: the account's own limit holds.
  Reply account = start_as("alice", "127.0.0.2");
  EXPECT_EQ(account.status, 429u);
  EXPECT_NE(account.raw.find("account"), std::string::npos);
  EXPECT_EQ(start_as("bob", "127.0.0.2").status, 201u);
}

// Issue 16: under the default policy (adaptive) passive liveness decides alone only for the web
// app's camera loop with strong evidence; the logins that need it are asked for the challenge in
// the same attempt, which a recording cannot answer.
TEST_F(ServerTest, AdaptiveStepsUpTheLoginsThatNeedIt) {
  start();
  // Alice's first NUAA session scores strongly live (LoginAttemptTest); she enrols from her second.
  ASSERT_EQ(enrol("alice", recording("ClientRaw/0001", "0001_00_00_02_"), "cookie").status, 201u);
  const auto live = recording("ClientRaw/0001", "0001_00_00_01_");
  // Plays `frames` into a new attempt; returns the last reply and whether any asked for a move.
  const auto play = [&](const std::vector<fs::path>& frames, const std::string& session,
                        const std::map<std::string, std::string>& headers) {
    Reply start = post_json(port_, "/api/v1/login/attempts", {{"user", "alice"}, {"session", session}},
                            headers);
    EXPECT_EQ(start.status, 201u) << start.raw;
    EXPECT_EQ(start.body["policy"], "adaptive") << start.raw;
    // Whether it will step up is not said at the start (it would tell who is an administrator).
    EXPECT_EQ(start.body["challenge_steps"], 0) << start.raw;
    std::pair<Reply, bool> out{{}, false};
    for (const auto& f : frames) {
      auto h = headers;
      h["X-Attempt-Nonce"] = start.body["nonce"];
      out.first = call(port_, http::verb::post,
                       "/api/v1/login/attempts/" + start.body["id"].get<std::string>() + "/frames",
                       read_file(f), "image/jpeg", h);
      out.second = out.second || out.first.body.contains("challenge");
      if (out.first.status != 200u || out.first.body.value("state", "") != "pending") {
        break;
      }
    }
    return out;
  };

  // The web app's loop (a cookie session) with strong evidence: in, without a challenge.
  auto [in, asked] = play(live, "cookie", {});
  EXPECT_EQ(in.body["state"], "accepted") << in.raw;
  EXPECT_FALSE(asked);

  // An application's client (bearer; its key leaves liveness to the server): asked.
  const std::string app = make_key("kiosk", {"login"});
  auto [by_app, app_asked] = play(live, "bearer", {{"X-API-Key", app}});
  EXPECT_TRUE(app_asked) << by_app.raw;
  EXPECT_NE(by_app.body["state"], "accepted") << by_app.raw;

  // An administrator: asked, though the evidence is as strong as before.
  ASSERT_TRUE(auth_store_->set_admin("alice", true).ok());
  auto [admin, admin_asked] = play(live, "cookie", {});
  EXPECT_TRUE(admin_asked) << admin.raw;
  EXPECT_NE(admin.body["state"], "accepted") << admin.raw;
  ASSERT_TRUE(auth_store_->set_admin("alice", false).ok());

  // A printed photo is refused as not_live, counts toward the lockout like a wrong face, and the
  // account's next logins are asked for the challenge.
  auto before = auth_store_->failure_state("pair:127.0.0.1/alice");
  ASSERT_TRUE(before);
  auto [photo, photo_asked] = play(recording("ImposterRaw/0001", "0001_00_01_02_"), "cookie", {});
  EXPECT_EQ(photo.body["reason"], "not_live") << photo.raw;
  EXPECT_FALSE(photo_asked);
  auto pair = auth_store_->failure_state("pair:127.0.0.1/alice");
  ASSERT_TRUE(pair);
  EXPECT_EQ(pair->failures, before->failures + 1);
  auto [after, after_asked] = play(live, "cookie", {});
  EXPECT_TRUE(after_asked) << after.raw;
  EXPECT_NE(after.body["state"], "accepted") << after.raw;
}

TEST_F(ServerTest, LivenessRefusalsCountTowardTheLockout) {
  options_.auth.free_failures = 2;
  start();
  ASSERT_EQ(enrol("alice", recording("ClientRaw/0001", "0001_00_00_01_"), "cookie").status, 201u);
  const auto print = recording("ImposterRaw/0001", "0001_00_01_02_");
  for (int i = 0; i < 3; ++i) {
    Reply refused = login("alice", print, "cookie");
    ASSERT_EQ(refused.status, 200u) << refused.raw;
    EXPECT_EQ(refused.body["reason"], "not_live") << refused.raw;
  }
  // Two free failures, the third locked the pair: a replay cannot be retried without limit.
  Reply locked = post_json(port_, "/api/v1/login/attempts", {{"user", "alice"}});
  EXPECT_EQ(locked.status, 429u) << locked.raw;
  // The audit log: the refused start, and before it the third not_live with its lock.
  auto events = auth_store_->list_audit({.subject = "alice", .before_id = 0, .limit = 2});
  ASSERT_TRUE(events);
  ASSERT_EQ(events->size(), 2u);
  EXPECT_EQ((*events)[0].outcome, "locked_out");
  EXPECT_EQ((*events)[1].outcome, "not_live");
  const json detail = json::parse((*events)[1].detail);
  EXPECT_GT(detail.value("locked_for_s", 0), 0) << (*events)[1].detail;
}

TEST_F(ServerTest, WebSocketStreamsALoginForAnApplication) {
  start();
  ASSERT_EQ(enrol("alice", recording("ClientRaw/0001", "0001_00_00_01_")).status, 201u);
  Reply attempt = post_json(port_, "/api/v1/login/attempts",
                            {{"user", "alice"}, {"session", "bearer"}}, key_for("bearer"));
  ASSERT_EQ(attempt.status, 201u);
  const std::string path =
      "/api/v1/login/attempts/" + attempt.body["id"].get<std::string>() + "/socket";

  net::io_context ioc;
  beast::websocket::stream<beast::tcp_stream> ws(ioc);
  beast::get_lowest_layer(ws).connect(
      net::ip::tcp::endpoint(net::ip::make_address("127.0.0.1"), port_));
  ws.set_option(beast::websocket::stream_base::decorator(
      [&](beast::websocket::request_type& req) { req.set("X-API-Key", app_key_); }));
  ws.handshake("127.0.0.1", path);
  const auto exchange = [&](const std::string& message, bool binary) {
    ws.binary(binary);
    ws.write(net::buffer(message));
    beast::flat_buffer buffer;
    ws.read(buffer);
    return json::parse(beast::buffers_to_string(buffer.data()));
  };
  EXPECT_EQ(exchange(json{{"nonce", attempt.body["nonce"]}}.dump(), false)["ok"], true);
  json last;
  for (const auto& f : recording("ClientRaw/0001", "0001_00_00_02_")) {
    last = exchange(read_file(f), true);
    ASSERT_EQ(last["status"], 200) << last.dump();
    if (last["state"] != "pending") {
      break;
    }
  }
  EXPECT_EQ(last["state"], "accepted") << last.dump();
  EXPECT_EQ(last["session"]["token"].get<std::string>().size(), 64u);
  beast::flat_buffer rest;
  beast::error_code ec;
  ws.read(rest, ec);  // the server closes the socket after the decision
  EXPECT_EQ(ec, beast::websocket::error::closed);
}

TEST_F(ServerTest, WebSocketAbuseIsRefused) {
  options_.max_frame_bytes = 64 * 1024;
  start();
  Reply cookie_attempt = post_json(port_, "/api/v1/login/attempts", {{"user", "alice"}});
  Reply bearer_attempt = post_json(port_, "/api/v1/login/attempts",
                                   {{"user", "alice"}, {"session", "bearer"}}, key_for("bearer"));
  ASSERT_EQ(bearer_attempt.status, 201u);
  const auto socket_path = [](const Reply& r) {
    return "/api/v1/login/attempts/" + r.body["id"].get<std::string>() + "/socket";
  };
  const auto handshake = [&](const std::string& path, const std::string& origin) {
    net::io_context ioc;
    beast::websocket::stream<beast::tcp_stream> ws(ioc);
    beast::get_lowest_layer(ws).connect(
        net::ip::tcp::endpoint(net::ip::make_address("127.0.0.1"), port_));
    ws.set_option(
        beast::websocket::stream_base::decorator([&](beast::websocket::request_type& req) {
          if (!origin.empty()) {
            req.set(http::field::origin, origin);
          }
        }));
    beast::websocket::response_type res;
    beast::error_code ec;
    ws.handshake(res, "127.0.0.1", path, ec);
    return res.result_int();
  };
  EXPECT_EQ(handshake(socket_path(cookie_attempt), ""), 400u);  // cookie sessions post
  EXPECT_EQ(handshake(socket_path(bearer_attempt), "https://evil.example"), 403u);
  EXPECT_EQ(handshake("/api/v1/login/attempts/nope/socket", ""), 404u);
  EXPECT_EQ(handshake("/api/v1/account", ""), 404u);
  EXPECT_EQ(call(port_, http::verb::get, socket_path(bearer_attempt)).status, 400u);
  // Each case below takes a flow's one socket: a fresh attempt for each.
  const auto fresh_attempt = [&] {
    Reply r = post_json(port_, "/api/v1/login/attempts", {{"user", "alice"}, {"session", "bearer"}},
                        key_for("bearer"));
    EXPECT_EQ(r.status, 201u) << r.raw;
    return r;
  };

  // Frames before the nonce, a message over the limit, and junk text.
  {
    net::io_context ioc;
    beast::websocket::stream<beast::tcp_stream> ws(ioc);
    beast::get_lowest_layer(ws).connect(
        net::ip::tcp::endpoint(net::ip::make_address("127.0.0.1"), port_));
    ws.handshake("127.0.0.1", socket_path(bearer_attempt));
    ws.binary(true);
    ws.write(net::buffer(std::string("not a frame")));
    beast::flat_buffer buffer;
    ws.read(buffer);
    const json no_nonce = json::parse(beast::buffers_to_string(buffer.data()));
    EXPECT_EQ(no_nonce["status"], 404) << no_nonce.dump();  // and the socket closes
    beast::error_code ec;
    ws.read(buffer, ec);
    EXPECT_TRUE(ec);
  }
  {
    net::io_context ioc;
    beast::websocket::stream<beast::tcp_stream> ws(ioc);
    beast::get_lowest_layer(ws).connect(
        net::ip::tcp::endpoint(net::ip::make_address("127.0.0.1"), port_));
    ws.handshake("127.0.0.1", socket_path(fresh_attempt()));
    ws.binary(true);
    beast::error_code ec;
    ws.write(net::buffer(std::string(200 * 1024, 'x')), ec);
    beast::flat_buffer buffer;
    ws.read(buffer, ec);
    EXPECT_TRUE(ec) << "a message over the limit must close the socket";
  }
  {
    net::io_context ioc;
    beast::websocket::stream<beast::tcp_stream> ws(ioc);
    beast::get_lowest_layer(ws).connect(
        net::ip::tcp::endpoint(net::ip::make_address("127.0.0.1"), port_));
    ws.handshake("127.0.0.1", socket_path(fresh_attempt()));
    ws.text(true);
    ws.write(net::buffer(std::string("{\"nonce\": 42}")));
    beast::flat_buffer buffer;
    ws.read(buffer);
    EXPECT_EQ(json::parse(beast::buffers_to_string(buffer.data()))["status"], 400);
  }
  EXPECT_EQ(call(port_, http::verb::get, "/healthz").status, 200u);
}

TEST_F(ServerTest, NoPathAroundTheLockoutOrTheNamesOfAccounts) {
  start();
  Reply alice = enrol("alice", recording("ClientRaw/0001", "0001_00_00_01_"), "cookie");
  ASSERT_EQ(alice.status, 201u) << alice.raw;
  server_->stop();
  options_.max_frames_per_flow = 3;
  options_.max_flows_per_address = 3;
  start();

  // A browser still holding alice's cookie may start a new login without the CSRF header.
  const std::string cookie =
      alice.headers["Set-Cookie"].substr(0, alice.headers["Set-Cookie"].find(';'));
  EXPECT_EQ(
      post_json(port_, "/api/v1/login/attempts", {{"user", "alice"}}, {{"Cookie", cookie}}).status,
      201u);

  // An unknown name is not refused at its first frame: it runs like a wrong face.
  Reply carol = post_json(port_, "/api/v1/login/attempts", {{"user", "carol"}});
  ASSERT_EQ(carol.status, 201u);
  const auto frames = recording("ClientRaw/0001", "0001_00_00_02_");
  Reply first =
      call(port_, http::verb::post,
           "/api/v1/login/attempts/" + carol.body["id"].get<std::string>() + "/frames",
           read_file(frames[0]), "image/jpeg", {{"X-Attempt-Nonce", carol.body["nonce"]}});
  ASSERT_EQ(first.status, 200u) << first.raw;
  EXPECT_EQ(first.body["state"], "pending") << first.raw;
  EXPECT_TRUE(first.body.contains("liveness"));

  // Running an attempt into the frame cap counts as a failure.
  Reply capped = post_json(port_, "/api/v1/login/attempts", {{"user", "alice"}});
  ASSERT_EQ(capped.status, 201u);
  Reply over;
  for (int i = 0; i < 4; ++i) {
    over = call(port_, http::verb::post,
                "/api/v1/login/attempts/" + capped.body["id"].get<std::string>() + "/frames",
                "junk", "image/jpeg", {{"X-Attempt-Nonce", capped.body["nonce"]}});
  }
  EXPECT_EQ(over.status, 429u) << over.raw;
  auto failures = auth_store_->failure_state("pair:127.0.0.1/alice");
  ASSERT_TRUE(failures);
  EXPECT_EQ(failures->failures, 1);

  // Open flows per address are bounded: two are open (the capped one ended), one more fits.
  EXPECT_EQ(post_json(port_, "/api/v1/login/attempts", {{"user", "alice"}}).status, 201u);
  Reply fourth = post_json(port_, "/api/v1/login/attempts", {{"user", "alice"}});
  EXPECT_EQ(fourth.status, 429u) << fourth.raw;
}

TEST_F(ServerTest, AFaceOnlyLoginCannotEnterALockedAccount) {
  options_.login.liveness.policy = LivenessPolicy::kPassive;  // face-only: see above
  start();
  ASSERT_EQ(enrol("alice", recording("ClientRaw/0001", "0001_00_00_01_")).status, 201u);
  const std::int64_t now_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                                  std::chrono::system_clock::now().time_since_epoch())
                                  .count();
  // Locked for alice from this address (the pair's counter): the face-only attempt names her
  // only at the decision, and is refused there.
  ASSERT_TRUE(auth_store_->record_failure("pair:127.0.0.1/alice", now_ms, 86'400'000,
                                          [](int) { return 600'000; }));
  Reply face_only = login("", recording("ClientRaw/0001", "0001_00_00_02_"));
  ASSERT_EQ(face_only.status, 200u) << face_only.raw;
  EXPECT_EQ(face_only.body["state"], "rejected");
  EXPECT_EQ(face_only.body["reason"], "locked_out");
  EXPECT_FALSE(face_only.body.contains("session"));
}

TEST_F(ServerTest, EnrollingAnEnrolledFaceCountsAsAFailure) {
  start();
  ASSERT_EQ(enrol("alice", recording("ClientRaw/0001", "0001_00_00_01_")).status, 201u);
  Reply again = enrol("alice2", recording("ClientRaw/0001", "0001_00_00_02_"));
  EXPECT_EQ(again.status, 409u) << again.raw;
  EXPECT_EQ(again.body["error"]["code"], "duplicate_face");
  auto failures = auth_store_->failure_state("addr:127.0.0.1");
  ASSERT_TRUE(failures);
  EXPECT_EQ(failures->failures, 1);
}

TEST_F(ServerTest, RecoveryCodeLogsInOnce) {
  start();
  Reply enrolled = enrol("alice", recording("ClientRaw/0001", "0001_00_00_01_"));
  ASSERT_EQ(enrolled.status, 201u) << enrolled.raw;
  const std::string code = enrolled.body["recovery_code"];
  Reply wrong =
      post_json(port_, "/api/v1/login/recovery",
                {{"user", "alice"}, {"code", std::string(64, '0')}, {"session", "bearer"}},
                key_for("bearer"));
  EXPECT_EQ(wrong.status, 401u);
  Reply right =
      post_json(port_, "/api/v1/login/recovery",
                {{"user", "alice"}, {"code", code}, {"session", "bearer"}}, key_for("bearer"));
  ASSERT_EQ(right.status, 200u) << right.raw;
  EXPECT_FALSE(right.body["session"]["token"].get<std::string>().empty());
  Reply again =
      post_json(port_, "/api/v1/login/recovery",
                {{"user", "alice"}, {"code", code}, {"session", "bearer"}}, key_for("bearer"));
  EXPECT_EQ(again.status, 401u);
}

// ---------------------------------------------------------------------------------------------
// Issue 17: the findings of the adversarial review, each with the test that failed before it.

// Medium 1: an enrol-only key with liveness off, sent along with a cookie-session login, must
// not switch liveness off for that login (a printed photo got in).
TEST_F(ServerTest, AKeysLivenessPolicyAppliesOnlyToItsOwnScopes) {
  start();
  ASSERT_EQ(enrol("alice", recording("ClientRaw/0001", "0001_00_00_01_")).status, 201u);
  const std::string enrol_only = make_key("signup-kiosk", {"enroll"}, "off");
  Reply start = post_json(port_, "/api/v1/login/attempts", {{"user", "alice"}, {"session", "cookie"}},
                          {{"X-API-Key", enrol_only}});
  ASSERT_EQ(start.status, 201u) << start.raw;
  EXPECT_EQ(start.body["liveness"], true) << start.raw;
  EXPECT_EQ(start.body["policy"], "adaptive") << start.raw;  // the server's default
  Reply last;
  for (const auto& f : recording("ImposterRaw/0001", "0001_00_01_02_")) {
    last = call(port_, http::verb::post,
                "/api/v1/login/attempts/" + start.body["id"].get<std::string>() + "/frames",
                read_file(f), "image/jpeg",
                {{"X-Attempt-Nonce", start.body["nonce"]}, {"X-API-Key", enrol_only}});
    if (last.body.value("state", "") != "pending") {
      break;
    }
  }
  EXPECT_EQ(last.body["state"], "rejected") << last.raw;
  EXPECT_EQ(last.body["reason"], "not_live") << last.raw;
  // The same key does set the policy of what it may do: an enrolment.
  Reply enrolment = post_json(port_, "/api/v1/enrollments", {{"user", "kiosk-user"}},
                              {{"X-API-Key", enrol_only}});
  ASSERT_EQ(enrolment.status, 201u) << enrolment.raw;
  EXPECT_EQ(enrolment.body["liveness"], false);
}

// Medium 2: strangers at other addresses cannot lock the owner out.
TEST_F(ServerTest, StrangersElsewhereCannotLockTheOwnerOut) {
  options_.starts_per_minute = 3;
  start();
  // alice enrols from 127.0.0.1, which makes it a known context for her account.
  Reply enrolled = enrol("alice", recording("ClientRaw/0001", "0001_00_00_01_"), "cookie");
  ASSERT_EQ(enrolled.status, 201u) << enrolled.raw;
  const std::string code = enrolled.body["recovery_code"];
  const auto post_from = [&](const std::string& source, const std::string& target,
                             const json& body) {
    return call(port_, http::verb::post, target, body.dump(), "application/json", {}, source);
  };
  const json wrong = {{"user", "alice"}, {"code", std::string(64, '0')}};

  // Wrong recovery codes from six addresses: each is refused as wrong, none locks the account.
  for (int i = 2; i <= 7; ++i) {
    EXPECT_EQ(post_from(fmt::format("127.0.0.{}", i), "/api/v1/login/recovery", wrong).status,
              401u);
  }
  EXPECT_EQ(auth_store_->failure_state("user:alice")->failures, 0);
  // One address guessing on: after the free failures it is locked out of alice's recovery...
  unsigned status = 0;
  for (int i = 0; i < 8 && status != 429u; ++i) {
    status = post_from("127.0.0.2", "/api/v1/login/recovery", wrong).status;
  }
  EXPECT_EQ(status, 429u);
  // ...and the owner's correct code from a fresh address still works.
  Reply recovered = post_from("127.0.0.8", "/api/v1/login/recovery",
                              {{"user", "alice"}, {"code", code}});
  EXPECT_EQ(recovered.status, 200u) << recovered.raw;

  // Starts: the account's own rate (3 a minute here, one taken by her enrolment, which came from
  // an address she had no session from yet) holds for strangers' addresses...
  for (int i = 10; i <= 11; ++i) {
    EXPECT_EQ(post_from(fmt::format("127.0.0.{}", i), "/api/v1/login/attempts", {{"user", "alice"}})
                  .status,
              201u);
  }
  Reply limited = post_from("127.0.0.12", "/api/v1/login/attempts", {{"user", "alice"}});
  EXPECT_EQ(limited.status, 429u) << limited.raw;
  EXPECT_NE(limited.raw.find("account"), std::string::npos) << limited.raw;
  // ...but not for an address alice has logged in from.
  EXPECT_EQ(post_from("127.0.0.1", "/api/v1/login/attempts", {{"user", "alice"}}).status, 201u);

  // Face failures from strangers' addresses lock her face login for strangers' addresses only.
  const std::int64_t now_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                                  std::chrono::system_clock::now().time_since_epoch())
                                  .count();
  ASSERT_TRUE(auth_store_->record_failure("user:alice", now_ms, 86'400'000,
                                          [](int) { return 600'000; }));
  Reply stranger = post_from("127.0.0.14", "/api/v1/login/attempts", {{"user", "alice"}});
  EXPECT_EQ(stranger.status, 429u) << stranger.raw;
  EXPECT_EQ(post_from("127.0.0.8", "/api/v1/login/attempts", {{"user", "alice"}}).status, 201u)
      << "the address of her recovery login is a known context now";
}

// Low: a disabled account's recovery code is not used up by a refusal.
TEST_F(ServerTest, RecoveryForADisabledAccountKeepsTheCode) {
  start();
  Reply enrolled = enrol("alice", recording("ClientRaw/0001", "0001_00_00_01_"), "cookie");
  ASSERT_EQ(enrolled.status, 201u) << enrolled.raw;
  const std::string code = enrolled.body["recovery_code"];
  ASSERT_TRUE(store_->set_disabled("alice", true).ok());
  Reply refused = post_json(port_, "/api/v1/login/recovery", {{"user", "alice"}, {"code", code}});
  EXPECT_EQ(refused.status, 401u) << refused.raw;  // like an unknown account
  ASSERT_TRUE(store_->set_disabled("alice", false).ok());
  Reply ok = post_json(port_, "/api/v1/login/recovery", {{"user", "alice"}, {"code", code}});
  EXPECT_EQ(ok.status, 200u) << ok.raw;
}

// Low: only the owner's web session may replace the recovery code; ids are parsed strictly.
TEST_F(ServerTest, RecoveryCodeChangesNeedTheWebSessionAndIdsAreStrict) {
  start();
  Reply enrolled = enrol("alice", recording("ClientRaw/0001", "0001_00_00_01_"), "bearer");
  ASSERT_EQ(enrolled.status, 201u) << enrolled.raw;
  const std::map<std::string, std::string> bearer = {
      {"Authorization", "Bearer " + enrolled.body["session"]["token"].get<std::string>()}};
  Reply by_app = call(port_, http::verb::post, "/api/v1/account/recovery-code", "", "", bearer);
  EXPECT_EQ(by_app.status, 403u) << by_app.raw;
  // The old code still works, so it was not replaced.
  Reply recovered = post_json(port_, "/api/v1/login/recovery",
                              {{"user", "alice"}, {"code", enrolled.body["recovery_code"]}});
  ASSERT_EQ(recovered.status, 200u) << recovered.raw;
  const std::string cookie =
      recovered.headers["Set-Cookie"].substr(0, recovered.headers["Set-Cookie"].find(';'));
  const std::map<std::string, std::string> web = {
      {"Cookie", cookie}, {"X-CSRF-Token", recovered.body["session"]["csrf"]}};
  Reply by_owner = call(port_, http::verb::post, "/api/v1/account/recovery-code", "", "", web);
  EXPECT_EQ(by_owner.status, 200u) << by_owner.raw;
  EXPECT_FALSE(by_owner.body.value("recovery_code", "").empty());

  auto account = call(port_, http::verb::get, "/api/v1/account", "", "", bearer);
  ASSERT_EQ(account.status, 200u) << account.raw;
  const std::int64_t face = account.body["faces"][0]["id"];
  for (const std::string& bad : {std::to_string(face) + "abc", "+" + std::to_string(face),
                                 "-" + std::to_string(face), std::string("0x1"),
                                 std::string("99999999999999999999")}) {
    Reply r = call(port_, http::verb::delete_, "/api/v1/account/faces/" + bad, "", "", bearer);
    EXPECT_EQ(r.status, 400u) << bad << ": " << r.raw;
  }
  EXPECT_EQ(call(port_, http::verb::get, "/api/v1/account", "", "", bearer).body["faces"].size(),
            account.body["faces"].size());
}

// Low: wrong JSON types and tiny images are the client's fault (400), not the server's (500).
TEST_F(ServerTest, WrongTypesAndTinyImagesAreBadRequests) {
  start();
  for (const json& body : {json{{"user", "x"}, {"session", 5}}, json{{"user", "x"}, {"add", "yes"}},
                           json{{"user", 7}}, json{{"user", "x"}, {"session", json::array()}}}) {
    Reply r = post_json(port_, "/api/v1/enrollments", body);
    EXPECT_EQ(r.status, 400u) << body.dump() << ": " << r.raw;
  }
  Reply login_start = post_json(port_, "/api/v1/login/attempts", {{"user", "x"}, {"session", 5}});
  EXPECT_EQ(login_start.status, 400u) << login_start.raw;
  Reply recovery =
      post_json(port_, "/api/v1/login/recovery", {{"user", "x"}, {"code", "y"}, {"session", 5}});
  EXPECT_EQ(recovery.status, 400u) << recovery.raw;

  Reply enrolment = post_json(port_, "/api/v1/enrollments", {{"user", "tiny"}});
  ASSERT_EQ(enrolment.status, 201u) << enrolment.raw;
  const std::string frames = "/api/v1/enrollments/" + enrolment.body["id"].get<std::string>() +
                             "/frames";
  std::vector<std::uint8_t> jpeg;
  std::vector<std::uint8_t> png;
  cv::imencode(".jpg", cv::Mat(16, 16, CV_8UC3, cv::Scalar(90, 120, 200)), jpeg);
  cv::imencode(".png", cv::Mat(2, 2, CV_8UC3, cv::Scalar(90, 120, 200)), png);
  for (const auto& [bytes, type] : {std::pair{jpeg, "image/jpeg"}, std::pair{png, "image/png"}}) {
    Reply r = call(port_, http::verb::post, frames, std::string(bytes.begin(), bytes.end()), type);
    EXPECT_TRUE(r.status == 200u || r.status == 400u || r.status == 422u) << type << ": " << r.raw;
    EXPECT_NE(r.status, 500u);
  }
}

// Low: one body limit, answered with 413 whether the body is sized or chunked.
TEST_F(ServerTest, BodiesOverTheLimitGet413AndUnderItAreRead) {
  start();
  Reply enrolment = post_json(port_, "/api/v1/enrollments", {{"user", "big"}});
  ASSERT_EQ(enrolment.status, 201u) << enrolment.raw;
  const std::string frames = "/api/v1/enrollments/" + enrolment.body["id"].get<std::string>() +
                             "/frames";
  // 1.5 MiB is under the 2 MiB frame limit: read, and refused for what it is (not an image).
  Reply under = call(port_, http::verb::post, frames, std::string(1536 * 1024, 'x'), "image/jpeg");
  EXPECT_EQ(under.status, 400u) << under.raw;
  Reply over = call(port_, http::verb::post, frames,
                    std::string(options_.max_frame_bytes + 1, 'x'), "image/jpeg");
  EXPECT_EQ(over.status, 413u) << over.raw;
  EXPECT_EQ(over.body["error"]["code"], "image_too_large") << over.raw;
  // Chunked, without a Content-Length: the same limit, the same answer.
  net::io_context ioc;
  beast::tcp_stream stream(ioc);
  stream.connect(net::ip::tcp::endpoint(net::ip::make_address("127.0.0.1"), port_));
  http::request<http::string_body> req(http::verb::post, frames, 11);
  req.set(http::field::host, "127.0.0.1");
  req.set(http::field::content_type, "image/jpeg");
  req.chunked(true);
  req.body() = std::string(options_.max_frame_bytes + 1, 'x');
  beast::error_code ec;
  http::write(stream, req, ec);
  beast::flat_buffer buffer;
  http::response<http::string_body> res;
  http::read(stream, buffer, res, ec);
  EXPECT_EQ(res.result_int(), 413u) << ec.message();
}

// Medium 3: a progressive JPEG that repeats its scans is refused before decoding.
TEST_F(ServerTest, AJpegScanBombIsRefusedAtOnce) {
  start();
  const std::string bomb = testing::jpeg_scan_bomb(640, 480, 2000);
  ASSERT_FALSE(bomb.empty());
  ASSERT_LT(bomb.size(), options_.max_frame_bytes);  // within the body limit: only the scans tell
  Reply enrolment = post_json(port_, "/api/v1/enrollments", {{"user", "bomber"}});
  ASSERT_EQ(enrolment.status, 201u) << enrolment.raw;
  const auto t0 = std::chrono::steady_clock::now();
  Reply r = call(port_, http::verb::post,
                 "/api/v1/enrollments/" + enrolment.body["id"].get<std::string>() + "/frames", bomb,
                 "image/jpeg");
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_EQ(r.status, 413u) << r.raw;
  EXPECT_NE(r.raw.find("scans"), std::string::npos) << r.raw;
  EXPECT_LT(seconds, 5.0) << "the refusal must not decode the scans";
}

// Medium 4: a flow has one WebSocket, which closes when the flow ends or when it carries no
// message for the idle timeout (pings do not keep it open).
TEST_F(ServerTest, WebSocketsEndWithTheirFlowAndWhenIdle) {
  options_.socket_idle_timeout = std::chrono::seconds(1);
  start();
  const auto open_socket = [&](const std::string& path, beast::error_code& ec) {
    auto ioc = std::make_shared<net::io_context>();
    auto ws = std::make_shared<beast::websocket::stream<beast::tcp_stream>>(*ioc);
    beast::get_lowest_layer(*ws).connect(
        net::ip::tcp::endpoint(net::ip::make_address("127.0.0.1"), port_));
    beast::websocket::response_type res;
    ws->handshake(res, "127.0.0.1", path, ec);
    return std::pair{ioc, ws};
  };
  // Reads until the socket closes (true) or `limit` passes (false), pinging meanwhile.
  const auto closes_within = [](beast::websocket::stream<beast::tcp_stream>& ws,
                                std::chrono::seconds limit) {
    beast::get_lowest_layer(ws).expires_after(limit);
    beast::error_code ec;
    beast::flat_buffer buffer;
    ws.ping({}, ec);
    ws.read(buffer, ec);
    return ec && ec != beast::error::timeout;
  };

  Reply enrolment = post_json(port_, "/api/v1/enrollments", {{"user", "sockets"}});
  ASSERT_EQ(enrolment.status, 201u) << enrolment.raw;
  const std::string id = enrolment.body["id"];
  const std::string path = "/api/v1/enrollments/" + id + "/socket";
  beast::error_code ec;
  auto first = open_socket(path, ec);
  ASSERT_FALSE(ec) << ec.message();
  beast::error_code second_ec;
  auto second = open_socket(path, second_ec);
  EXPECT_TRUE(second_ec) << "a second socket on one flow must be refused";

  // Ending the flow closes its socket.
  ASSERT_EQ(call(port_, http::verb::delete_, "/api/v1/enrollments/" + id).status, 200u);
  EXPECT_TRUE(closes_within(*first.second, std::chrono::seconds(5)));

  // A socket that sends nothing is closed after the idle timeout although the client pings.
  Reply other = post_json(port_, "/api/v1/enrollments", {{"user", "idle"}});
  ASSERT_EQ(other.status, 201u) << other.raw;
  auto idle =
      open_socket("/api/v1/enrollments/" + other.body["id"].get<std::string>() + "/socket", ec);
  ASSERT_FALSE(ec) << ec.message();
  EXPECT_TRUE(closes_within(*idle.second, std::chrono::seconds(5)));
  EXPECT_EQ(call(port_, http::verb::get, "/healthz").status, 200u);
}

TEST_F(ServerTest, BadInputGetsClearErrorsAndChangesNothing) {
  options_.max_frame_bytes = 300 * 1024;
  start();
  EXPECT_EQ(post_json(port_, "/api/v1/enrollments", {{"user", "-bad"}}).status, 400u);
  EXPECT_EQ(post_json(port_, "/api/v1/enrollments", {{"name", "alice"}}).status, 400u);
  EXPECT_EQ(
      call(port_, http::verb::post, "/api/v1/enrollments", "{not json", "application/json").status,
      400u);
  // A form post (what a cross-site page could send without a preflight) is refused.
  EXPECT_EQ(call(port_, http::verb::post, "/api/v1/enrollments", "user=alice",
                 "application/x-www-form-urlencoded")
                .status,
            400u);

  Reply start = post_json(port_, "/api/v1/enrollments", {{"user", "alice"}});
  ASSERT_EQ(start.status, 201u);
  const std::string frames =
      "/api/v1/enrollments/" + start.body["id"].get<std::string>() + "/frames";
  Reply junk = call(port_, http::verb::post, frames, "not an image at all", "image/jpeg");
  EXPECT_EQ(junk.status, 400u) << junk.raw;
  EXPECT_EQ(junk.body["error"]["code"], "bad_image");
  Reply huge = call(port_, http::verb::post, frames, std::string(400 * 1024, 'x'), "image/jpeg");
  EXPECT_EQ(huge.status, 413u);
  Reply early = call(port_, http::verb::post,
                     "/api/v1/enrollments/" + start.body["id"].get<std::string>() + "/finish");
  EXPECT_EQ(early.status, 400u) << early.raw;
  EXPECT_EQ(
      call(port_, http::verb::post, "/api/v1/enrollments/nope/frames", "x", "image/jpeg").status,
      404u);
  auto users = store_->list_users();
  ASSERT_TRUE(users);
  EXPECT_TRUE(users->empty());

  // A login frame without the attempt's nonce is not taken.
  Reply attempt = post_json(port_, "/api/v1/login/attempts", {{"user", "alice"}});
  ASSERT_EQ(attempt.status, 201u);
  const auto photo = recording("ClientRaw/0001", "0001_00_00_02_").front();
  Reply no_nonce =
      call(port_, http::verb::post,
           "/api/v1/login/attempts/" + attempt.body["id"].get<std::string>() + "/frames",
           read_file(photo), "image/jpeg", {{"X-Attempt-Nonce", "guess"}});
  EXPECT_EQ(no_nonce.status, 404u);
  // A bearer token that is not one.
  EXPECT_EQ(call(port_, http::verb::get, "/api/v1/account", "", "",
                 {{"Authorization", "Bearer " + std::string(64, 'f')}})
                .status,
            401u);
}

// A JPEG whose frame header claims `width` x `height` (the data stays that of a small image).
std::string with_jpeg_size(std::string jpeg, std::uint16_t width, std::uint16_t height) {
  for (std::size_t i = 2; i + 9 < jpeg.size(); ++i) {
    if (static_cast<unsigned char>(jpeg[i]) == 0xFF &&
        (static_cast<unsigned char>(jpeg[i + 1]) == 0xC0 ||
         static_cast<unsigned char>(jpeg[i + 1]) == 0xC2)) {
      jpeg[i + 5] = static_cast<char>(height >> 8);
      jpeg[i + 6] = static_cast<char>(height & 0xFF);
      jpeg[i + 7] = static_cast<char>(width >> 8);
      jpeg[i + 8] = static_cast<char>(width & 0xFF);
      return jpeg;
    }
  }
  ADD_FAILURE() << "no SOF marker";
  return jpeg;
}

TEST_F(ServerTest, HostileInputIsRefusedAndTheServerKeepsServing) {
  options_.request_timeout = std::chrono::seconds(1);
  options_.web_dir = fs::path(FACELOGIN_SOURCE_DIR) / "web";
  start();
  EXPECT_EQ(call(port_, http::verb::get, "/").status, 200u);
  EXPECT_EQ(call(port_, http::verb::get, "/app.js").headers["Content-Type"],
            "text/javascript; charset=utf-8");
  // Path traversal and hidden files on the static side: the web directory sits in the source
  // tree, next to files that must not be served.
  for (const char* target : {"/../CMakeLists.txt", "/%2e%2e/CMakeLists.txt", "/..%2fCMakeLists.txt",
                             "/.git/config", "/web/../../etc/passwd", "//etc/passwd",
                             "/api/v1/../../CMakeLists.txt", "/index.html%00"}) {
    Reply r = call(port_, http::verb::get, target);
    EXPECT_EQ(r.status, 404u) << target;
    EXPECT_EQ(r.raw.find("cmake_minimum_required"), std::string::npos) << target;
  }
  // Injection strings in every field of the JSON bodies.
  const std::vector<std::string> nasty = {"alice'; DROP TABLE users; --",
                                          "<script>x</script>",
                                          std::string("al\0ice", 7),
                                          std::string(5000, 'a'),
                                          "../../etc/passwd",
                                          "%s%n%s",
                                          "\u202e"};
  for (const auto& s : nasty) {
    EXPECT_EQ(post_json(port_, "/api/v1/enrollments", {{"user", s}}).status, 400u) << s;
    EXPECT_EQ(post_json(port_, "/api/v1/login/attempts", {{"user", s}}).status, 400u) << s;
    EXPECT_EQ(
        post_json(port_, "/api/v1/login/attempts", {{"user", "alice"}, {"session", s}}).status,
        400u)
        << s;
    EXPECT_EQ(post_json(port_, "/api/v1/login/recovery", {{"user", s}, {"code", s}}).status, 400u)
        << s;
    if (s.size() < 100 && s.find('\0') == std::string::npos) {
      EXPECT_EQ(call(port_, http::verb::get, "/api/v1/account", "", "",
                     {{"Authorization", "Bearer " + s}})
                    .status,
                401u);
    }
  }
  EXPECT_EQ(post_json(port_, "/api/v1/enrollments", json::array({1, 2})).status, 400u);
  EXPECT_EQ(post_json(port_, "/api/v1/enrollments", {{"user", 42}}).status, 400u);

  // Truncated and bomb images.
  Reply start = post_json(port_, "/api/v1/enrollments", {{"user", "alice"}});
  ASSERT_EQ(start.status, 201u);
  const std::string frames =
      "/api/v1/enrollments/" + start.body["id"].get<std::string>() + "/frames";
  const std::string jpeg = read_file(recording("ClientRaw/0001", "0001_00_00_01_").front());
  Reply truncated =
      call(port_, http::verb::post, frames, jpeg.substr(0, jpeg.size() / 3), "image/jpeg");
  EXPECT_EQ(truncated.status, 400u) << truncated.raw;
  Reply bomb =
      call(port_, http::verb::post, frames, with_jpeg_size(jpeg, 60000, 60000), "image/jpeg");
  EXPECT_EQ(bomb.status, 413u) << bomb.raw;
  EXPECT_EQ(bomb.body["error"]["code"], "image_too_large");

  // A slow client (headers never finished) is cut off after the request timeout.
  {
    net::io_context ioc;
    net::ip::tcp::socket socket(ioc);
    socket.connect(net::ip::tcp::endpoint(net::ip::make_address("127.0.0.1"), port_));
    net::write(socket,
               net::buffer(std::string("POST /api/v1/enrollments HTTP/1.1\r\nHost: x\r\n")));
    std::this_thread::sleep_for(std::chrono::milliseconds(1500));
    char byte = 0;
    boost::system::error_code ec;
    socket.read_some(net::buffer(&byte, 1), ec);
    EXPECT_TRUE(ec) << "the server kept a stalled request open";
  }
  // Garbage instead of HTTP, and headers too large.
  {
    net::io_context ioc;
    net::ip::tcp::socket socket(ioc);
    socket.connect(net::ip::tcp::endpoint(net::ip::make_address("127.0.0.1"), port_));
    net::write(socket, net::buffer(std::string("\x16\x03\x01 not http at all\r\n\r\n")));
    char byte = 0;
    boost::system::error_code ec;
    socket.read_some(net::buffer(&byte, 1), ec);
    EXPECT_TRUE(ec);
  }
  Reply big_header =
      call(port_, http::verb::get, "/healthz", "", "", {{"X-Filler", std::string(32 * 1024, 'x')}});
  EXPECT_EQ(big_header.status, 431u);

  // Nothing was stored, and the server still answers.
  auto users = store_->list_users();
  ASSERT_TRUE(users);
  EXPECT_TRUE(users->empty());
  EXPECT_EQ(call(port_, http::verb::get, "/healthz").status, 200u);
}

// A self-signed certificate for localhost, written as PEM files.
void write_self_signed(const fs::path& cert_file, const fs::path& key_file) {
  EVP_PKEY* key = EVP_EC_gen("P-256");
  ASSERT_NE(key, nullptr);
  X509* cert = X509_new();
  X509_set_version(cert, 2);
  ASN1_INTEGER_set(X509_get_serialNumber(cert), 1);
  X509_gmtime_adj(X509_getm_notBefore(cert), 0);
  X509_gmtime_adj(X509_getm_notAfter(cert), 3600);
  X509_set_pubkey(cert, key);
  X509_NAME* name = X509_get_subject_name(cert);
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                             reinterpret_cast<const unsigned char*>("localhost"), -1, -1, 0);
  X509_set_issuer_name(cert, name);
  ASSERT_GT(X509_sign(cert, key, EVP_sha256()), 0);
  FILE* f = std::fopen(cert_file.c_str(), "w");
  PEM_write_X509(f, cert);
  std::fclose(f);
  f = std::fopen(key_file.c_str(), "w");
  PEM_write_PrivateKey(f, key, nullptr, nullptr, 0, nullptr, nullptr);
  std::fclose(f);
  X509_free(cert);
  EVP_PKEY_free(key);
}

TEST_F(ServerTest, ServesHttpsWithAConfiguredCertificate) {
  options_.tls_cert_file = dir_ / "cert.pem";
  options_.tls_key_file = dir_ / "key.pem";
  write_self_signed(options_.tls_cert_file, options_.tls_key_file);
  start();

  net::io_context ioc;
  net::ssl::context tls(net::ssl::context::tls_client);
  tls.load_verify_file(options_.tls_cert_file.string());
  tls.set_verify_mode(net::ssl::verify_peer);
  beast::ssl_stream<beast::tcp_stream> stream(ioc, tls);
  beast::get_lowest_layer(stream).connect(
      net::ip::tcp::endpoint(net::ip::make_address("127.0.0.1"), port_));
  stream.handshake(net::ssl::stream_base::client);
  http::request<http::string_body> req(http::verb::get, "/healthz", 11);
  req.set(http::field::host, "localhost");
  http::write(stream, req);
  beast::flat_buffer buffer;
  http::response<http::string_body> res;
  http::read(stream, buffer, res);
  EXPECT_EQ(res.result_int(), 200u);
  EXPECT_EQ(res[http::field::strict_transport_security], "max-age=31536000");

  // Plain HTTP on the TLS port gets no answer, and the server carries on.
  EXPECT_EQ(call(port_, http::verb::get, "/healthz").status, 0u);

  // Half a pair of files is refused at start.
  server_->stop();
  options_.tls_key_file.clear();
  auto bad = Server::start(options_, deps_);
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().code(), ErrorCode::kInvalidArgument);
}

TEST_F(ServerTest, ConnectionsAreLimitedPerAddress) {
  options_.max_connections_per_address = 2;
  start();
  net::io_context ioc;
  std::vector<net::ip::tcp::socket> held;
  for (int i = 0; i < 2; ++i) {
    held.emplace_back(ioc);
    held.back().connect(net::ip::tcp::endpoint(net::ip::make_address("127.0.0.1"), port_));
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(200));     // accepted and counted
  EXPECT_EQ(call(port_, http::verb::get, "/healthz").status, 0u);  // a third from 127.0.0.1
  EXPECT_EQ(call(port_, http::verb::get, "/healthz", "", "", {}, "127.0.0.2").status, 200u);
  held.clear();
  std::this_thread::sleep_for(std::chrono::milliseconds(200));  // closed and released
  EXPECT_EQ(call(port_, http::verb::get, "/healthz").status, 200u);
}

TEST(ClientAddress, OnlyATrustedProxyMayNameTheClient) {
  server::Request request(http::verb::get, "/", 11);
  request.insert("X-Forwarded-For", "198.51.100.9, 203.0.113.7");
  request.insert("X-Forwarded-For", "10.0.0.2");
  const std::vector<std::string> proxies = {"127.0.0.1", "10.0.0.2"};
  // From the proxy: the right-most address that is not a proxy (the left is the client's say).
  EXPECT_EQ(server::client_address(request, "127.0.0.1", proxies), "203.0.113.7");
  // From anyone else the header means nothing.
  EXPECT_EQ(server::client_address(request, "192.0.2.50", proxies), "192.0.2.50");
  EXPECT_EQ(server::client_address(request, "127.0.0.1", {}), "127.0.0.1");
  server::Request junk(http::verb::get, "/", 11);
  junk.insert("X-Forwarded-For", "not-an-address");
  EXPECT_EQ(server::client_address(junk, "127.0.0.1", proxies), "127.0.0.1");
  server::Request none(http::verb::get, "/", 11);
  EXPECT_EQ(server::client_address(none, "127.0.0.1", proxies), "127.0.0.1");
  // A proxy written in another form is still the proxy (auth_fuzzer, issue 17).
  server::Request scoped(http::verb::get, "/", 11);
  scoped.insert("X-Forwarded-For", "2001:db8::7, ::2%eth0, 0:0::2");
  EXPECT_EQ(server::client_address(scoped, "::2", {"::2"}), "2001:db8::7");
}

TEST_F(ServerTest, BehindATrustedProxyLimitsApplyToTheRealClient) {
  options_.trusted_proxies = {"127.0.0.1"};
  options_.starts_per_minute = 1;
  start();
  const auto start_as = [&](const std::string& client, const std::string& source) {
    return call(port_, http::verb::post, "/api/v1/login/attempts",
                json{{"user", "u" + client.substr(client.rfind('.') + 1)}}.dump(),
                "application/json", {{"X-Forwarded-For", client}}, source);
  };
  EXPECT_EQ(start_as("203.0.113.7", "127.0.0.1").status, 201u);
  EXPECT_EQ(start_as("203.0.113.8", "127.0.0.1").status, 201u);  // another client
  EXPECT_EQ(start_as("203.0.113.7", "127.0.0.1").status, 429u);  // the first one again
  // A client that is not the proxy cannot pick its address.
  EXPECT_EQ(start_as("203.0.113.9", "127.0.0.2").status, 201u);
  EXPECT_EQ(start_as("203.0.113.10", "127.0.0.2").status, 429u);
}

TEST_F(ServerTest, SaturatedWorkersAnswer503QuicklyInsteadOfQueueing) {
  options_.workers = 1;
  options_.queue_limit = 0;
  options_.starts_per_minute = 1000;
  start();
  const auto frames = recording("ClientRaw/0001", "0001_00_00_02_");
  constexpr int kClients = 8;
  std::vector<std::pair<std::string, std::string>> attempts;
  for (int i = 0; i < kClients; ++i) {
    Reply a = post_json(port_, "/api/v1/login/attempts", {{"user", "alice"}});
    ASSERT_EQ(a.status, 201u);
    attempts.emplace_back(a.body["id"], a.body["nonce"]);
  }
  std::atomic<int> ok{0};
  std::atomic<int> busy{0};
  std::vector<std::thread> threads;
  const std::string frame = read_file(frames[0]);
  for (int i = 0; i < kClients; ++i) {
    threads.emplace_back([&, i] {
      Reply r =
          call(port_, http::verb::post, "/api/v1/login/attempts/" + attempts[i].first + "/frames",
               frame, "image/jpeg", {{"X-Attempt-Nonce", attempts[i].second}});
      if (r.status == 503u) {
        EXPECT_EQ(r.headers["Retry-After"], "1");
        ++busy;
      } else if (r.status == 200u) {
        ++ok;
      }
    });
  }
  for (auto& t : threads) {
    t.join();
  }
  EXPECT_GE(ok.load(), 1);
  EXPECT_GE(busy.load(), 1);
  EXPECT_EQ(ok.load() + busy.load(), kClients);
}

// ---------------------------------------------------------------------------------------------
// Two servers on one database (issue 5): each with its own stores (own connections), workers and
// flows, as two `facelogin serve` processes would be. What one does, the other honours at once.

class TwoServersTest : public ServerTest, public ::testing::WithParamInterface<std::string> {
 protected:
  void SetUp() override {
    ServerTest::SetUp();
    if (IsSkipped() || HasFatalFailure()) {
      return;
    }
    FACELOGIN_REQUIRE_BACKEND(db_);
    for (int i = 0; i < 2; ++i) {
      auto store = db_.open_store(std::string(32, '\x44'));
      ASSERT_TRUE(store) << store.error().to_string();
      auto auth = db_.open_auth_store();
      ASSERT_TRUE(auth) << auth.error().to_string();
      ServerDeps deps = deps_;
      deps.store = store->get();
      deps.auth_store = auth->get();
      stores_.push_back(std::move(*store));
      auths_.push_back(std::move(*auth));
      ServerOptions options = options_;
      options.starts_per_minute = 12;
      auto server = Server::start(options, deps);
      ASSERT_TRUE(server) << server.error().to_string();
      ports_.push_back((*server)->port());
      servers_.push_back(std::move(*server));
    }
    // The fixture's helpers (API keys for bearer sessions) work on the shared database.
    auth_store_ = std::move(auths_[0]);
    auths_[0] = nullptr;
  }

  void TearDown() override {
    for (auto& s : servers_) {
      s->stop();
    }
    servers_.clear();
    ServerTest::TearDown();
  }

  void use(int server) { port_ = ports_[static_cast<std::size_t>(server)]; }

  testing::BackendDb db_{GetParam()};
  std::vector<std::unique_ptr<Store>> stores_;
  std::vector<std::unique_ptr<AuthStore>> auths_;
  std::vector<std::unique_ptr<Server>> servers_;
  std::vector<std::uint16_t> ports_;
};

TEST_P(TwoServersTest, EnrolmentsSessionsLockoutsRateLimitsAndGalleriesHoldAcrossServers) {
  // Enrolled on the first server, alice logs in on the second.
  use(0);
  Reply enrolled = enrol("alice", recording("ClientRaw/0001", "0001_00_00_01_"));
  ASSERT_EQ(enrolled.status, 201u) << enrolled.raw;
  use(1);
  Reply login_b = login("alice", recording("ClientRaw/0001", "0001_00_00_02_"));
  ASSERT_EQ(login_b.body["state"], "accepted") << login_b.raw;
  const std::string token = login_b.body["session"]["token"];
  const std::map<std::string, std::string> bearer = {{"Authorization", "Bearer " + token}};

  // Her session from the second server works on the first; logging out on the first ends it on
  // the second.
  Reply session_a = call(ports_[0], http::verb::get, "/api/v1/session", "", "", bearer);
  ASSERT_EQ(session_a.status, 200u) << session_a.raw;
  EXPECT_EQ(session_a.body["user"], "alice");
  ASSERT_EQ(call(ports_[0], http::verb::post, "/api/v1/logout", "", "", bearer).status, 200u);
  EXPECT_EQ(call(ports_[1], http::verb::get, "/api/v1/session", "", "", bearer).status, 401u);

  // Face-only login on the second server finds alice; after bob enrols on the first, the
  // second server's in-memory gallery follows (it reloads when the store's generation moves)
  // and finds bob (NUAA subject 0005) by his face alone.
  Reply alice_by_face = login("", recording("ClientRaw/0001", "0001_00_00_02_"));
  ASSERT_EQ(alice_by_face.body["state"], "accepted") << alice_by_face.raw;
  EXPECT_EQ(alice_by_face.body["session"]["user"], "alice");
  use(0);
  ASSERT_EQ(enrol("bob", recording("ClientRaw/0005", "0005_00_00_01_")).status, 201u);
  use(1);
  Reply bob_by_face = login("", recording("ClientRaw/0005", "0005_00_00_02_"));
  ASSERT_EQ(bob_by_face.body["state"], "accepted") << bob_by_face.raw;
  EXPECT_EQ(bob_by_face.body["session"]["user"], "bob");

  // Wrong recovery codes on alternate servers lock this address out of her account on both.
  unsigned last = 0;
  for (int i = 0; i < 6; ++i) {
    last = post_json(ports_[static_cast<std::size_t>(i % 2)], "/api/v1/login/recovery",
                     {{"user", "alice"}, {"code", std::string(64, '0')}, {"session", "bearer"}},
                     key_for("bearer"))
               .status;
  }
  EXPECT_EQ(last, 401u);
  for (std::uint16_t port : ports_) {
    Reply locked = post_json(port, "/api/v1/login/attempts",
                             {{"user", "alice"}, {"session", "bearer"}}, key_for("bearer"));
    EXPECT_EQ(locked.status, 429u) << locked.raw;
    EXPECT_TRUE(locked.headers.count("Retry-After")) << locked.raw;
  }

  // One address's starts are counted by both servers together (12 a minute here): alternating
  // between them does not double the allowance.
  int accepted = 0;
  unsigned refused = 0;
  for (int i = 0; i < 16 && refused == 0; ++i) {
    const json body = {{"user", "visitor" + std::to_string(i)}, {"session", "cookie"}};
    Reply r = call(ports_[static_cast<std::size_t>(i % 2)], http::verb::post,
                   "/api/v1/login/attempts", body.dump(), "application/json", {}, "127.0.0.9");
    if (r.status == 201u) {
      ++accepted;
    } else {
      refused = r.status;
    }
  }
  EXPECT_EQ(accepted, 12);
  EXPECT_EQ(refused, 429u);
}

INSTANTIATE_TEST_SUITE_P(Backends, TwoServersTest, ::testing::ValuesIn(testing::store_backends()),
                         testing::backend_param_name);

}  // namespace
}  // namespace facelogin
