// The API's dispatch: authentication, limits and replies shared by every route; the handlers
// are in server/handlers/, the route table in routes.cpp.

#include "server/api.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>

#include "server/api_util.h"

namespace facelogin::server {
namespace {

constexpr std::string_view kApiPrefix = "/api/";

// The value of cookie `name` in the Cookie header, or "".
std::string cookie_value(const Request& request, std::string_view name) {
  const std::string cookies = header(request, "Cookie");
  std::string_view rest = cookies;
  while (!rest.empty()) {
    const std::size_t end = std::min(rest.find(';'), rest.size());
    std::string_view item = rest.substr(0, end);
    rest = end < rest.size() ? rest.substr(end + 1) : std::string_view();
    while (!item.empty() && item.front() == ' ') {
      item.remove_prefix(1);
    }
    const std::size_t eq = item.find('=');
    if (eq != std::string_view::npos && item.substr(0, eq) == name) {
      return std::string(item.substr(eq + 1));
    }
  }
  return {};
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Dispatch.

Api::Api(const ServerOptions& options, ServerDeps deps, WorkerPool& pool, Metrics& metrics)
    : options_(options),
      deps_(std::move(deps)),
      clock_(deps_.clock ? deps_.clock : system_server_clock()),
      pool_(pool),
      metrics_(metrics),
      auth_(*deps_.store, *deps_.auth_store, options.auth,
            [clock = clock_] { return clock->unix_ms(); }),
      enrollments_(*clock_),
      logins_(*clock_) {
  metrics_.describe("facelogin_http_requests_total", "HTTP requests by route and status.");
  metrics_.describe("facelogin_request_seconds", "Time to answer a request, by route.");
  metrics_.describe("facelogin_frame_seconds", "Time to process one camera frame, by flow.");
  metrics_.describe("facelogin_stage_seconds",
                    "Time of each stage of a frame (decode, detect, quality, align, embed, "
                    "liveness), by flow.");
  metrics_.describe("facelogin_decisions_total", "Login and enrolment decisions by outcome.");
  metrics_.describe("facelogin_lockouts_total", "Attempts refused because of a lockout.");
  metrics_.gauge("facelogin_flows_open", "Enrolments and login attempts in progress.",
                 [this] { return static_cast<double>(enrollments_.size() + logins_.size()); });
  // The enrolled population (issue 15); NaN when the store cannot be read.
  const auto population = [this](auto field) {
    return [this, field] {
      auto status = pool_.any_service().population_status(/*refresh=*/false);
      return status ? field(*status) : std::nan("");
    };
  };
  metrics_.gauge("facelogin_threshold_base", "The recogniser's calibrated (or configured) threshold.",
                 population([](const PopulationStatus& p) { return double{p.base_threshold}; }));
  metrics_.gauge("facelogin_threshold_operating",
                 "The threshold decisions use: the base raised to what the enrolled population "
                 "needs for the target false-match rate.",
                 population([](const PopulationStatus& p) { return double{p.operating_threshold}; }));
  metrics_.gauge("facelogin_population_users", "Enrolled users the population estimate rests on.",
                 population([](const PopulationStatus& p) {
                   return static_cast<double>(p.estimate.users);
                 }));
  metrics_.gauge("facelogin_population_impostor_claims",
                 "Impostor claims (a template against another user) scored in the population.",
                 population([](const PopulationStatus& p) {
                   return static_cast<double>(p.estimate.claims);
                 }));
  metrics_.gauge("facelogin_population_fmr_at_base",
                 "Estimated per-claim false-match rate at the base threshold on this population.",
                 population([](const PopulationStatus& p) {
                   return p.fmr_at_base.value_or(std::nan(""));
                 }));
}

std::size_t Api::body_limit(const Request& header) const {
  std::vector<std::string> params;
  for (const Route& r : routes()) {
    if (r.method == header.method() && match(r.pattern, path_of(header), &params)) {
      switch (r.body) {
        case Body::kFrame:
          return options_.max_frame_bytes;
        case Body::kJson:
          return options_.max_json_bytes;
        case Body::kNone:
          return 1024;
      }
    }
  }
  return 1024;
}

void Api::finish(Response& response) const {
  response.set("X-Content-Type-Options", "nosniff");
  response.set(http::field::x_frame_options, "DENY");
  response.set("Referrer-Policy", "no-referrer");
  response.set("Content-Security-Policy",
               "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: "
               "blob:; media-src 'self' blob:; connect-src 'self'; manifest-src 'self'; "
               "frame-ancestors 'none'; base-uri 'none'; form-action 'self'");
  response.set("Permissions-Policy", "camera=(self), microphone=(), geolocation=()");
  response.set("Cross-Origin-Opener-Policy", "same-origin");
  response.set("Cross-Origin-Resource-Policy", "same-origin");
  if (options_.secure_cookies) {
    response.set(http::field::strict_transport_security, "max-age=31536000");
  }
  if (response.find(http::field::cache_control) == response.end()) {
    response.set(http::field::cache_control, "no-store");
  }
}

void Api::handle(Exchange exchange, Reply reply) {
  Call call;
  call.exchange = std::move(exchange);
  call.reply = std::move(reply);
  call.at = now();
  const Request& request = call.exchange.request;
  const std::string_view path = path_of(request);
  // Origin form only (RFC 9112 3.2.1): the router compares paths after their leading '/', so
  // "&metrics" would otherwise be served as /metrics (found by api_fuzzer, issue 17).
  if (!path.starts_with('/')) {
    call.route = "bad_target";
    return reply_error(call, Status(ErrorCode::kInvalidArgument,
                                    "the request target must be a path that starts with /"));
  }

  const Route* found = nullptr;
  bool path_known = false;
  for (const Route& r : routes()) {
    std::vector<std::string> params;
    if (match(r.pattern, path, &params)) {
      path_known = true;
      if (r.method == request.method()) {
        found = &r;
        call.params = std::move(params);
        break;
      }
    }
  }
  if (found == nullptr) {
    if (path_known) {
      call.route = "method_not_allowed";
      return reply_error(call, Status(ErrorCode::kInvalidArgument, "method not allowed here"));
    }
    if (!path.starts_with(kApiPrefix) && request.method() == http::verb::get &&
        !options_.web_dir.empty()) {
      call.route = "static";
      return static_file(call);
    }
    call.route = "not_found";
    return reply_error(call, Status(ErrorCode::kNotFound, "no such endpoint"));
  }
  call.route = found->pattern;

  // Bodies must say what they are: a cross-site form cannot send application/json or an image
  // without a CORS preflight, which this server never grants.
  const std::string type = header(request, "Content-Type");
  const std::string base_type = type.substr(0, type.find(';'));
  if (found->body == Body::kJson && base_type != "application/json") {
    return reply_error(call, Status(ErrorCode::kInvalidArgument,
                                    "this endpoint takes a JSON body (Content-Type: "
                                    "application/json)"));
  }
  if (found->body == Body::kFrame && base_type != "image/jpeg" && base_type != "image/png") {
    return reply_error(call, Status(ErrorCode::kInvalidArgument,
                                    "this endpoint takes one camera frame (Content-Type: "
                                    "image/jpeg or image/png)"));
  }

  // Who is calling: a bearer token, or the session cookie.
  std::string token;
  if (const std::string authz = header(request, "Authorization"); authz.starts_with("Bearer ")) {
    token = authz.substr(7);
  } else if (std::string cookie = cookie_value(request, cookie_name()); !cookie.empty()) {
    token = std::move(cookie);
    call.via_cookie = true;
  }
  if (!token.empty()) {
    auto session = auth_.authenticate(token);
    if (session) {
      call.session = std::move(*session);
      call.token = token;
    } else if (session.error().code() != ErrorCode::kUnauthenticated) {
      return reply_error(call, session.error());
    }
  }
  if (const std::string key = header(request, "X-API-Key"); !key.empty()) {
    auto record = deps_.auth_store->find_api_key(token_hash(key));
    if (!record || record->revoked) {
      if (!record && record.error().code() != ErrorCode::kNotFound) {
        return reply_error(call, record.error());
      }
      return reply_error(call, Status(ErrorCode::kUnauthenticated, "unknown or revoked API key"));
    }
    call.api_key = std::move(*record);
  }
  const bool admin_key = call.api_key && call.api_key->has("admin");
  if (found->access == Access::kAdmin && admin_key) {
    // An application with the admin scope; no user session involved.
  } else if (found->access != Access::kPublic && !call.session) {
    return reply_error(call, Status(ErrorCode::kUnauthenticated,
                                    "log in first: no valid session cookie or bearer token"));
  } else if (found->access == Access::kAdmin) {
    auto admin = deps_.auth_store->is_admin(call.session->user.name);
    if (!admin) {
      return reply_error(call, admin.error());
    }
    if (!*admin) {
      audit(call, "admin_denied", call.session->user.name, "", "forbidden",
            {{"route", found->pattern}});
      return reply_error(call, Status(ErrorCode::kForbidden, "administrators only"));
    }
  }
  // Cookie sessions: unsafe methods must prove they come from our own pages. On a public route
  // a cookie without the header is ignored rather than refused (a browser that is still logged
  // in may start a new login or sign-up); routes that act for the session refuse.
  if (call.session && call.via_cookie && request.method() != http::verb::get &&
      request.method() != http::verb::head &&
      !constant_time_equal(header(request, "X-CSRF-Token"), Authenticator::csrf_for(token))) {
    if (found->access != Access::kPublic) {
      return reply_error(call, Status(ErrorCode::kForbidden,
                                      "missing or wrong X-CSRF-Token header for a cookie session"));
    }
    call.session.reset();
    call.token.clear();
  }
  try {
    (this->*(found->handler))(call);
  } catch (const std::exception& e) {
    // Handlers report errors as Status; an exception here is a bug, answered as a 500 so that
    // the connection and the server carry on.
    reply_error(call, Status(ErrorCode::kInternal, e.what()));
  }
}

void Api::reply_json(Call& call, http::status status, const json& body, const Headers& headers) {
  Response response(status, call.exchange.request.version());
  response.set(http::field::content_type, "application/json");
  for (const auto& [name, value] : headers) {
    response.insert(name, value);
  }
  // Strings from clients (user agents) may not be UTF-8: replaced, never a 500.
  response.body() = body.dump(-1, ' ', false, json::error_handler_t::replace);
  metrics_.count(
      "facelogin_http_requests_total",
      fmt::format("route=\"{}\",status=\"{}\"", call.route, static_cast<unsigned>(status)));
  metrics_.observe("facelogin_request_seconds", fmt::format("route=\"{}\"", call.route),
                   seconds_since(call.exchange.received));
  call.reply(std::move(response));
}

void Api::reply_error(Call& call, const Status& status, int retry_after_s) {
  Response response = error_response(status, call.exchange.request.version(), true);
  if (call.route == "method_not_allowed") {
    response.result(http::status::method_not_allowed);
  }
  if (retry_after_s > 0) {
    response.set(http::field::retry_after, std::to_string(retry_after_s));
  }
  if (response.result() == http::status::internal_server_error) {
    fmt::print(stderr, "facelogin serve: {} {}: {}\n",
               std::string(http::to_string(call.exchange.request.method())), call.route,
               status.to_string());
  }
  metrics_.count("facelogin_http_requests_total",
                 fmt::format("route=\"{}\",status=\"{}\"", call.route, response.result_int()));
  call.reply(std::move(response));
}

Result<json> Api::json_body(const Call& call) const {
  json body = json::parse(call.exchange.request.body(), nullptr, /*allow_exceptions=*/false);
  if (body.is_discarded() || !body.is_object()) {
    return make_error(ErrorCode::kInvalidArgument, "the body is not a JSON object");
  }
  return body;
}

bool Api::rate_limited(Call& call, const std::string& user) {
  // The buckets are in the database, so every server on it counts the same starts.
  auto take = [&](const std::string& key, const char* what) {
    auto decision =
        deps_.auth_store->take_rate_token(key, auth_.now_ms(), options_.starts_per_minute);
    if (!decision) {
      reply_error(call, decision.error());
      return true;
    }
    if (!decision->allowed) {
      reply_error(call,
                  Status(ErrorCode::kTooManyRequests,
                         fmt::format("too many attempts {}; wait a little and try again", what)),
                  decision->retry_after_s);
      return true;
    }
    return false;
  };
  if (take("addr:" + call.exchange.address, "from this address")) {
    return true;
  }
  if (user.empty()) {
    return false;
  }
  // Per account too, so that many addresses cannot hammer one account faster than one could
  // (the lockout then stops them after a few failures); but not from an address the owner has
  // logged in from, or strangers' starts elsewhere would keep the owner out (issue 17).
  auto known = auth_.known_context(user, call.exchange.address);
  if (!known) {
    reply_error(call, known.error());
    return true;
  }
  return !*known && take("user:" + user, "for this account");
}

bool Api::too_many_flows(Call& call) {
  const std::size_t open = enrollments_.size() + logins_.size();
  if (open >= static_cast<std::size_t>(options_.max_flows)) {
    reply_error(call, Status(ErrorCode::kUnavailable, "too many logins in progress"), 5);
    return true;
  }
  const std::size_t mine =
      enrollments_.count_for(call.exchange.address) + logins_.count_for(call.exchange.address);
  if (mine >= static_cast<std::size_t>(options_.max_flows_per_address)) {
    reply_error(call,
                Status(ErrorCode::kTooManyRequests,
                       "too many logins or enrolments open from this address: finish or wait"),
                5);
    return true;
  }
  return false;
}

bool Api::bearer_allowed(Call& call, const std::string& kind, const char* scope) {
  if (kind != "bearer" || (call.api_key && call.api_key->has(scope))) {
    return true;
  }
  reply_error(call, call.api_key
                        ? Status(ErrorCode::kForbidden,
                                 fmt::format("this API key lacks the '{}' scope", scope))
                        : Status(ErrorCode::kUnauthenticated,
                                 fmt::format("bearer sessions are for applications: send their "
                                             "API key (X-API-Key) with the '{}' scope, or use "
                                             "\"session\": \"cookie\"",
                                             scope)));
  return false;
}

bool Api::set_up_flow(Call& call, const json& body, const char* scope, FlowBase* flow) {
  auto kind = string_field(body, "session", "cookie");
  if (!kind) {
    reply_error(call, kind.error());
    return false;
  }
  flow->session_kind = std::move(*kind);
  if (flow->session_kind != "cookie" && flow->session_kind != "bearer") {
    reply_error(call,
                Status(ErrorCode::kInvalidArgument, "session must be \"cookie\" or \"bearer\""));
    return false;
  }
  if (!bearer_allowed(call, flow->session_kind, scope)) {
    return false;
  }
  flow->policy = liveness_policy(call, scope);
  flow->live_check = flow->policy != LivenessPolicy::kOff;
  if (flow->live_check && deps_.liveness == nullptr) {
    // Never run a flow without the liveness it was promised.
    reply_error(call, Status(ErrorCode::kUnavailable,
                             "liveness is required but its models are not loaded on this server"));
    return false;
  }
  flow->actor = actor(call, false);
  return true;
}

LivenessPolicy Api::liveness_policy(const Call& call, const char* scope) const {
  // A key changes the policy only of what its scopes allow: an enrol-only key with liveness off
  // must not switch liveness off for a login it merely accompanies (issue 17).
  if (call.api_key && call.api_key->has(scope) && !call.api_key->liveness.empty()) {
    if (auto policy = parse_liveness_policy(call.api_key->liveness)) {
      return *policy;
    }
    return LivenessPolicy::kActive;  // unreadable: the strictest
  }
  return options_.login.liveness.policy;
}

std::string Api::actor(const Call& call, bool admin) {
  if (call.session) {
    return admin ? "admin:" + call.session->user.name : call.session->user.name;
  }
  if (call.api_key) {
    return "apikey:" + call.api_key->name;
  }
  return "anonymous";
}

bool Api::locked_out(Call& call, const std::string& user, AttemptKind kind) {
  auto locked = auth_.locked_for_ms(user, call.exchange.address, kind);
  if (!locked) {
    reply_error(call, locked.error());
    return true;
  }
  if (*locked <= 0) {
    return false;
  }
  metrics_.count("facelogin_lockouts_total", "");
  const int retry = static_cast<int>((*locked + 999) / 1000);
  audit(call, "login", "anonymous", user, "locked_out", {{"retry_after_s", retry}});
  reply_error(call,
              Status(ErrorCode::kTooManyRequests,
                     fmt::format("too many failed attempts: try again in {} s, or use your "
                                 "recovery code later",
                                 retry)),
              retry);
  return true;
}

std::string Api::cookie_name() const {
  return options_.secure_cookies ? "__Host-facelogin_session" : "facelogin_session";
}

std::string Api::session_cookie(const std::string& token, std::int64_t max_age) const {
  return fmt::format("{}={}; Path=/; Max-Age={}; HttpOnly; SameSite=Strict{}", cookie_name(), token,
                     max_age, options_.secure_cookies ? "; Secure" : "");
}

Result<json> Api::open_session(Call& call, const std::string& user, const std::string& kind,
                               Headers* headers) {
  auto issued = auth_.issue_session(user, kind, call.exchange.address,
                                    header(call.exchange.request, "User-Agent"));
  if (!issued) {
    return make_error(issued.error());
  }
  json out = {{"user", user}, {"kind", kind}, {"expires_at", issued->expires_at}};
  if (kind == "cookie") {
    out["csrf"] = issued->csrf;
    headers->emplace_back(
        "Set-Cookie", session_cookie(issued->token, issued->expires_at - auth_.now_ms() / 1000));
  } else {
    out["token"] = issued->token;
  }
  return out;
}

void Api::observe_stages(const char* flow, double decode_s, const StageTimings& stages,
                         double liveness_ms) {
  const auto observe = [&](const char* stage, double seconds) {
    metrics_.observe("facelogin_stage_seconds",
                     fmt::format("flow=\"{}\",stage=\"{}\"", flow, stage), seconds);
  };
  observe("decode", decode_s);
  observe("detect", stages.detect_ms / 1000);
  observe("quality", stages.quality_ms / 1000);
  observe("align", stages.align_ms / 1000);
  observe("embed", stages.embed_ms / 1000);
  observe("liveness", liveness_ms / 1000);
}

void Api::audit(const Call& call, std::string event, std::string actor, std::string subject,
                std::string outcome, json detail) {
  AuditEvent e;
  e.event = std::move(event);
  e.actor = std::move(actor);
  e.subject = std::move(subject);
  e.address = call.exchange.address;
  e.outcome = std::move(outcome);
  e.detail = detail.dump(-1, ' ', false, json::error_handler_t::replace);
  if (Status s = auth_.audit(std::move(e)); !s.ok()) {
    fmt::print(stderr, "facelogin serve: cannot write the audit log: {}\n", s.to_string());
  }
}

bool Api::submit(Call& call, std::function<void(WorkerSlot&, Call&)> job) {
  // The job answers through a holder, sent only once the job has returned and released its
  // flow's lock: otherwise a fast client's next frame could find the flow still busy.
  Reply send = std::move(call.reply);
  auto held = std::make_shared<std::optional<Response>>();
  call.reply = [held](Response response) { *held = std::move(response); };
  auto shared = std::make_shared<Call>(std::move(call));
  if (pool_.try_submit([this, shared, held, send, job = std::move(job)](WorkerSlot& slot) {
        try {
          job(slot, *shared);
        } catch (const std::exception& e) {
          // A bug; still answer, or the client would wait on a connection without a timeout.
          if (!*held) {
            reply_error(*shared, Status(ErrorCode::kInternal, e.what()));
          }
        }
        if (*held) {
          if (shared->reply_not_before > SteadyClock::now()) {
            auto response = std::make_shared<Response>(std::move(**held));
            delayed_.send_at(shared->reply_not_before,
                             [send, response] { send(std::move(*response)); });
          } else {
            send(std::move(**held));
          }
        }
      })) {
    return true;
  }
  call = std::move(*shared);
  call.reply = std::move(send);
  reply_error(call, Status(ErrorCode::kUnavailable, "the server is busy; try again in a moment"),
              1);
  return false;
}

// ---------------------------------------------------------------------------------------------
// Health and documents.

void Api::healthz(Call& call) { reply_json(call, http::status::ok, {{"status", "ok"}}); }

void Api::readyz(Call& call) {
  // A cheap query (a count, nothing decrypted) that needs the database.
  auto users = deps_.store->count_templates(deps_.engine->recognizer().id);
  const bool saturated = pool_.busy() >= pool_.size() && pool_.queued() > 0;
  if (!users || saturated) {
    return reply_error(
        call,
        Status(ErrorCode::kUnavailable, !users ? "database unavailable" : "workers saturated"), 1);
  }
  reply_json(call, http::status::ok,
             {{"status", "ready"},
              {"recognizer", deps_.engine->recognizer().id},
              {"liveness", deps_.liveness != nullptr},
              {"workers", pool_.size()}});
}

void Api::metrics(Call& call) {
  Response response(http::status::ok, call.exchange.request.version());
  response.set(http::field::content_type, "text/plain; version=0.0.4");
  response.body() = metrics_.render();
  call.reply(std::move(response));
}

void Api::openapi_doc(Call& call) { reply_json(call, http::status::ok, openapi()); }

// ---------------------------------------------------------------------------------------------
// Housekeeping.

void Api::sweep() {
  const auto now = this->now();
  enrollments_.take_expired(now);
  for (const auto& flow : logins_.take_expired(now)) {
    std::lock_guard lock(flow->busy);
    if (flow->attempt->faces_judged() == 0 || flow->attempt->state() != AttemptState::kPending) {
      continue;  // no face was judged: nothing was tried (issue 19: cancel is not a failure)
    }
    // An attempt that judged a face and was left undecided counts as a failure: otherwise
    // abandoning attempts just before they fail would dodge the lockout.
    Call call;
    call.exchange.address = flow->address;
    auto locked = auth_.record_failure(flow->attempt->user(), flow->address);
    audit(call, "login", "anonymous", flow->attempt->user(), "timed_out",
          {{"frames", flow->frames}, {"locked_for_s", locked ? *locked / 1000 : 0}});
    metrics_.count("facelogin_decisions_total", "flow=\"login\",outcome=\"timed_out\"");
  }
}

}  // namespace facelogin::server
