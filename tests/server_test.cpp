// The server over loopback, with real faces: NUAA subject 0001 ("alice") enrols from her first
// recording and logs in from her second; subject 0002 and alice's printed photo try to log in as
// her. Also the API's contract: OpenAPI document, errors, limits, sessions, CSRF, lockout.

#include "server_fixture.h"

namespace facelogin {
namespace {

// The fixture, its helpers and its aliases (fs, beast, http, net, json).
using namespace server_test;  // NOLINT

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

}  // namespace
}  // namespace facelogin
