// Login: start an attempt (1:1 or face-only), frames in, recovery codes, the session.
// The decision is LoginAttempt's; the server's part stays here: lockout, step-up reasons, audit,
// sessions.

#include "server/api.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <span>

#include "facelogin/image.h"
#include "server/api_util.h"

namespace facelogin::server {
namespace {

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

}  // namespace

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
  flow->started = now();
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
    if (attempt.state() != AttemptState::kPending || flow->expires < now()) {
      return reply_error(c, Status(ErrorCode::kNotFound, "this attempt is over: start again"));
    }
    const auto t0 = SteadyClock::now();
    auto image = decode_frame(c.exchange.request);
    if (!image) {
      return reply_error(c, image.error());
    }
    const double decode_s = seconds_since(t0);
    if (Status s = attempt.use(*slot.service, slot.scorer.get()); !s.ok()) {
      return reply_error(c, s);
    }
    const auto ts =
        std::chrono::duration_cast<std::chrono::milliseconds>(c.at - flow->started);
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

void Api::cancel_login(Call& call) {
  auto flow = logins_.find(call.params[0], call.exchange.address);
  if (!flow ||
      !constant_time_equal(header(call.exchange.request, "X-Attempt-Nonce"), flow->nonce)) {
    return reply_error(call, Status(ErrorCode::kNotFound,
                                    "no such login attempt, or the nonce does not match"));
  }
  std::unique_lock busy(flow->busy, std::try_to_lock);
  if (!busy.owns_lock()) {
    // The expiry sweep ends it instead, counted as a failure if a face was judged by then.
    return reply_error(call, Status(ErrorCode::kAlreadyExists,
                                    "a frame of this attempt is still being judged: try again"));
  }
  if (flow->attempt->state() != AttemptState::kPending) {
    return reply_json(call, http::status::ok, {{"cancelled", false}});  // already decided
  }
  logins_.erase(flow->id);
  // Once a face was judged it counts, as an attacker who saw his attempt going wrong must not
  // reset his count by cancelling; before, nothing was tried.
  const bool judged = flow->attempt->faces_judged() > 0;
  std::int64_t locked_ms = 0;
  if (judged) {
    auto locked = auth_.record_failure(flow->attempt->user(), call.exchange.address);
    if (!locked) {
      return reply_error(call, locked.error());
    }
    locked_ms = *locked;
    metrics_.count("facelogin_decisions_total", "flow=\"login\",outcome=\"cancelled\"");
  }
  audit(call, "login", flow->actor, flow->attempt->user(), "cancelled",
        {{"counted", judged}, {"frames", flow->frames}, {"locked_for_s", locked_ms / 1000}});
  reply_json(call, http::status::ok, {{"cancelled", true}, {"counted_as_failure", judged}});
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

}  // namespace facelogin::server
