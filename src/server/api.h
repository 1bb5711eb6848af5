#pragma once

// The server's routes: the JSON API under /api/v1, health and metrics, the web app's files.
// One table (routes()) drives both the router and the OpenAPI document, so the document cannot
// list a route the server does not have, or miss one it has.

#include <atomic>
#include <chrono>
#include <limits>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "facelogin/auth.h"
#include "facelogin/server.h"
#include "server/delayed_replies.h"
#include "server/flows.h"
#include "server/http.h"
#include "server/metrics.h"
#include "server/worker_pool.h"

namespace facelogin::server {

class Api;
struct LoginFlow;

enum class Body { kNone, kJson, kFrame };
enum class Access { kPublic, kSession, kAdmin };

// A request being answered: what the router found, and the reply to call once.
struct Call {
  Exchange exchange;
  std::vector<std::string> params;  // the {placeholders} of the route, in order
  std::optional<AuthenticatedSession> session;
  std::optional<ApiKeyRecord> api_key;  // from X-API-Key
  std::string token;                    // the session token, when authenticated
  bool via_cookie = false;
  Reply reply;
  std::string route;  // the route's pattern, for metrics
  // When the request arrived, on the server's clock (ServerClock::steady): the time of a frame.
  SteadyClock::time_point at{};
  // A job's reply is sent no earlier than this (see DelayedReplies); default: at once.
  std::chrono::steady_clock::time_point reply_not_before{};
};

struct Route {
  http::verb method;
  std::string pattern;  // "/api/v1/login/attempts/{id}/frames"
  Access access;
  Body body;
  std::string summary;
  void (Api::*handler)(Call&);
};

class Api final : public Handler {
 public:
  Api(const ServerOptions& options, ServerDeps deps, WorkerPool& pool, Metrics& metrics);

  std::size_t body_limit(const Request& header) const override;
  void handle(Exchange exchange, Reply reply) override;
  void finish(Response& response) const override;
  std::optional<Response> accept_socket(const Exchange& upgrade) override;
  void socket_opened(const Exchange& upgrade, std::function<void()> close) override;
  std::size_t socket_message_limit() const override { return options_.max_frame_bytes; }
  void socket_message(const Exchange& upgrade, std::string message, bool binary, std::string& state,
                      std::function<void(std::string text, bool close)> reply) override;

  // Ends expired flows; a login attempt that saw frames and timed out counts as a failure.
  void sweep();

  static const std::vector<Route>& routes();
  static nlohmann::json openapi();

 private:
  // Health, metrics, documents.
  void healthz(Call& call);
  void readyz(Call& call);
  void metrics(Call& call);
  void openapi_doc(Call& call);
  // Enrolment.
  void start_enrollment(Call& call);
  void enrollment_frame(Call& call);
  void finish_enrollment(Call& call);
  void cancel_enrollment(Call& call);
  // Login.
  void start_login(Call& call);
  void login_frame(Call& call);
  void cancel_login(Call& call);
  void recovery_login(Call& call);
  void get_session(Call& call);
  void logout(Call& call);
  // Account.
  void get_account(Call& call);
  void delete_account(Call& call);
  void delete_face(Call& call);
  void revoke_session(Call& call);
  void new_recovery_code(Call& call);

  // Administration (admins only).
  void admin_users(Call& call);
  void admin_disable(Call& call);
  void admin_enable(Call& call);
  void admin_delete(Call& call);
  void admin_audit(Call& call);
  void admin_stats(Call& call);
  void set_disabled(Call& call, bool disabled);

  // A plain GET on a WebSocket route.
  void socket_only(Call& call);

  void static_file(Call& call);

  // Helpers.
  void reply_json(Call& call, http::status status, const nlohmann::json& body,
                  const std::vector<std::pair<std::string, std::string>>& headers = {});
  void reply_error(Call& call, const Status& status, int retry_after_s = 0);
  Result<nlohmann::json> json_body(const Call& call) const;
  // Refuses (and answers) a start over the open-flow limits, in all and per address.
  bool too_many_flows(Call& call);
  // Refuses (and answers) a start over the per-address or per-account rate.
  bool rate_limited(Call& call, const std::string& user);
  // Bearer sessions are for applications: they need an API key with `scope`. Answers and
  // returns false when missing.
  bool bearer_allowed(Call& call, const std::string& kind, const char* scope);
  // The session kind, liveness and actor of a flow this call starts (`scope`: the API key scope
  // a bearer session needs). Answers and returns false when the call may not start it.
  bool set_up_flow(Call& call, const nlohmann::json& body, const char* scope, FlowBase* flow);
  // The liveness policy of a flow this call starts: the API key's when the key has `scope` (the
  // operation's) and sets one, else the deployment's.
  LivenessPolicy liveness_policy(const Call& call, const char* scope) const;
  // Who acts, for the audit log: "admin:NAME", "apikey:NAME" or the user's name.
  static std::string actor(const Call& call, bool admin);
  // Refuses (and answers) when the account or address is locked out.
  bool locked_out(Call& call, const std::string& user, AttemptKind kind = AttemptKind::kFace);
  // A session for `user` as a JSON object, with the cookie header when kind is "cookie".
  Result<nlohmann::json> open_session(Call& call, const std::string& user, const std::string& kind,
                                      std::vector<std::pair<std::string, std::string>>* headers);
  std::string session_cookie(const std::string& token, std::int64_t max_age) const;
  std::string cookie_name() const;
  // Per-stage latency of one frame for /metrics.
  void observe_stages(const char* flow, double decode_s, const StageTimings& stages,
                      double liveness_ms);
  void audit(const Call& call, std::string event, std::string actor, std::string subject,
             std::string outcome, nlohmann::json detail = nlohmann::json::object());
  // Ok if face-only (1:N) login may be offered now; kForbidden with the reason otherwise.
  Status identification_allowed() const;
  // Why an adaptive login must step up to the challenge (LoginPolicy::step_up); empty if only
  // weak passive evidence should. Errors: the stores'.
  Result<std::string> step_up_reason(const Call& call, const LoginFlow& flow,
                                     const std::string& user);
  // Audits a change of the operating threshold (the population moved it) since last seen.
  void note_operating_threshold(const Call& call);
  bool submit(Call& call, std::function<void(WorkerSlot&, Call&)> job);

  SteadyClock::time_point now() const { return clock_->steady(); }

  ServerOptions options_;
  ServerDeps deps_;
  std::shared_ptr<const ServerClock> clock_;
  WorkerPool& pool_;
  Metrics& metrics_;
  Authenticator auth_;
  FlowRegistry<EnrollFlow> enrollments_;
  FlowRegistry<LoginFlow> logins_;
  DelayedReplies delayed_;
  std::atomic<float> reported_threshold_{std::numeric_limits<float>::quiet_NaN()};
};

}  // namespace facelogin::server
