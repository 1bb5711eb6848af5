// The route table: the single source of the router (Api::handle) and the OpenAPI document.

#include "server/api.h"

#include <fmt/format.h>

#include "server/api_util.h"

namespace facelogin::server {

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
      {V::delete_, "/api/v1/login/attempts/{id}", Access::kPublic, Body::kNone,
       "Abandon a login attempt (X-Attempt-Nonce). It counts as a failed login once a face of it "
       "was judged; before that it costs nothing.",
       &Api::cancel_login},
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

}  // namespace facelogin::server
