// The signed-in user's own account: faces, sessions, recovery code, deletion.
// Thin adapters: parse the request, call the service, reply (see server/api.h).

#include "server/api.h"

#include <fmt/format.h>

#include "server/api_util.h"

namespace facelogin::server {

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

}  // namespace facelogin::server
