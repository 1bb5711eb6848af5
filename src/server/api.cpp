#include "server/api.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <iterator>
#include <span>

#include "facelogin/image.h"

namespace facelogin::server {
namespace {

using json = nlohmann::json;
using Headers = std::vector<std::pair<std::string, std::string>>;

constexpr std::string_view kApiPrefix = "/api/";

std::vector<std::string> split_path(std::string_view path) {
  std::vector<std::string> parts;
  std::size_t start = 1;
  while (start <= path.size()) {
    const std::size_t end = std::min(path.find('/', start), path.size());
    parts.emplace_back(path.substr(start, end - start));
    start = end + 1;
  }
  return parts;
}

// Matches `path` against a route pattern; fills the {placeholders}.
bool match(const std::string& pattern, std::string_view path, std::vector<std::string>* params) {
  if (!path.starts_with('/')) {
    return false;  // split_path skips the first character, which must be the '/'
  }
  const auto want = split_path(pattern);
  const auto have = split_path(path);
  if (want.size() != have.size()) {
    return false;
  }
  std::vector<std::string> found;
  for (std::size_t i = 0; i < want.size(); ++i) {
    if (want[i].size() > 2 && want[i].front() == '{' && want[i].back() == '}') {
      if (have[i].empty()) {
        return false;
      }
      found.push_back(have[i]);
    } else if (want[i] != have[i]) {
      return false;
    }
  }
  *params = std::move(found);
  return true;
}

std::string_view path_of(const Request& request) {
  std::string_view target = request.target();
  return target.substr(0, target.find('?'));
}

// The decoded value of query parameter `name`, or "".
std::string query_param(const Request& request, std::string_view name) {
  std::string_view target = request.target();
  const std::size_t q = target.find('?');
  if (q == std::string_view::npos) {
    return {};
  }
  std::string_view rest = target.substr(q + 1);
  while (!rest.empty()) {
    const std::size_t end = std::min(rest.find('&'), rest.size());
    const std::string_view item = rest.substr(0, end);
    rest = end < rest.size() ? rest.substr(end + 1) : std::string_view();
    const std::size_t eq = item.find('=');
    if (item.substr(0, eq) != name) {
      continue;
    }
    std::string value;
    const std::string_view raw = eq == std::string_view::npos ? "" : item.substr(eq + 1);
    for (std::size_t i = 0; i < raw.size(); ++i) {
      if (raw[i] == '+') {
        value += ' ';
      } else if (raw[i] == '%' && i + 2 < raw.size() &&
                 std::isxdigit(static_cast<unsigned char>(raw[i + 1])) &&
                 std::isxdigit(static_cast<unsigned char>(raw[i + 2]))) {
        value += static_cast<char>(std::stoi(std::string(raw.substr(i + 1, 2)), nullptr, 16));
        i += 2;
      } else {
        value += raw[i];
      }
    }
    return value;
  }
  return {};
}

// An optional field of a JSON request body: its value, `fallback` when absent or null, and a
// clear error (400) when it has another type (never nlohmann's type_error, a 500).
Result<std::string> string_field(const json& body, const char* name, std::string fallback) {
  const auto it = body.find(name);
  if (it == body.end() || it->is_null()) {
    return fallback;
  }
  if (!it->is_string()) {
    return make_error(ErrorCode::kInvalidArgument, fmt::format("{} must be a string", name));
  }
  return it->get<std::string>();
}

Result<bool> bool_field(const json& body, const char* name, bool fallback) {
  const auto it = body.find(name);
  if (it == body.end() || it->is_null()) {
    return fallback;
  }
  if (!it->is_boolean()) {
    return make_error(ErrorCode::kInvalidArgument,
                      fmt::format("{} must be true or false", name));
  }
  return it->get<bool>();
}

// A numeric id from a path or query ("12"): digits only, no sign, prefix or suffix ("11abc" is
// not 11), within int64.
std::optional<std::int64_t> parse_id(std::string_view text) {
  if (text.empty() || text.size() > 18 ||
      !std::all_of(text.begin(), text.end(), [](char c) { return c >= '0' && c <= '9'; })) {
    return std::nullopt;
  }
  std::int64_t value = 0;
  for (char c : text) {
    value = value * 10 + (c - '0');
  }
  return value;
}

// The enrolled population and the thresholds it gives, for the admin page and the audit log.
json population_json(const PopulationStatus& p) {
  const PopulationEstimate& e = p.estimate;
  json out = {{"population_threshold", p.enabled},
              {"base_threshold", p.base_threshold},
              {"operating_threshold", p.operating_threshold},
              {"users", e.users},
              {"templates", e.templates},
              {"impostor_claims", e.claims},
              {"usable", e.usable},
              {"target_fmr", e.target_fmr},
              {"method", e.method}};
  out["fmr_at_base"] = p.fmr_at_base ? json(*p.fmr_at_base) : json(nullptr);
  out["fmr_at_operating"] = p.fmr_at_operating ? json(*p.fmr_at_operating) : json(nullptr);
  return out;
}

std::string header(const Request& request, std::string_view name) {
  auto it = request.find(name);
  return it == request.end() ? std::string() : std::string(it->value());
}

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

double seconds_since(SteadyClock::time_point t) {
  return std::chrono::duration<double>(SteadyClock::now() - t).count();
}

json box_json(const std::optional<Box>& box) {
  if (!box) {
    return nullptr;
  }
  return {{"x", box->x}, {"y", box->y}, {"width", box->width}, {"height", box->height}};
}

json quality_json(const QualityReport& q) {
  json issues = json::array();
  for (QualityIssue issue : q.issues) {
    issues.push_back(std::string(quality_issue_name(issue)));
  }
  return {{"issues", issues},
          {"pose", {{"yaw", q.pose.yaw}, {"pitch", q.pose.pitch}, {"roll", q.pose.roll}}}};
}

// What a person in front of the camera should do about this frame.
std::string frame_advice(const ImageReport& report) {
  switch (report.outcome) {
    case FrameOutcome::kOk:
      return {};
    case FrameOutcome::kNoFace:
      return "Look at the camera so that your face is in view.";
    case FrameOutcome::kSeveralFaces:
      return "Only one face, please.";
    case FrameOutcome::kPoorQuality:
      return report.quality.issues.empty()
                 ? report.message
                 : std::string(quality_issue_advice(report.quality.issues.front()));
  }
  return report.message;
}

json frame_json(const ImageReport& report, const Image& image) {
  return {{"outcome", std::string(frame_outcome_name(report.outcome))},
          {"message", report.message},
          {"advice", frame_advice(report)},
          {"box", box_json(report.box)},
          {"frame", {{"width", image.width}, {"height", image.height}}},
          {"quality", quality_json(report.quality)}};
}

// Which check refused an attempt, for the audit log (issue 4: "which signal decided").
std::string_view deciding_signal(std::string_view reason) {
  if (reason == "not_live") return "passive_liveness";
  if (reason == "still_image" || reason == "bad_timing") return "replay_checks";
  if (reason == "wrong_move" || reason == "too_slow") return "active_challenge";
  if (reason == "flat_motion") return "3d_motion";
  if (reason == "timed_out") return "deadline";
  if (reason == "locked_out") return "lockout";
  return "recognition";
}

// The challenge asked and how far it got, for the audit log (never images or templates).
void add_challenge_audit(const LoginAttempt& attempt, nlohmann::json* details) {
  const ActiveChallenge* challenge = attempt.challenge();
  if (challenge == nullptr) {
    return;
  }
  std::vector<std::string> actions;
  for (ChallengeAction a : challenge->actions()) {
    actions.emplace_back(challenge_action_name(a));
  }
  (*details)["challenge"] = actions;
  (*details)["challenge_steps_done"] = challenge->steps_done();
  if (!attempt.step_up().empty()) {
    (*details)["step_up"] = attempt.step_up();  // why the adaptive policy asked for it
  }
  if (auto parallax = challenge->min_parallax_seen()) {
    (*details)["parallax"] = *parallax;
  }
}

// A camera frame, far tighter than a file on the command line: a login needs no more than a
// 1920x1200 frame (the web app sends 640x480), and every pixel is decoding work a stranger can
// ask for (issue 17, the decode limits in docs/server.md).
DecodeLimits frame_limits() {
  DecodeLimits limits;
  limits.max_pixels = 1920 * 1200;
  limits.max_side = 2048;
  limits.max_jpeg_scans = 32;
  limits.max_png_chunks = 1024;
  return limits;
}

std::string_view state_name(AttemptState state) {
  switch (state) {
    case AttemptState::kPending:
      return "pending";
    case AttemptState::kAccepted:
      return "accepted";
    case AttemptState::kRejected:
      return "rejected";
  }
  return "pending";
}

float pose_spread(const std::vector<EnrollFlow::Face>& faces) {
  if (faces.empty()) {
    return 0.f;
  }
  const auto [ymin, ymax] =
      std::minmax_element(faces.begin(), faces.end(),
                          [](const auto& a, const auto& b) { return a.pose.yaw < b.pose.yaw; });
  const auto [pmin, pmax] =
      std::minmax_element(faces.begin(), faces.end(),
                          [](const auto& a, const auto& b) { return a.pose.pitch < b.pose.pitch; });
  return std::max(ymax->pose.yaw - ymin->pose.yaw, pmax->pose.pitch - pmin->pose.pitch);
}

// The `n` faces to keep: the extremes of yaw and pitch (so the pose variety is kept), then the
// best by quality.
std::vector<const EnrollFlow::Face*> choose_faces(const std::vector<EnrollFlow::Face>& faces,
                                                  std::size_t n) {
  std::vector<const EnrollFlow::Face*> chosen;
  const auto add = [&](const EnrollFlow::Face* f) {
    if (chosen.size() < n && std::find(chosen.begin(), chosen.end(), f) == chosen.end()) {
      chosen.push_back(f);
    }
  };
  const auto by = [&](auto key) {
    return std::minmax_element(faces.begin(), faces.end(),
                               [&](const auto& a, const auto& b) { return key(a) < key(b); });
  };
  const auto [ymin, ymax] = by([](const EnrollFlow::Face& f) { return f.pose.yaw; });
  const auto [pmin, pmax] = by([](const EnrollFlow::Face& f) { return f.pose.pitch; });
  for (auto it : {ymin, ymax, pmin, pmax}) {
    add(&*it);
  }
  std::vector<const EnrollFlow::Face*> rest;
  for (const auto& f : faces) {
    rest.push_back(&f);
  }
  std::stable_sort(rest.begin(), rest.end(),
                   [](const auto* a, const auto* b) { return a->quality > b->quality; });
  for (const auto* f : rest) {
    add(f);
  }
  return chosen;
}

const char* content_type_for(const std::filesystem::path& path) {
  const std::string ext = path.extension().string();
  if (ext == ".html") return "text/html; charset=utf-8";
  if (ext == ".js") return "text/javascript; charset=utf-8";
  if (ext == ".css") return "text/css; charset=utf-8";
  if (ext == ".svg") return "image/svg+xml";
  if (ext == ".png") return "image/png";
  if (ext == ".json") return "application/json";
  if (ext == ".webmanifest") return "application/manifest+json";
  return "application/octet-stream";
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// The route table.

const std::vector<Route>& Api::routes() {
  using V = http::verb;
  static const std::vector<Route> table = {
      {V::get, "/healthz", Access::kPublic, Body::kNone, "Liveness probe: the process answers.",
       &Api::healthz},
      {V::get, "/readyz", Access::kPublic, Body::kNone,
       "Readiness: models loaded, database reachable, workers not saturated.", &Api::readyz},
      {V::get, "/metrics", Access::kPublic, Body::kNone, "Prometheus metrics.", &Api::metrics},
      {V::get, "/api/v1/openapi.json", Access::kPublic, Body::kNone, "This document.",
       &Api::openapi_doc},
      {V::post, "/api/v1/enrollments", Access::kPublic, Body::kJson,
       "Start enrolling a new account {user, session} or, signed in, more faces {add: true}.",
       &Api::start_enrollment},
      {V::post, "/api/v1/enrollments/{id}/frames", Access::kPublic, Body::kFrame,
       "Send one camera frame (JPEG or PNG) of an enrolment; answers with feedback.",
       &Api::enrollment_frame},
      {V::get, "/api/v1/enrollments/{id}/socket", Access::kPublic, Body::kNone,
       "WebSocket: send frames as binary messages, get each frame's feedback as a text message.",
       &Api::socket_only},
      {V::post, "/api/v1/enrollments/{id}/finish", Access::kPublic, Body::kNone,
       "Store the enrolment's faces; a new account gets a session and a recovery code.",
       &Api::finish_enrollment},
      {V::delete_, "/api/v1/enrollments/{id}", Access::kPublic, Body::kNone,
       "Abandon an enrolment; nothing is stored.", &Api::cancel_enrollment},
      {V::post, "/api/v1/login/attempts", Access::kPublic, Body::kJson,
       "Start a login attempt {user, session}; without user, face-only (1:N) where allowed. "
       "Returns its id, nonce and deadline.",
       &Api::start_login},
      {V::post, "/api/v1/login/attempts/{id}/frames", Access::kPublic, Body::kFrame,
       "Send one camera frame of an attempt (header X-Attempt-Nonce); feedback, then the decision.",
       &Api::login_frame},
      {V::get, "/api/v1/login/attempts/{id}/socket", Access::kPublic, Body::kNone,
       "WebSocket for bearer-session attempts: first a text message {\"nonce\"}, then frames "
       "as binary messages; each answered with feedback, the last with the decision.",
       &Api::socket_only},
      {V::post, "/api/v1/login/recovery", Access::kPublic, Body::kJson,
       "Log in with the one-time recovery code {user, code, session}.", &Api::recovery_login},
      {V::get, "/api/v1/session", Access::kSession, Body::kNone,
       "The current session (and its CSRF token for cookie sessions).", &Api::get_session},
      {V::post, "/api/v1/logout", Access::kSession, Body::kNone, "End the current session.",
       &Api::logout},
      {V::get, "/api/v1/account", Access::kSession, Body::kNone,
       "My account: faces (no templates), sessions.", &Api::get_account},
      {V::delete_, "/api/v1/account", Access::kSession, Body::kNone,
       "Delete my account with all its faces and sessions.", &Api::delete_account},
      {V::delete_, "/api/v1/account/faces/{id}", Access::kSession, Body::kNone,
       "Remove one of my faces (not the last).", &Api::delete_face},
      {V::delete_, "/api/v1/account/sessions/{id}", Access::kSession, Body::kNone,
       "End one of my sessions.", &Api::revoke_session},
      {V::post, "/api/v1/account/recovery-code", Access::kSession, Body::kNone,
       "Replace my recovery code; the new one is shown once.", &Api::new_recovery_code},
      {V::get, "/api/v1/admin/users", Access::kAdmin, Body::kNone,
       "Admin: list accounts (?q= filters by name).", &Api::admin_users},
      {V::post, "/api/v1/admin/users/{name}/disable", Access::kAdmin, Body::kNone,
       "Admin: disable an account (its sessions end, it cannot log in).", &Api::admin_disable},
      {V::post, "/api/v1/admin/users/{name}/enable", Access::kAdmin, Body::kNone,
       "Admin: enable a disabled account.", &Api::admin_enable},
      {V::delete_, "/api/v1/admin/users/{name}", Access::kAdmin, Body::kNone,
       "Admin: delete an account with its faces and sessions.", &Api::admin_delete},
      {V::get, "/api/v1/admin/audit", Access::kAdmin, Body::kNone,
       "Admin: the audit log, newest first (?subject=, ?before=ID, ?limit=).", &Api::admin_audit},
      {V::get, "/api/v1/admin/stats", Access::kAdmin, Body::kNone,
       "Admin: counts of accounts, faces and decisions in the last 24 hours.", &Api::admin_stats},
  };
  return table;
}

json Api::openapi() {
  json paths = json::object();
  for (const Route& r : routes()) {
    json op = {
        {"summary", r.summary},
        {"responses",
         {{"default", {{"description", "JSON; errors as {\"error\": {\"code\", \"message\"}}"}}}}}};
    if (r.access != Access::kPublic) {
      op["security"] =
          json::array({{{"session_cookie", json::array()}}, {{"bearer", json::array()}}});
    }
    if (r.body == Body::kJson) {
      op["requestBody"] = {{"required", true},
                           {"content", {{"application/json", {{"schema", {{"type", "object"}}}}}}}};
    } else if (r.body == Body::kFrame) {
      op["requestBody"] = {
          {"required", true},
          {"content",
           {{"image/jpeg", {{"schema", {{"type", "string"}, {"format", "binary"}}}}},
            {"image/png", {{"schema", {{"type", "string"}, {"format", "binary"}}}}}}}};
    }
    json params = json::array();
    for (const auto& part : split_path(r.pattern)) {
      if (part.size() > 2 && part.front() == '{') {
        params.push_back({{"name", part.substr(1, part.size() - 2)},
                          {"in", "path"},
                          {"required", true},
                          {"schema", {{"type", "string"}}}});
      }
    }
    if (!params.empty()) {
      op["parameters"] = params;
    }
    std::string method(http::to_string(r.method));
    std::transform(method.begin(), method.end(), method.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    paths[r.pattern][method] = op;
  }
  return {
      {"openapi", "3.0.3"},
      {"info", {{"title", "facelogin"}, {"version", "1"}}},
      {"paths", paths},
      {"components",
       {{"securitySchemes",
         {{"session_cookie", {{"type", "apiKey"}, {"in", "cookie"}, {"name", "facelogin_session"}}},
          {"bearer", {{"type", "http"}, {"scheme", "bearer"}}}}}}}};
}

// ---------------------------------------------------------------------------------------------
// Dispatch.

Api::Api(const ServerOptions& options, ServerDeps deps, WorkerPool& pool, Metrics& metrics)
    : options_(options),
      deps_(std::move(deps)),
      pool_(pool),
      metrics_(metrics),
      auth_(*deps_.store, *deps_.auth_store, options.auth) {
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
// Enrolment.

void Api::start_enrollment(Call& call) {
  auto body = json_body(call);
  if (!body) {
    return reply_error(call, body.error());
  }
  auto flow = std::make_shared<EnrollFlow>();
  auto add = bool_field(*body, "add", false);
  if (!add) {
    return reply_error(call, add.error());
  }
  flow->add = *add;
  if (!set_up_flow(call, *body, "enroll", flow.get())) {
    return;
  }
  if (flow->add) {
    if (!call.session) {
      return reply_error(
          call, Status(ErrorCode::kUnauthenticated, "log in to add faces to your account"));
    }
    flow->user = call.session->user.name;
  } else {
    if (!options_.open_registration) {
      return reply_error(call, Status(ErrorCode::kForbidden,
                                      "this server does not take new accounts; ask an "
                                      "administrator"));
    }
    if (!(*body)["user"].is_string()) {
      return reply_error(call, Status(ErrorCode::kInvalidArgument, "user (a string) is required"));
    }
    flow->user = (*body)["user"].get<std::string>();
    if (Status s = validate_user_name(flow->user); !s.ok()) {
      return reply_error(call, s);
    }
  }
  // Rate-limited before the name is looked up, so that whether names are taken cannot be
  // asked faster than attempts can be started.
  if (rate_limited(call, flow->user) || too_many_flows(call)) {
    return;
  }
  if (!flow->add) {
    auto existing = deps_.store->get_user(flow->user);
    if (existing) {
      return reply_error(call, Status(ErrorCode::kAlreadyExists,
                                      fmt::format("the name '{}' is taken", flow->user)));
    }
    if (existing.error().code() != ErrorCode::kNotFound) {
      return reply_error(call, existing.error());
    }
  }
  auto id = random_token();
  if (!id) {
    return reply_error(call, id.error());
  }
  flow->id = std::move(*id);
  flow->address = call.exchange.address;
  flow->started = SteadyClock::now();
  flow->expires = flow->started + options_.flow_ttl;
  enrollments_.put(flow);
  reply_json(call, http::status::created,
             {{"id", flow->id},
              {"user", flow->user},
              {"frames_needed", options_.enroll_frames_needed},
              {"pose_spread_needed", options_.enroll_min_pose_spread},
              {"liveness", flow->live_check},
              {"expires_in_s", options_.flow_ttl.count()}});
}

void Api::enrollment_frame(Call& call) {
  auto flow = enrollments_.find(call.params[0], call.exchange.address);
  if (!flow) {
    return reply_error(
        call, Status(ErrorCode::kNotFound, "no such enrolment (it may have expired): start again"));
  }
  std::unique_lock busy(flow->busy, std::try_to_lock);
  if (!busy.owns_lock()) {
    return reply_error(
        call, Status(ErrorCode::kAlreadyExists, "send the frames of an enrolment one at a time"));
  }
  if (++flow->frames > options_.max_frames_per_flow) {
    enrollments_.erase(flow->id);
    return reply_error(call, Status(ErrorCode::kTooManyRequests,
                                    "too many frames for one enrolment: start again"));
  }
  busy.unlock();
  const bool live_check = flow->live_check;
  submit(call, [this, flow, live_check](WorkerSlot& slot, Call& c) {
    std::unique_lock lock(flow->busy, std::try_to_lock);
    if (!lock.owns_lock()) {
      return reply_error(
          c, Status(ErrorCode::kAlreadyExists, "send the frames of an enrolment one at a time"));
    }
    const auto t0 = SteadyClock::now();
    const auto& body = c.exchange.request.body();
    auto image = decode_image(
        std::span(reinterpret_cast<const std::uint8_t*>(body.data()), body.size()), frame_limits());
    if (!image) {
      return reply_error(c, image.error());
    }
    const double decode_s = seconds_since(t0);
    auto check = slot.service->check_frame({"frame", *image});
    if (!check) {
      return reply_error(c, check.error());
    }
    json out = frame_json(check->image, *image);
    std::string state = "pending";
    std::string reason;
    std::string advice = out["advice"];
    double live_ms = 0;
    if (live_check) {
      if (!flow->liveness) {
        flow->liveness = std::make_unique<LivenessSession>(*slot.scorer, options_.login.liveness);
      }
      flow->liveness->use_scorer(*slot.scorer);
      const auto ts = std::chrono::duration_cast<std::chrono::milliseconds>(c.exchange.received -
                                                                            flow->started);
      const auto live_start = SteadyClock::now();
      auto verdict =
          flow->liveness->add_frame(*image, check->face ? check->image.box : std::nullopt, ts);
      live_ms = 1000 * seconds_since(live_start);
      if (!verdict) {
        return reply_error(c, verdict.error());
      }
      if (*verdict != LivenessVerdict::kPending && *verdict != LivenessVerdict::kLive) {
        state = "rejected";
        reason = liveness_verdict_name(*verdict);
        advice = liveness_verdict_advice(*verdict);
        enrollments_.erase(flow->id);
        audit(c, flow->add ? "add_faces" : "enroll", flow->actor, flow->user, reason,
              {{"liveness", flow->liveness->mean_score()}});
        metrics_.count("facelogin_decisions_total",
                       fmt::format("flow=\"enroll\",outcome=\"{}\"", reason));
      }
      out["liveness"] = {{"verdict", std::string(liveness_verdict_name(*verdict))},
                         {"frames", flow->liveness->frames_counted()},
                         {"frames_needed", options_.login.liveness.frames_needed}};
    }
    if (check->face && state == "pending" && flow->faces.size() < 60) {
      flow->faces.push_back(
          {std::move(*check->face), check->image.quality.pose, check->image.quality.score});
    }
    const auto needed = static_cast<std::size_t>(options_.enroll_frames_needed);
    const float spread = pose_spread(flow->faces);
    const bool live_done = !live_check || flow->liveness->verdict() == LivenessVerdict::kLive;
    const bool ready = state == "pending" && flow->faces.size() >= needed &&
                       spread >= options_.enroll_min_pose_spread && live_done;
    if (state == "pending" && check->face) {
      advice = ready ? "Done: you can finish."
               : flow->faces.size() >= needed && spread < options_.enroll_min_pose_spread
                   ? "Turn your head slowly a little to the left and right, then up and down."
               : !live_done ? "Keep looking at the camera."
                            : "Good. Keep looking at the camera and move your head a little.";
    }
    double progress = std::min(1.0, static_cast<double>(flow->faces.size()) / needed);
    progress = std::min(progress, static_cast<double>(spread) / options_.enroll_min_pose_spread);
    if (live_check) {
      progress = std::min(progress, static_cast<double>(flow->liveness->frames_counted()) /
                                        options_.login.liveness.frames_needed);
    }
    out["state"] = state;
    out["reason"] = reason;
    out["advice"] = advice;
    out["ready"] = ready;
    out["good_frames"] = flow->faces.size();
    out["frames_needed"] = needed;
    out["pose_spread"] = spread;
    out["progress"] = ready ? 1.0 : std::min(progress, 0.99);
    observe_stages("enroll", decode_s, check->image.timings, live_ms);
    metrics_.observe("facelogin_frame_seconds", "flow=\"enroll\"", seconds_since(t0));
    reply_json(c, http::status::ok, out);
  });
}

void Api::finish_enrollment(Call& call) {
  auto flow = enrollments_.find(call.params[0], call.exchange.address);
  if (!flow) {
    return reply_error(
        call, Status(ErrorCode::kNotFound, "no such enrolment (it may have expired): start again"));
  }
  if (flow->add && (!call.session || call.session->user.name != flow->user)) {
    return reply_error(call,
                       Status(ErrorCode::kForbidden, "this enrolment is for another account"));
  }
  submit(call, [this, flow](WorkerSlot& slot, Call& c) {
    std::unique_lock lock(flow->busy, std::try_to_lock);
    if (!lock.owns_lock()) {
      return reply_error(c, Status(ErrorCode::kAlreadyExists, "a frame is still being processed"));
    }
    if (flow->done) {
      return reply_error(c, Status(ErrorCode::kNotFound, "this enrolment is already finished"));
    }
    const auto needed = static_cast<std::size_t>(options_.enroll_frames_needed);
    const bool live_check = flow->live_check;
    if (flow->faces.size() < needed || pose_spread(flow->faces) < options_.enroll_min_pose_spread ||
        (live_check && flow->liveness->verdict() != LivenessVerdict::kLive)) {
      return reply_error(c, Status(ErrorCode::kInvalidArgument,
                                   "the enrolment is not complete: keep sending frames until a "
                                   "frame's answer says ready"));
    }
    std::vector<FaceTemplate> templates;
    std::vector<std::string> sources;
    for (const auto* f : choose_faces(flow->faces, needed)) {
      templates.push_back(f->face);
      sources.push_back(fmt::format("frame {}", templates.size()));
    }
    flow->done = true;
    auto user = slot.service->enroll_templates(flow->user, templates, sources, flow->add);
    enrollments_.erase(flow->id);
    const std::string event = flow->add ? "add_faces" : "enroll";
    const std::string& actor = flow->actor;
    if (!user) {
      if (user.error().code() == ErrorCode::kDuplicateFace) {
        // Enrolment must not become a free oracle for "is this face enrolled?": it counts as a
        // failed attempt of the address.
        (void)auth_.record_failure("", c.exchange.address);
      }
      audit(c, event, actor, flow->user, std::string(error_code_name(user.error().code())));
      metrics_.count(
          "facelogin_decisions_total",
          fmt::format("flow=\"enroll\",outcome=\"{}\"", error_code_name(user.error().code())));
      return reply_error(c, user.error());
    }
    json liveness = flow->liveness ? json(flow->liveness->mean_score()) : json(nullptr);
    audit(c, event, actor, flow->user, "ok",
          {{"templates", templates.size()}, {"liveness", liveness}});
    metrics_.count("facelogin_decisions_total", "flow=\"enroll\",outcome=\"ok\"");
    json out = {{"user", user->name}, {"templates", user->template_count}};
    Headers headers;
    if (!flow->add) {
      auto code = random_token();
      if (!code) {
        return reply_error(c, code.error());
      }
      if (Status s = deps_.auth_store->set_recovery_code(user->name, token_hash(*code)); !s.ok()) {
        return reply_error(c, s);
      }
      out["recovery_code"] = *code;
      auto session = open_session(c, user->name, flow->session_kind, &headers);
      if (!session) {
        return reply_error(c, session.error());
      }
      out["session"] = *session;
    }
    reply_json(c, http::status::created, out, headers);
  });
}

void Api::cancel_enrollment(Call& call) {
  if (auto flow = enrollments_.find(call.params[0], call.exchange.address)) {
    enrollments_.erase(flow->id);
  }
  reply_json(call, http::status::ok, {{"cancelled", true}});
}

// ---------------------------------------------------------------------------------------------
// Login.

void Api::start_login(Call& call) {
  auto body = json_body(call);
  if (!body) {
    return reply_error(call, body.error());
  }
  auto flow = std::make_shared<LoginFlow>();
  const json& user_field = (*body)["user"];
  if (!user_field.is_null() && !user_field.is_string()) {
    return reply_error(call, Status(ErrorCode::kInvalidArgument, "user must be a string"));
  }
  const std::string user = user_field.is_string() ? user_field.get<std::string>() : "";
  if (!user.empty()) {
    if (Status s = validate_user_name(user); !s.ok()) {
      return reply_error(call, s);
    }
  }
  if (!set_up_flow(call, *body, "login", flow.get())) {
    return;
  }
  if (rate_limited(call, user) || too_many_flows(call) || locked_out(call, user)) {
    return;
  }
  if (user.empty()) {
    if (Status s = identification_allowed(); !s.ok()) {
      return reply_error(call, s);
    }
  }
  auto step_up = step_up_reason(call, *flow, user);
  if (!step_up) {
    return reply_error(call, step_up.error());
  }
  // Whether the account exists is not said here: an unknown name fails like a wrong face.
  auto attempt = LoginAttempt::begin(pool_.any_service(), pool_.any_scorer(), user, [&] {
    LoginPolicy policy = options_.login;
    policy.hide_unknown_user = true;
    policy.liveness.policy = flow->policy;
    policy.step_up = std::move(*step_up);
    return policy;
  }());
  if (!attempt) {
    return reply_error(call, attempt.error());
  }
  auto id = random_token();
  auto nonce = random_token();
  if (!id || !nonce) {
    return reply_error(call, Status(ErrorCode::kInternal, "the random generator failed"));
  }
  flow->id = std::move(*id);
  flow->nonce = std::move(*nonce);
  flow->address = call.exchange.address;
  flow->started = SteadyClock::now();
  // An active challenge (or an adaptive one's step-up) may take each step's time on top of the
  // frames' deadline.
  const auto challenge_time =
      flow->policy == LivenessPolicy::kActive || flow->policy == LivenessPolicy::kAdaptive
          ? options_.login.liveness.challenge.step_time * options_.login.liveness.challenge.steps
          : std::chrono::milliseconds(0);
  const auto deadline = std::min<SteadyClock::duration>(
      options_.flow_ttl,
      options_.login.liveness.deadline + challenge_time + std::chrono::seconds(5));
  flow->expires = flow->started + deadline;
  flow->attempt.emplace(std::move(*attempt));
  logins_.put(flow);
  const bool live = flow->live_check;
  reply_json(call, http::status::created,
             {{"id", flow->id},
              {"nonce", flow->nonce},
              {"deadline_ms", std::chrono::duration_cast<std::chrono::milliseconds>(
                                  options_.login.liveness.deadline)
                                  .count()},
              {"liveness", live},
              {"policy", std::string(liveness_policy_name(flow->policy))},
              {"challenge_steps", flow->policy == LivenessPolicy::kActive
                                      ? options_.login.liveness.challenge.steps
                                      : 0},
              {"frames_needed", live ? options_.login.liveness.frames_needed
                                     : options_.login.matching_frames_needed}});
}

Result<std::string> Api::step_up_reason(const Call& call, const LoginFlow& flow,
                                        const std::string& user) {
  // Under the adaptive policy these logins get the challenge whatever the passive evidence
  // (issue 16). The attempt asks for it at the same point as for weak evidence, and the reply
  // does not say which, so that neither tells a client whether an account is an administrator.
  if (flow.policy != LivenessPolicy::kAdaptive) {
    return std::string();
  }
  if (user.empty()) {
    return std::string("face_only");
  }
  if (flow.session_kind != "cookie") {
    return std::string("not_camera_loop");  // an application's client, not the web app's loop
  }
  auto admin = deps_.auth_store->is_admin(user);
  if (!admin) {
    return make_error(admin.error());
  }
  if (*admin) {
    return std::string("administrator");
  }
  auto refused = auth_.liveness_refused_recently(user, call.exchange.address);
  if (!refused) {
    return make_error(refused.error());
  }
  return *refused ? std::string("recent_liveness_refusal") : std::string();
}

Status Api::identification_allowed() const {
  const RecognizerSpec& recognizer = deps_.engine->recognizer();
  const float override_threshold = deps_.service.threshold_override;
  // A lower threshold than the calibrated one has an unknown, higher FMR.
  if (!std::isnan(override_threshold) && override_threshold < recognizer.cosine_threshold()) {
    return Status(ErrorCode::kForbidden,
                  "face-only login is off: the configured threshold is below the calibrated one, "
                  "so its false-match rate is unknown; give your user name");
  }
  // The enrolled population's own bound (issue 15): a face-only attempt is a claim against
  // every user, so N users x the per-claim false-match rate at the operating threshold (never
  // taken below the target the threshold was set for, which is as low as the estimate can
  // resolve). Too few users for an estimate: LFW's per-comparison rate x the enrolled faces.
  auto population = pool_.any_service().population_status();
  if (!population) {
    return population.error();
  }
  const PopulationEstimate& estimate = population->estimate;
  if (population->enabled && estimate.usable) {
    const double per_claim =
        std::max(population->fmr_at_operating.value_or(0.0), estimate.target_fmr);
    const double fmr = static_cast<double>(estimate.users) * per_claim;
    if (options_.identify_max_fmr <= 0 || fmr > options_.identify_max_fmr) {
      return Status(ErrorCode::kForbidden,
                    fmt::format("face-only login is off here ({} enrolled people, each claim "
                                "matching a stranger with an estimated rate of {:.1g} on this "
                                "population, give {:.1g} per attempt, over the {:.1g} allowed): "
                                "give your user name",
                                estimate.users, per_claim, fmr, options_.identify_max_fmr));
    }
    return Status::Ok();
  }
  auto templates = deps_.store->count_templates(recognizer.id);
  if (!templates) {
    return templates.error();
  }
  const double fmr = static_cast<double>(*templates) * recognizer.threshold_fmr;
  if (options_.identify_max_fmr <= 0 || fmr > options_.identify_max_fmr) {
    return Status(ErrorCode::kForbidden,
                  fmt::format("face-only login is off here ({} enrolled faces would give a "
                              "false-match rate of {:.1g} per attempt, over the {:.1g} allowed): "
                              "give your user name",
                              *templates, fmr, options_.identify_max_fmr));
  }
  return Status::Ok();
}

void Api::note_operating_threshold(const Call& call) {
  auto status = pool_.any_service().population_status();
  if (!status) {
    return;  // the decision itself reports the store's error
  }
  const float now = status->operating_threshold;
  const float before = reported_threshold_.exchange(now);
  if (before == now) {
    return;
  }
  // The first value this process sees is recorded too: a restart may have moved it.
  audit(call, "operating_threshold", "system", "", "changed", population_json(*status));
}

void Api::login_frame(Call& call) {
  auto flow = logins_.find(call.params[0], call.exchange.address);
  if (!flow ||
      !constant_time_equal(header(call.exchange.request, "X-Attempt-Nonce"), flow->nonce)) {
    return reply_error(call, Status(ErrorCode::kNotFound,
                                    "no such login attempt, or the nonce does not match: start "
                                    "again"));
  }
  {
    std::unique_lock busy(flow->busy, std::try_to_lock);
    if (!busy.owns_lock()) {
      return reply_error(
          call, Status(ErrorCode::kAlreadyExists, "send the frames of an attempt one at a time"));
    }
    if (++flow->frames > options_.max_frames_per_flow) {
      logins_.erase(flow->id);
      // Ended undecided after many frames: a failure, like any attempt that does not succeed.
      auto locked = auth_.record_failure(flow->attempt->user(), call.exchange.address);
      audit(call, "login", flow->actor, flow->attempt->user(), "too_many_frames",
            {{"frames", flow->frames}, {"locked_for_s", locked ? *locked / 1000 : 0}});
      return reply_error(call, Status(ErrorCode::kTooManyRequests,
                                      "too many frames for one attempt: start again"));
    }
  }
  submit(call, [this, flow](WorkerSlot& slot, Call& c) {
    std::unique_lock lock(flow->busy, std::try_to_lock);
    if (!lock.owns_lock()) {
      return reply_error(
          c, Status(ErrorCode::kAlreadyExists, "send the frames of an attempt one at a time"));
    }
    LoginAttempt& attempt = *flow->attempt;
    if (attempt.state() != AttemptState::kPending || flow->expires < SteadyClock::now()) {
      return reply_error(c, Status(ErrorCode::kNotFound, "this attempt is over: start again"));
    }
    const auto t0 = SteadyClock::now();
    const auto& body = c.exchange.request.body();
    auto image = decode_image(
        std::span(reinterpret_cast<const std::uint8_t*>(body.data()), body.size()), frame_limits());
    if (!image) {
      return reply_error(c, image.error());
    }
    const double decode_s = seconds_since(t0);
    if (Status s = attempt.use(*slot.service, slot.scorer.get()); !s.ok()) {
      return reply_error(c, s);
    }
    const auto ts =
        std::chrono::duration_cast<std::chrono::milliseconds>(c.exchange.received - flow->started);
    auto feedback = attempt.add_frame({"frame", *image}, ts);
    std::string state;
    std::string reason;
    json out;
    if (!feedback) {
      if (feedback.error().code() != ErrorCode::kNotFound &&
          feedback.error().code() != ErrorCode::kModelMismatch) {
        return reply_error(c, feedback.error());
      }
      // Unknown, disabled or enrolled with another model: refused like a face that does not
      // match, so the answer does not tell which names exist.
      out = {{"outcome", "ok"}, {"message", ""}, {"box", nullptr}};
      state = "rejected";
      reason = "no_match";
      out["advice"] = fmt::format("This face does not match {}.", attempt.user());
    } else {
      out = frame_json(feedback->image, *image);
      state = state_name(feedback->state);
      reason = feedback->reason;
      out["advice"] =
          feedback->advice.empty() ? out["advice"].get<std::string>() : feedback->advice;
      const LivenessSession& live = attempt.liveness();
      const bool passive = flow->live_check;
      out["liveness"] = {{"verdict", std::string(liveness_verdict_name(feedback->liveness))},
                         {"frames", live.frames_counted()},
                         {"frames_needed", options_.login.liveness.frames_needed}};
      // Progress counts frames with a face, never matches: a per-frame match signal would let
      // an attacker tune a forgery frame by frame.
      const double progress =
          passive
              ? static_cast<double>(live.frames_counted()) / options_.login.liveness.frames_needed
              : std::min(1.0,
                         static_cast<double>(flow->frames) / options_.login.matching_frames_needed);
      double overall = progress;
      if (feedback->challenge_steps > 0) {
        // The challenge's steps and the passive frames, each step one share.
        out["challenge"] = {
            {"prompt", feedback->prompt},
            {"action", feedback->asked ? json(std::string(challenge_action_name(*feedback->asked)))
                                       : json(nullptr)},
            {"steps_done", feedback->challenge_steps_done},
            {"steps", feedback->challenge_steps}};
        overall = (feedback->challenge_steps_done + std::min(1.0, progress)) /
                  (feedback->challenge_steps + 1.0);
      }
      out["progress"] = state == "accepted" ? 1.0 : std::min(overall, 0.99);
    }
    out["state"] = state;
    out["reason"] = reason;
    // A frame decided on the first pass skipped the mirror-image passes, which take about as
    // long again as its embedding took. Its reply is held back by that long, on the delay
    // thread rather than a worker, and its metrics count the same: so neither the reply's time
    // nor /metrics tells a clear decision from a close one, or an unknown account (decided
    // early on every frame) from a real one (docs/models.md, "Early decision").
    double hold_ms = 0;
    if (feedback) {
      StageTimings stages = feedback->image.timings;
      if (feedback->image.first_pass) {
        hold_ms = stages.embed_ms;
        stages.embed_ms += hold_ms;
      }
      observe_stages("login", decode_s, stages, feedback->liveness_ms);
    }
    c.reply_not_before =
        SteadyClock::now() + std::chrono::duration_cast<SteadyClock::duration>(
                                 std::chrono::duration<double, std::milli>(hold_ms));
    metrics_.observe("facelogin_frame_seconds", "flow=\"login\"",
                     seconds_since(t0) + hold_ms / 1000);
    Headers headers;
    const std::string user = attempt.user();
    if (state == "accepted") {
      // The lock is checked again at the decision: attempts opened before it, and face-only
      // attempts (which only name the account now), must not get through a locked account.
      auto locked = auth_.locked_for_ms(user, c.exchange.address);
      if (!locked) {
        return reply_error(c, locked.error());
      }
      if (*locked > 0) {
        state = "rejected";
        reason = "locked_out";
        out["state"] = state;
        out["reason"] = reason;
        out["advice"] =
            fmt::format("Too many failed attempts: try again in {} s.", (*locked + 999) / 1000);
        metrics_.count("facelogin_lockouts_total", "");
      }
    }
    if (state == "accepted" || state == "rejected") {
      note_operating_threshold(c);  // on the worker: it may wait for the gallery
    }
    if (state == "accepted") {
      logins_.erase(flow->id);
      if (Status s = auth_.record_success(user, c.exchange.address); !s.ok()) {
        return reply_error(c, s);
      }
      auto session = open_session(c, user, flow->session_kind, &headers);
      if (!session) {
        return reply_error(c, session.error());
      }
      out["session"] = *session;
      json details = {{"best_score", attempt.best_score()},
                      {"liveness", attempt.liveness().mean_score()},
                      {"frames", flow->frames}};
      add_challenge_audit(attempt, &details);
      audit(c, "login", user, user, "ok", details);
      metrics_.count("facelogin_decisions_total", "flow=\"login\",outcome=\"ok\"");
    } else if (state == "rejected") {
      logins_.erase(flow->id);
      auto locked = auth_.record_failure(user, c.exchange.address);
      json details = {{"signal", deciding_signal(reason)},
                      {"best_score", attempt.best_score()},
                      {"liveness", attempt.liveness().mean_score()},
                      {"frames", flow->frames},
                      {"locked_for_s", locked ? *locked / 1000 : 0}};
      add_challenge_audit(attempt, &details);
      audit(c, "login", flow->actor, user, reason, details);
      metrics_.count("facelogin_decisions_total",
                     fmt::format("flow=\"login\",outcome=\"{}\"", reason));
    }
    reply_json(c, http::status::ok, out, headers);
  });
}

void Api::recovery_login(Call& call) {
  auto body = json_body(call);
  if (!body) {
    return reply_error(call, body.error());
  }
  if (!(*body)["user"].is_string() || !(*body)["code"].is_string()) {
    return reply_error(call,
                       Status(ErrorCode::kInvalidArgument, "user and code (strings) are required"));
  }
  const std::string user = (*body)["user"].get<std::string>();
  const std::string code = (*body)["code"].get<std::string>();
  auto session_kind = string_field(*body, "session", "cookie");
  if (!session_kind) {
    return reply_error(call, session_kind.error());
  }
  const std::string kind = std::move(*session_kind);
  if (Status s = validate_user_name(user); !s.ok()) {
    return reply_error(call, s);
  }
  if (kind != "cookie" && kind != "bearer") {
    return reply_error(
        call, Status(ErrorCode::kInvalidArgument, "session must be \"cookie\" or \"bearer\""));
  }
  if (!bearer_allowed(call, kind, "login")) {
    return;
  }
  // Only the address's start rate, and the address's and the pair's locks: a recovery code is a
  // long random secret, so strangers' wrong guesses elsewhere must not keep its owner out.
  if (rate_limited(call, "") || locked_out(call, user, AttemptKind::kRecovery)) {
    return;
  }
  // A disabled account cannot log in, so its code is not used up on the way to a refusal; it
  // is refused like an unknown account (as the face login does), so names are not told apart.
  auto info = deps_.store->get_user(user);
  if (!info && info.error().code() != ErrorCode::kNotFound) {
    return reply_error(call, info.error());
  }
  const bool may_log_in = info && !info->disabled;
  auto used = may_log_in ? deps_.auth_store->consume_recovery_code(user, token_hash(code))
                         : Result<bool>(false);
  if (!used) {
    return reply_error(call, used.error());
  }
  if (!*used) {
    auto locked = auth_.record_failure(user, call.exchange.address, AttemptKind::kRecovery);
    audit(call, "recovery_login", "anonymous", user, "wrong_code",
          {{"locked_for_s", locked ? *locked / 1000 : 0}});
    return reply_error(call, Status(ErrorCode::kUnauthenticated,
                                    "that recovery code is not right for this account"));
  }
  Headers headers;
  auto session = open_session(call, user, kind, &headers);
  if (!session) {
    return reply_error(call, session.error());
  }
  if (Status s = auth_.record_success(user, call.exchange.address); !s.ok()) {
    return reply_error(call, s);
  }
  audit(call, "recovery_login", user, user, "ok");
  reply_json(call, http::status::ok,
             {{"session", *session},
              {"advice", "Your recovery code is used up: make a new one on your account page."}},
             headers);
}

void Api::get_session(Call& call) {
  const auto& s = *call.session;
  json out = {
      {"user", s.user.name}, {"kind", s.session.kind}, {"expires_at", s.session.expires_at}};
  if (call.via_cookie) {
    out["csrf"] = Authenticator::csrf_for(call.token);
  }
  reply_json(call, http::status::ok, out);
}

void Api::logout(Call& call) {
  if (Status s = auth_.logout(call.token); !s.ok()) {
    return reply_error(call, s);
  }
  audit(call, "logout", call.session->user.name, call.session->user.name, "ok");
  reply_json(call, http::status::ok, {{"logged_out", true}},
             {{"Set-Cookie", session_cookie("", 0)}});
}

// ---------------------------------------------------------------------------------------------
// Account.

void Api::get_account(Call& call) {
  const std::string& name = call.session->user.name;
  auto templates = deps_.store->user_templates(name);
  auto sessions = deps_.auth_store->user_sessions(name, auth_.now_ms() / 1000);
  if (!templates || !sessions) {
    return reply_error(call, !templates ? templates.error() : sessions.error());
  }
  json faces = json::array();
  for (const auto& t : *templates) {
    faces.push_back({{"id", t.id}, {"created_at", t.created_at}, {"model", t.face.model_id}});
  }
  json list = json::array();
  for (const auto& s : *sessions) {
    list.push_back({{"id", s.id},
                    {"kind", s.kind},
                    {"created_at", s.created_at},
                    {"expires_at", s.expires_at},
                    {"address", s.address},
                    {"user_agent", s.user_agent},
                    {"current", s.id == call.session->session.id}});
  }
  reply_json(call, http::status::ok,
             {{"user", name},
              {"created_at", call.session->user.created_at},
              {"faces", faces},
              {"sessions", list}});
}

void Api::delete_account(Call& call) {
  const std::string name = call.session->user.name;
  if (Status s = deps_.store->remove_user(name); !s.ok()) {
    return reply_error(call, s);
  }
  audit(call, "delete_account", name, name, "ok");
  reply_json(call, http::status::ok, {{"deleted", name}}, {{"Set-Cookie", session_cookie("", 0)}});
}

void Api::delete_face(Call& call) {
  const std::string& name = call.session->user.name;
  const std::optional<std::int64_t> parsed = parse_id(call.params[0]);
  if (!parsed) {
    return reply_error(call, Status(ErrorCode::kInvalidArgument, "face id must be a number"));
  }
  const std::int64_t id = *parsed;
  if (call.session->user.template_count <= 1) {
    return reply_error(call, Status(ErrorCode::kForbidden,
                                    "this is your last face: delete the account instead, or add "
                                    "faces first"));
  }
  if (Status s = deps_.store->remove_template(name, id); !s.ok()) {
    return reply_error(call, s);
  }
  audit(call, "remove_face", name, name, "ok", {{"face", id}});
  reply_json(call, http::status::ok, {{"removed", id}});
}

void Api::revoke_session(Call& call) {
  const std::string& name = call.session->user.name;
  const std::optional<std::int64_t> parsed = parse_id(call.params[0]);
  if (!parsed) {
    return reply_error(call, Status(ErrorCode::kInvalidArgument, "session id must be a number"));
  }
  const std::int64_t id = *parsed;
  if (Status s = deps_.auth_store->revoke_session(name, id); !s.ok()) {
    return reply_error(call, s);
  }
  audit(call, "revoke_session", name, name, "ok", {{"session", id}});
  reply_json(call, http::status::ok, {{"revoked", id}});
}

void Api::new_recovery_code(Call& call) {
  const std::string& name = call.session->user.name;
  // The recovery code is the owner's way back in: only the owner's own web session (a face
  // login in the browser, with its CSRF check) may replace it, never an application's bearer
  // token, which could otherwise swap the code silently and keep a way in after logout.
  if (!call.via_cookie || call.session->session.kind != "cookie") {
    return reply_error(call, Status(ErrorCode::kForbidden,
                                    "recovery codes are changed from the web app's account page "
                                    "(a cookie session), not with a bearer token"));
  }
  auto code = random_token();
  if (!code) {
    return reply_error(call, code.error());
  }
  if (Status s = deps_.auth_store->set_recovery_code(name, token_hash(*code)); !s.ok()) {
    return reply_error(call, s);
  }
  audit(call, "new_recovery_code", name, name, "ok");
  reply_json(call, http::status::ok, {{"recovery_code", *code}});
}

// ---------------------------------------------------------------------------------------------
// Administration.

void Api::admin_users(Call& call) {
  auto users = deps_.store->list_users();
  auto admins = deps_.auth_store->admins();
  if (!users || !admins) {
    return reply_error(call, !users ? users.error() : admins.error());
  }
  std::string filter = query_param(call.exchange.request, "q");
  std::transform(filter.begin(), filter.end(), filter.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  json list = json::array();
  for (const auto& u : *users) {
    std::string lower = u.name;
    std::transform(lower.begin(), lower.end(), lower.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    if (!filter.empty() && lower.find(filter) == std::string::npos) {
      continue;
    }
    list.push_back({{"user", u.name},
                    {"created_at", u.created_at},
                    {"disabled", u.disabled},
                    {"faces", u.template_count},
                    {"admin", std::find(admins->begin(), admins->end(), u.name) != admins->end()}});
  }
  reply_json(call, http::status::ok, {{"users", list}});
}

void Api::set_disabled(Call& call, bool disabled) {
  const std::string& name = call.params[0];
  if (Status s = validate_user_name(name); !s.ok()) {
    return reply_error(call, s);
  }
  if (disabled && call.session && name == call.session->user.name) {
    return reply_error(call, Status(ErrorCode::kForbidden, "you cannot disable yourself"));
  }
  if (Status s = deps_.store->set_disabled(name, disabled); !s.ok()) {
    return reply_error(call, s);
  }
  if (disabled) {
    if (Status s = deps_.auth_store->revoke_user_sessions(name); !s.ok()) {
      return reply_error(call, s);
    }
  }
  audit(call, disabled ? "disable_account" : "enable_account", actor(call, true), name, "ok");
  reply_json(call, http::status::ok, {{"user", name}, {"disabled", disabled}});
}

void Api::admin_disable(Call& call) { set_disabled(call, true); }
void Api::admin_enable(Call& call) { set_disabled(call, false); }

void Api::admin_delete(Call& call) {
  const std::string& name = call.params[0];
  if (Status s = validate_user_name(name); !s.ok()) {
    return reply_error(call, s);
  }
  if (call.session && name == call.session->user.name) {
    return reply_error(
        call, Status(ErrorCode::kForbidden, "delete your own account from your account page"));
  }
  if (Status s = deps_.store->remove_user(name); !s.ok()) {
    return reply_error(call, s);
  }
  audit(call, "delete_account", actor(call, true), name, "ok");
  reply_json(call, http::status::ok, {{"deleted", name}});
}

void Api::admin_audit(Call& call) {
  AuditQuery query;
  query.subject = query_param(call.exchange.request, "subject");
  const std::string before = query_param(call.exchange.request, "before");
  const std::string limit = query_param(call.exchange.request, "limit");
  const auto before_id = before.empty() ? std::optional<std::int64_t>(0) : parse_id(before);
  const auto limit_n = limit.empty() ? std::optional<std::int64_t>(100) : parse_id(limit);
  if (!before_id || !limit_n || *limit_n > 1000) {
    return reply_error(call, Status(ErrorCode::kInvalidArgument,
                                    "before and limit are numbers (limit 1 to 1000)"));
  }
  query.before_id = *before_id;
  query.limit = static_cast<int>(*limit_n);
  auto events = deps_.auth_store->list_audit(query);
  if (!events) {
    return reply_error(call, events.error());
  }
  json list = json::array();
  for (const auto& e : *events) {
    list.push_back({{"id", e.id},
                    {"at_ms", e.at_ms},
                    {"event", e.event},
                    {"actor", e.actor},
                    {"subject", e.subject},
                    {"address", e.address},
                    {"outcome", e.outcome},
                    {"detail", json::parse(e.detail, nullptr, false)}});
  }
  reply_json(call, http::status::ok, {{"events", list}});
}

void Api::admin_stats(Call& call) {
  auto users = deps_.store->list_users();
  auto counts = deps_.auth_store->audit_counts(auth_.now_ms() - 24 * 3600 * 1000);
  if (!users || !counts) {
    return reply_error(call, !users ? users.error() : counts.error());
  }
  int disabled = 0;
  int faces = 0;
  for (const auto& u : *users) {
    disabled += u.disabled ? 1 : 0;
    faces += u.template_count;
  }
  json last_day = json::object();
  for (const auto& [key, n] : *counts) {
    last_day[key] = n;
  }
  auto population = pool_.any_service().population_status(/*refresh=*/false);
  if (!population) {
    return reply_error(call, population.error());
  }
  reply_json(call, http::status::ok,
             {{"users", users->size()},
              {"disabled", disabled},
              {"faces", faces},
              {"last_24h", last_day},
              {"workers", pool_.size()},
              {"workers_busy", pool_.busy()},
              {"flows_open", enrollments_.size() + logins_.size()},
              {"recognition", population_json(*population)}});
}

// ---------------------------------------------------------------------------------------------
// WebSocket streaming: each binary message goes through the same handler as a POSTed frame.

void Api::socket_only(Call& call) {
  reply_error(call, Status(ErrorCode::kInvalidArgument,
                           "this endpoint is a WebSocket (send Upgrade: websocket)"));
}

std::optional<Response> Api::accept_socket(const Exchange& upgrade) {
  const Request& request = upgrade.request;
  const auto refuse = [&](const Status& status) {
    metrics_.count("facelogin_http_requests_total",
                   fmt::format("route=\"socket\",status=\"{}\"",
                               static_cast<unsigned>(http_status_for(status.code()))));
    return std::optional<Response>(error_response(status, request.version(), false));
  };
  std::vector<std::string> params;
  const std::string_view path = path_of(request);
  const bool login = match("/api/v1/login/attempts/{id}/socket", path, &params);
  if (!login && !match("/api/v1/enrollments/{id}/socket", path, &params)) {
    return refuse(Status(ErrorCode::kNotFound, "no WebSocket here"));
  }
  // Browsers send Origin with every WebSocket and let any page open one: only our own pages
  // (or non-browser clients, which send no Origin) may.
  const std::string origin = header(request, "Origin");
  const std::string host = header(request, "Host");
  if (!origin.empty() && origin != "http://" + host && origin != "https://" + host) {
    return refuse(Status(ErrorCode::kForbidden, "WebSocket from another origin"));
  }
  std::shared_ptr<FlowBase> flow;
  if (login) {
    auto attempt = logins_.find(params[0], upgrade.address);
    if (!attempt) {
      return refuse(Status(ErrorCode::kNotFound, "no such login attempt: start again"));
    }
    if (attempt->session_kind != "bearer") {
      // A WebSocket cannot set the session cookie: the web app posts its frames.
      return refuse(Status(ErrorCode::kInvalidArgument,
                           "cookie-session attempts send frames with POST; the WebSocket is for "
                           "bearer sessions"));
    }
    flow = std::move(attempt);
  } else {
    flow = enrollments_.find(params[0], upgrade.address);
    if (!flow) {
      return refuse(Status(ErrorCode::kNotFound, "no such enrolment: start again"));
    }
  }
  // One socket per flow, ever: idle sockets on one flow cannot fill the connection slots.
  if (flow->socket_taken.exchange(true)) {
    return refuse(Status(ErrorCode::kAlreadyExists,
                         "this flow already has its WebSocket: one per enrolment or attempt"));
  }
  metrics_.count("facelogin_http_requests_total", "route=\"socket\",status=\"101\"");
  return std::nullopt;
}

void Api::socket_opened(const Exchange& upgrade, std::function<void()> close) {
  std::vector<std::string> params;
  const std::string_view path = path_of(upgrade.request);
  std::shared_ptr<FlowBase> flow;
  if (match("/api/v1/login/attempts/{id}/socket", path, &params)) {
    flow = logins_.find(params[0], upgrade.address);
  } else if (match("/api/v1/enrollments/{id}/socket", path, &params)) {
    flow = enrollments_.find(params[0], upgrade.address);
  }
  if (flow == nullptr) {
    close();  // the flow ended between the upgrade and now
    return;
  }
  flow->set_socket_closer(std::move(close));
}

void Api::socket_message(const Exchange& upgrade, std::string message, bool binary,
                         std::string& state,
                         std::function<void(std::string text, bool close)> reply) {
  if (!binary) {
    // {"nonce": "..."}: binds the frames that follow to the attempt.
    json body = json::parse(message, nullptr, false);
    if (!body.is_object() || !body["nonce"].is_string()) {
      reply(json{{"status", 400},
                 {"error",
                  {{"code", "invalid_argument"},
                   {"message",
                    "text messages are {\"nonce\": \"...\"}; frames are "
                    "binary messages"}}}}
                .dump(),
            true);
      return;
    }
    // The socket lives only as long as its flow: messages keep no dead socket open.
    std::vector<std::string> params;
    const std::string_view path = path_of(upgrade.request);
    const bool alive = match("/api/v1/login/attempts/{id}/socket", path, &params)
                           ? logins_.find(params[0], upgrade.address) != nullptr
                           : match("/api/v1/enrollments/{id}/socket", path, &params) &&
                                 enrollments_.find(params[0], upgrade.address) != nullptr;
    if (!alive) {
      reply(json{{"status", 404},
                 {"error", {{"code", "not_found"}, {"message", "this attempt is over"}}}}
                .dump(),
            true);
      return;
    }
    state = body["nonce"].get<std::string>();
    reply(json{{"status", 200}, {"ok", true}}.dump(), false);
    return;
  }
  // The frame as if it had been posted, with the upgrade request's credentials.
  std::string target(path_of(upgrade.request));
  target.replace(target.size() - std::string_view("socket").size(), std::string::npos, "frames");
  Exchange exchange;
  exchange.request = Request(http::verb::post, target, 11);
  for (const auto& field : upgrade.request) {
    const auto name = field.name();
    if (name == http::field::cookie || name == http::field::authorization ||
        name == http::field::user_agent || field.name_string() == "X-API-Key") {
      exchange.request.insert(field.name_string(), field.value());
    }
  }
  exchange.request.set(http::field::content_type, "image/jpeg");  // decoding sniffs the format
  exchange.request.set("X-Attempt-Nonce", state);
  exchange.request.body() = std::move(message);
  exchange.address = upgrade.address;
  exchange.received = SteadyClock::now();
  handle(std::move(exchange), [reply = std::move(reply)](Response response) {
    json body = json::parse(response.body(), nullptr, false);
    if (!body.is_object()) {
      body = json::object();
    }
    body["status"] = response.result_int();
    const std::string s = body.value("state", "");
    const bool over = s == "accepted" || s == "rejected" || response.result_int() == 404;
    reply(body.dump(-1, ' ', false, json::error_handler_t::replace), over);
  });
}

// ---------------------------------------------------------------------------------------------
// The web app.

void Api::static_file(Call& call) {
  std::string path(path_of(call.exchange.request));
  if (path == "/" || path == "/enroll" || path == "/login" || path == "/account" ||
      path == "/admin") {
    path = path == "/" ? "/index.html" : path + ".html";
  }
  // Only plain names under the web directory: no "..", no hidden files, no odd characters.
  const bool safe = path.size() < 200 && path.find("..") == std::string::npos &&
                    path.find("/.") == std::string::npos &&
                    std::all_of(path.begin(), path.end(), [](char ch) {
                      return std::isalnum(static_cast<unsigned char>(ch)) || ch == '/' ||
                             ch == '.' || ch == '-' || ch == '_';
                    });
  // "//x" would make the path absolute and escape the directory; the resolved file must be
  // inside it in any case (a symbolic link out of it is not followed).
  std::error_code ec;
  const std::filesystem::path root = std::filesystem::weakly_canonical(options_.web_dir, ec);
  const std::filesystem::path file =
      safe && path.find("//") == std::string::npos
          ? std::filesystem::weakly_canonical(root / path.substr(1), ec)
          : std::filesystem::path();
  const auto [root_end, file_it] =
      std::mismatch(root.begin(), root.end(), file.begin(), file.end());
  if (file.empty() || ec || root_end != root.end() || !std::filesystem::is_regular_file(file, ec)) {
    return reply_error(call, Status(ErrorCode::kNotFound, "no such page"));
  }
  std::ifstream in(file, std::ios::binary);
  std::string content((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  Response response(http::status::ok, call.exchange.request.version());
  response.set(http::field::content_type, content_type_for(file));
  response.set(http::field::cache_control, "no-cache");
  response.body() = std::move(content);
  metrics_.count("facelogin_http_requests_total", "route=\"static\",status=\"200\"");
  call.reply(std::move(response));
}

// ---------------------------------------------------------------------------------------------
// Housekeeping.

void Api::sweep() {
  const auto now = SteadyClock::now();
  enrollments_.take_expired(now);
  for (const auto& flow : logins_.take_expired(now)) {
    std::lock_guard lock(flow->busy);
    if (flow->frames == 0 || flow->attempt->state() != AttemptState::kPending) {
      continue;
    }
    // An attempt that saw frames and was left undecided counts as a failure: otherwise
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
