#include "api_harness.h"

#include <boost/asio/buffer.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/websocket/rfc6455.hpp>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <nlohmann/json.hpp>
#include <random>
#include <set>

#include "facelogin/gallery.h"
#include "fuzz_util.h"

namespace facelogin::fuzz {
namespace {

namespace http = boost::beast::http;
using json = nlohmann::json;

constexpr auto kReplyTimeout = std::chrono::seconds(60);

[[noreturn]] void die(const std::string& what) {
  std::fprintf(stderr, "api harness: %s\n", what.c_str());
  std::exit(1);
}

template <typename T>
T must(Result<T> result, const char* what) {
  if (!result) {
    die(std::string(what) + ": " + result.error().to_string());
  }
  return std::move(*result);
}

// A template of `spec`'s size, L2-normalised, from a fixed seed.
FaceTemplate synthetic_template(const RecognizerSpec& spec, unsigned seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal;
  FaceTemplate t;
  t.model_id = spec.id;
  t.embedding.resize(static_cast<std::size_t>(recognizer_embedding_size(spec)));
  double norm = 0;
  for (float& x : t.embedding) {
    x = normal(rng);
    norm += static_cast<double>(x) * x;
  }
  for (float& x : t.embedding) {
    x = static_cast<float>(x / std::sqrt(norm));
  }
  t.quality = 0.8f;
  return t;
}

void replace_all(std::string& text, std::string_view from, std::string_view to) {
  for (std::size_t at = text.find(from); at != std::string::npos;
       at = text.find(from, at + to.size())) {
    text.replace(at, from.size(), to);
  }
}

// The status codes the API answers with (docs/server.md, http_status_for): anything else is a
// bug. 500 is deliberately absent: bad input must never be an internal error.
bool documented_status(unsigned status) {
  static const std::set<unsigned> kStatuses = {200, 201, 400, 401, 403, 404,
                                               405, 409, 413, 422, 429, 503};
  return kStatuses.contains(status);
}

std::string describe(const server::Request& request, const server::Response& response) {
  std::string head = std::string(request.method_string()) + " " + std::string(request.target());
  return head + " -> " + std::to_string(response.result_int()) + " " +
         response.body().substr(0, 600);
}

}  // namespace

ApiHarness& ApiHarness::instance() {
  // Never destroyed: worker and delay threads may outlive a static destructor's order.
  static ApiHarness* harness = [] {
    auto* h = new ApiHarness();
    h->load();
    return h;
  }();
  return *harness;
}

void ApiHarness::load() {
  EngineOptions engine_options;
  const char* env = std::getenv("FACELOGIN_MODEL_DIR");
  engine_options.model_dir = env != nullptr && *env != '\0' ? env : "models";
  engine_ = must(Engine::load(engine_options),
                 "cannot load the engine (set FACELOGIN_MODEL_DIR or run tools/setup.sh)");
  liveness_ = must(LivenessModels::load(engine_options.model_dir),
                   "cannot load the liveness models");

  const std::filesystem::path db = scratch_dir() / "api.db";
  SqliteStoreOptions store_options;
  store_options.key = std::string(32, '\x5a');
  store_ = must(open_sqlite_store(db, store_options), "cannot open the store");
  auth_store_ = must(open_sqlite_auth_store(db), "cannot open the auth store");

  // Small numbers, so that one input can walk a flow to its end: one good frame completes an
  // enrolment or a login. Flows expire within seconds (restore() sweeps them), so the limits on
  // open flows are never the reason for an answer unless an input asks for it.
  options_.workers = 1;
  options_.queue_limit = 2;
  options_.trusted_proxies = {kPeer};
  options_.enroll_frames_needed = 1;
  options_.enroll_min_pose_spread = 0;
  options_.flow_ttl = std::chrono::seconds(3);
  options_.max_flows = 100000;
  options_.max_flows_per_address = 100000;
  options_.max_frames_per_flow = 4;
  options_.starts_per_minute = 100000;
  options_.login.matching_frames_needed = 1;
  options_.login.liveness.frames_needed = 1;
  options_.login.liveness.deadline = std::chrono::seconds(3);
  options_.auth.free_failures = 3;

  ServiceOptions service;
  service.gallery = std::make_shared<GalleryCache>(options_.gallery);
  pool_ = must(server::WorkerPool::create(engine_, *store_, service, liveness_, options_.workers,
                                          options_.queue_limit),
               "cannot start the worker pool");
  ServerDeps deps;
  deps.engine = engine_;
  deps.store = store_.get();
  deps.auth_store = auth_store_.get();
  deps.liveness = liveness_;
  deps.service = service;
  auth_ = std::make_unique<Authenticator>(*store_, *auth_store_, options_.auth);
  api_ = std::make_unique<server::Api>(options_, std::move(deps), *pool_, metrics_);

  ensure_account("alice", 3);
  ensure_account("root", 2);
  if (Status s = auth_store_->set_admin("root", true); !s.ok()) {
    die("cannot make root an administrator: " + s.to_string());
  }
  const auto add_key = [&](const std::string& name, std::vector<std::string> scopes,
                           std::string liveness, bool revoke) {
    const std::string key = must(new_api_key(), "cannot make an API key");
    ApiKeyRecord record;
    record.name = name;
    record.scopes = std::move(scopes);
    record.liveness = std::move(liveness);
    must(auth_store_->create_api_key(record, token_hash(key)), "cannot store an API key");
    if (revoke && !auth_store_->revoke_api_key(name).ok()) {
      die("cannot revoke an API key");
    }
    fixture("key_" + name) = key;
  };
  add_key("all", {"login", "enroll", "admin"}, "", false);
  add_key("enroll", {"enroll"}, "off", false);
  add_key("revoked", {"login"}, "", true);
  restore(true);
}

std::string& ApiHarness::fixture(const std::string& name) { return fixtures_[name]; }

void ApiHarness::ensure_account(const std::string& name, int faces) {
  const RecognizerSpec& spec = engine_->recognizer();
  auto user = store_->get_user(name);
  if (!user) {
    std::vector<FaceTemplate> templates;
    for (int i = 0; i < faces; ++i) {
      templates.push_back(synthetic_template(spec, static_cast<unsigned>(name.size() * 100 + i)));
    }
    must(store_->create_user(name, templates), "cannot create an account");
    if (name == "root" && !auth_store_->set_admin("root", true).ok()) {
      die("cannot make root an administrator");
    }
    return;
  }
  if (user->disabled && !store_->set_disabled(name, false).ok()) {
    die("cannot enable " + name);
  }
  if (user->template_count < faces) {
    std::vector<FaceTemplate> more;
    for (int i = user->template_count; i < faces; ++i) {
      more.push_back(synthetic_template(spec, static_cast<unsigned>(name.size() * 100 + i + 50)));
    }
    if (!store_->add_templates(name, more).ok()) {
      die("cannot add templates to " + name);
    }
  }
}

std::string ApiHarness::issue(const std::string& user, const std::string& kind,
                              std::string* csrf) {
  IssuedSession issued =
      must(auth_->issue_session(user, kind, kPeer, "fuzz"), "cannot issue a session");
  if (csrf != nullptr) {
    *csrf = issued.csrf;
  }
  return issued.token;
}

void ApiHarness::restore(bool wants_recovery) {
  api_->sweep();
  ensure_account("alice", 3);
  ensure_account("root", 2);
  for (const std::string user : {"alice", "root"}) {  // NOLINT: from const char*
    for (const std::string kind : {"cookie", "bearer"}) {
      std::string& token = fixture(user + "_" + kind);
      if (token.empty() || !auth_->authenticate(token)) {
        std::string csrf;
        token = issue(user, kind, &csrf);
        if (kind == "cookie") {
          fixture(user + "_csrf") = csrf;
        }
        if (user == "alice" && kind == "cookie") {
          fixture("session") = std::to_string(must(auth_->authenticate(token), "").session.id);
        }
      }
    }
  }
  auto faces = must(store_->user_templates("alice"), "cannot list alice's faces");
  fixture("face") = faces.empty() ? "1" : std::to_string(faces.front().id);
  if (wants_recovery) {
    const std::string code = must(random_token(), "no random token");
    if (!auth_store_->set_recovery_code("alice", token_hash(code)).ok()) {
      die("cannot set a recovery code");
    }
    fixture("recovery") = code;
  }
  // Lockout counters of the default client: a lock left by one input must not decide the next.
  for (const std::string& key :
       {std::string("addr:") + kPeer, std::string("pair:") + kPeer + "/alice",
        std::string("pair:") + kPeer + "/root", std::string("user:alice"),
        std::string("user:root")}) {
    (void)auth_store_->clear_failures(key);
  }
  flow_.clear();
  nonce_.clear();
}

std::string ApiHarness::substitute(std::string_view text) const {
  std::string out(text);
  if (out.find("{{") == std::string::npos) {
    return out;
  }
  for (const auto& [name, value] : fixtures_) {
    replace_all(out, "{{" + name + "}}", value);
  }
  replace_all(out, "{{flow}}", flow_);
  replace_all(out, "{{nonce}}", nonce_);
  return out;
}

std::optional<server::Request> ApiHarness::parse_request(std::string_view raw) {
  std::size_t head_end = raw.find("\n\n");
  const std::size_t body_start = head_end == std::string_view::npos ? raw.size() : head_end + 2;
  if (head_end == std::string_view::npos) {
    head_end = raw.size();
  }
  std::string head;
  for (char c : raw.substr(0, head_end)) {
    if (c == '\n') {
      head += "\r\n";
    } else if (c != '\r') {
      head += c;
    }
  }
  head += "\r\n\r\n";
  http::request_parser<http::empty_body> parser;
  parser.header_limit(16 * 1024);  // as HttpLimits::max_header_bytes
  boost::beast::error_code ec;
  parser.put(boost::asio::buffer(head), ec);
  if (!parser.is_header_done() || (ec && ec != http::error::need_more)) {
    return std::nullopt;
  }
  server::Request request(std::move(parser.get().base()));
  request.body() = std::string(raw.substr(body_start));
  return request;
}

server::Exchange ApiHarness::exchange_for(server::Request request) const {
  server::Exchange exchange;
  exchange.address = server::client_address(request, kPeer, options_.trusted_proxies);
  exchange.request = std::move(request);
  exchange.received = std::chrono::steady_clock::now();
  return exchange;
}

void ApiHarness::check_reply(const server::Request& request, const server::Response& response) {
  const unsigned status = response.result_int();
  FUZZ_REQUIRE(status != 500, describe(request, response));
  FUZZ_REQUIRE(documented_status(status), describe(request, response));
  const auto type = response.find(http::field::content_type);
  if (status == 200 && request.target() == "/metrics") {
    FUZZ_REQUIRE(type != response.end() && type->value().starts_with("text/plain"),
                 describe(request, response));
    return;
  }
  FUZZ_REQUIRE(type != response.end() && type->value() == "application/json",
               describe(request, response));
  const json body = json::parse(response.body(), nullptr, false);
  FUZZ_REQUIRE(body.is_object(), describe(request, response));
  if (status >= 400) {
    const auto error = body.find("error");
    FUZZ_REQUIRE(error != body.end() && error->is_object(), describe(request, response));
    FUZZ_REQUIRE(error->contains("code") && (*error)["code"].is_string() &&
                     error->contains("message") && (*error)["message"].is_string(),
                 describe(request, response));
  }
}

void ApiHarness::remember(const server::Response& response) {
  const json body = json::parse(response.body(), nullptr, false);
  if (!body.is_object()) {
    return;
  }
  if (auto id = body.find("id"); id != body.end() && id->is_string()) {
    flow_ = id->get<std::string>();
  }
  if (auto nonce = body.find("nonce"); nonce != body.end() && nonce->is_string()) {
    nonce_ = nonce->get<std::string>();
  }
}

server::Response ApiHarness::call(server::Request request) {
  if (request.body().size() > api_->body_limit(request)) {
    // The HTTP layer answers 413 itself; the Api never sees it.
    return server::Response(http::status::payload_too_large, request.version());
  }
  struct Waiter {
    std::mutex mu;
    std::condition_variable cv;
    int replies = 0;
    std::optional<server::Response> response;
  };
  auto waiter = std::make_shared<Waiter>();
  server::Exchange exchange = exchange_for(request);
  api_->handle(std::move(exchange), [waiter](server::Response response) {
    std::lock_guard lock(waiter->mu);
    FUZZ_REQUIRE(++waiter->replies == 1, "a second reply to one request");
    waiter->response = std::move(response);
    waiter->cv.notify_all();
  });
  std::unique_lock lock(waiter->mu);
  if (!waiter->cv.wait_for(lock, kReplyTimeout, [&] { return waiter->response.has_value(); })) {
    contract_failed("a reply within 60 s", __FILE__, __LINE__,
                    std::string(request.method_string()) + " " + std::string(request.target()));
  }
  server::Response response = std::move(*waiter->response);
  lock.unlock();
  api_->finish(response);
  check_reply(request, response);
  remember(response);
  return response;
}

std::optional<ApiHarness::Socket> ApiHarness::open_socket(server::Request request) {
  Socket socket;
  socket.upgrade = exchange_for(std::move(request));
  if (std::optional<server::Response> refusal = api_->accept_socket(socket.upgrade)) {
    FUZZ_REQUIRE(refusal->result_int() >= 400, describe(socket.upgrade.request, *refusal));
    check_reply(socket.upgrade.request, *refusal);
    return std::nullopt;
  }
  api_->socket_opened(socket.upgrade, [closed = socket.closed] { *closed = true; });
  return socket;
}

ApiHarness::SocketReply ApiHarness::message(Socket& socket, std::string message, bool binary) {
  struct Waiter {
    std::mutex mu;
    std::condition_variable cv;
    int replies = 0;
    std::optional<SocketReply> reply;
  };
  auto waiter = std::make_shared<Waiter>();
  api_->socket_message(socket.upgrade, std::move(message), binary, socket.state,
                       [waiter](std::string text, bool close) {
                         std::lock_guard lock(waiter->mu);
                         FUZZ_REQUIRE(++waiter->replies == 1, "a second reply to one message");
                         waiter->reply = SocketReply{std::move(text), close};
                         waiter->cv.notify_all();
                       });
  std::unique_lock lock(waiter->mu);
  if (!waiter->cv.wait_for(lock, kReplyTimeout, [&] { return waiter->reply.has_value(); })) {
    contract_failed("a socket reply within 60 s", __FILE__, __LINE__,
                    std::string(socket.upgrade.request.target()));
  }
  SocketReply reply = std::move(*waiter->reply);
  lock.unlock();
  const json body = json::parse(reply.text, nullptr, false);
  FUZZ_REQUIRE(body.is_object() && body.contains("status") && body["status"].is_number_integer(),
               reply.text);
  const int status = body["status"].get<int>();
  FUZZ_REQUIRE(status != 500, reply.text);
  FUZZ_REQUIRE(documented_status(static_cast<unsigned>(status)), reply.text);
  if (status >= 400) {
    FUZZ_REQUIRE(body.contains("error") && body["error"].is_object() &&
                     body["error"].contains("code") && body["error"]["code"].is_string(),
                 reply.text);
  }
  if (auto nonce = body.find("nonce"); nonce != body.end() && nonce->is_string()) {
    nonce_ = nonce->get<std::string>();
  }
  return reply;
}

}  // namespace facelogin::fuzz
