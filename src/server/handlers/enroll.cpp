// Enrolment: start a flow, frames in (EnrollmentSession decides), finish, cancel.
// Thin adapters: parse the request, call the service, reply (see server/api.h).

#include "server/api.h"

#include <fmt/format.h>

#include <span>

#include "facelogin/image.h"
#include "server/api_util.h"

namespace facelogin::server {

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
  EnrollmentPolicy policy;
  policy.frames_needed = options_.enroll_frames_needed;
  policy.min_pose_spread = options_.enroll_min_pose_spread;
  policy.live_check = flow->live_check;
  policy.liveness = options_.login.liveness;
  auto session = EnrollmentSession::begin(flow->user, flow->add, policy);
  if (!session) {
    return reply_error(call, session.error());
  }
  flow->session.emplace(std::move(*session));
  flow->id = std::move(*id);
  flow->address = call.exchange.address;
  flow->started = now();
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
  submit(call, [this, flow](WorkerSlot& slot, Call& c) {
    std::unique_lock lock(flow->busy, std::try_to_lock);
    if (!lock.owns_lock()) {
      return reply_error(
          c, Status(ErrorCode::kAlreadyExists, "send the frames of an enrolment one at a time"));
    }
    const auto t0 = SteadyClock::now();
    auto image = decode_frame(c.exchange.request);
    if (!image) {
      return reply_error(c, image.error());
    }
    const double decode_s = seconds_since(t0);
    const auto ts =
        std::chrono::duration_cast<std::chrono::milliseconds>(c.at - flow->started);
    EnrollmentSession& session = *flow->session;
    auto feedback = session.add_frame(*slot.service, slot.scorer.get(), {"frame", *image}, ts);
    if (!feedback) {
      return reply_error(c, feedback.error());
    }
    json out = frame_json(feedback->image, *image);
    if (feedback->state == EnrollmentState::kRejected) {
      enrollments_.erase(flow->id);
      audit(c, flow->add ? "add_faces" : "enroll", flow->actor, flow->user, feedback->reason,
            {{"liveness", session.liveness_score().value_or(0.f)}});
      metrics_.count("facelogin_decisions_total",
                     fmt::format("flow=\"enroll\",outcome=\"{}\"", feedback->reason));
    }
    if (feedback->liveness) {
      out["liveness"] = {{"verdict", std::string(liveness_verdict_name(*feedback->liveness))},
                         {"frames", feedback->liveness_frames},
                         {"frames_needed", options_.login.liveness.frames_needed}};
    }
    out["state"] = feedback->state == EnrollmentState::kRejected ? "rejected" : "pending";
    out["reason"] = feedback->reason;
    out["advice"] = feedback->advice;
    out["ready"] = feedback->ready;
    out["good_frames"] = feedback->good_frames;
    out["frames_needed"] = options_.enroll_frames_needed;
    out["pose_spread"] = feedback->pose_spread;
    out["progress"] = feedback->progress;
    observe_stages("enroll", decode_s, feedback->image.timings, feedback->liveness_ms);
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
    EnrollmentSession& enrolment = *flow->session;
    if (!enrolment.ready()) {  // not complete, refused or already finished: finish() says which
      return reply_error(c, enrolment.finish(*slot.service).error());
    }
    const std::size_t templates = enrolment.templates_to_store();
    auto user = enrolment.finish(*slot.service);
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
    const auto live_score = enrolment.liveness_score();
    json liveness = live_score ? json(*live_score) : json(nullptr);
    audit(c, event, actor, flow->user, "ok", {{"templates", templates}, {"liveness", liveness}});
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

}  // namespace facelogin::server
