#include "facelogin/enrollment_session.h"

#include <fmt/format.h>

#include <algorithm>

namespace facelogin {
EnrollmentSession::EnrollmentSession(std::string user, bool add, EnrollmentPolicy policy)
    : user_(std::move(user)), add_(add), policy_(std::move(policy)) {}

Result<EnrollmentSession> EnrollmentSession::begin(std::string user, bool add,
                                                   EnrollmentPolicy policy) {
  if (policy.frames_needed < 1 || policy.max_faces < static_cast<std::size_t>(policy.frames_needed)) {
    return make_error(ErrorCode::kInvalidArgument,
                      "an enrolment needs at least one frame, and room to keep them");
  }
  if (!(policy.min_pose_spread >= 0.f)) {
    return make_error(ErrorCode::kInvalidArgument, "the pose spread must be 0 or more degrees");
  }
  if (policy.live_check && policy.liveness.frames_needed < 1) {
    return make_error(ErrorCode::kInvalidArgument, "the liveness check needs at least one frame");
  }
  return EnrollmentSession(std::move(user), add, std::move(policy));
}

float EnrollmentSession::pose_spread() const {
  if (faces_.empty()) {
    return 0.f;
  }
  const auto [ymin, ymax] = std::minmax_element(
      faces_.begin(), faces_.end(), [](const Face& a, const Face& b) { return a.pose.yaw < b.pose.yaw; });
  const auto [pmin, pmax] =
      std::minmax_element(faces_.begin(), faces_.end(),
                          [](const Face& a, const Face& b) { return a.pose.pitch < b.pose.pitch; });
  return std::max(ymax->pose.yaw - ymin->pose.yaw, pmax->pose.pitch - pmin->pose.pitch);
}

bool EnrollmentSession::ready() const {
  const bool live_done =
      !policy_.live_check || (liveness_ && liveness_->verdict() == LivenessVerdict::kLive);
  return state_ == EnrollmentState::kPending && !finished_ &&
         faces_.size() >= static_cast<std::size_t>(policy_.frames_needed) &&
         pose_spread() >= policy_.min_pose_spread && live_done;
}

std::optional<float> EnrollmentSession::liveness_score() const {
  if (!policy_.live_check) {
    return std::nullopt;
  }
  return liveness_ ? liveness_->mean_score() : 0.f;
}

Result<EnrollmentFeedback> EnrollmentSession::add_frame(FaceService& service,
                                                        LivenessScorer* scorer,
                                                        const LabeledImage& frame,
                                                        std::chrono::milliseconds timestamp) {
  if (policy_.live_check && scorer == nullptr) {
    return make_error(ErrorCode::kInvalidArgument, "a liveness check needs a liveness scorer");
  }
  auto check = service.check_frame(frame);
  if (!check) {
    return make_error(check.error());
  }
  EnrollmentFeedback out;
  out.image = check->image;
  out.advice = frame_advice(out.image);
  const bool was_pending = state_ == EnrollmentState::kPending && !finished_;
  if (policy_.live_check && was_pending) {
    if (!liveness_) {
      liveness_ = std::make_unique<LivenessSession>(*scorer, policy_.liveness);
    }
    liveness_->use_scorer(*scorer);
    const auto start = std::chrono::steady_clock::now();
    auto verdict = liveness_->add_frame(frame.image, check->face ? check->image.box : std::nullopt,
                                        timestamp);
    out.liveness_ms =
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
    if (!verdict) {
      return make_error(verdict.error());
    }
    if (*verdict != LivenessVerdict::kPending && *verdict != LivenessVerdict::kLive) {
      state_ = EnrollmentState::kRejected;
      out.reason = liveness_verdict_name(*verdict);
      out.advice = liveness_verdict_advice(*verdict);
    }
  }
  if (policy_.live_check && liveness_) {
    out.liveness = liveness_->verdict();
    out.liveness_frames = liveness_->frames_counted();
  }
  if (check->face && state_ == EnrollmentState::kPending && !finished_ &&
      faces_.size() < policy_.max_faces) {
    faces_.push_back(
        {std::move(*check->face), check->image.quality.pose, check->image.quality.score});
  }
  out.state = state_;
  if (!was_pending && out.reason.empty()) {
    out.advice = "This enrolment has ended: start again.";
  }
  const auto needed = static_cast<std::size_t>(policy_.frames_needed);
  out.good_frames = faces_.size();
  out.pose_spread = pose_spread();
  out.ready = ready();
  const bool live_done =
      !policy_.live_check || (liveness_ && liveness_->verdict() == LivenessVerdict::kLive);
  if (state_ == EnrollmentState::kPending && was_pending && check->face) {
    out.advice = out.ready ? "Done: you can finish."
                 : faces_.size() >= needed && out.pose_spread < policy_.min_pose_spread
                     ? "Turn your head slowly a little to the left and right, then up and down."
                 : !live_done ? "Keep looking at the camera."
                              : "Good. Keep looking at the camera and move your head a little.";
  }
  double progress = std::min(1.0, static_cast<double>(faces_.size()) / needed);
  if (policy_.min_pose_spread > 0.f) {
    progress = std::min(progress, static_cast<double>(out.pose_spread) / policy_.min_pose_spread);
  }
  if (policy_.live_check) {
    progress = std::min(progress, static_cast<double>(out.liveness_frames) /
                                      policy_.liveness.frames_needed);
  }
  out.progress = out.ready ? 1.0 : std::min(progress, 0.99);
  return out;
}

std::vector<const EnrollmentSession::Face*> EnrollmentSession::chosen() const {
  const std::size_t n = static_cast<std::size_t>(policy_.frames_needed);
  std::vector<const Face*> chosen;
  if (faces_.empty()) {
    return chosen;
  }
  const auto add = [&](const Face* f) {
    if (chosen.size() < n && std::find(chosen.begin(), chosen.end(), f) == chosen.end()) {
      chosen.push_back(f);
    }
  };
  const auto by = [&](auto key) {
    return std::minmax_element(faces_.begin(), faces_.end(),
                               [&](const Face& a, const Face& b) { return key(a) < key(b); });
  };
  // The extremes of yaw and pitch, so that the pose variety is kept; then the best by quality.
  const auto [ymin, ymax] = by([](const Face& f) { return f.pose.yaw; });
  const auto [pmin, pmax] = by([](const Face& f) { return f.pose.pitch; });
  for (auto it : {ymin, ymax, pmin, pmax}) {
    add(&*it);
  }
  std::vector<const Face*> rest;
  for (const auto& f : faces_) {
    rest.push_back(&f);
  }
  std::stable_sort(rest.begin(), rest.end(),
                   [](const Face* a, const Face* b) { return a->quality > b->quality; });
  for (const Face* f : rest) {
    add(f);
  }
  return chosen;
}

std::size_t EnrollmentSession::templates_to_store() const {
  return std::min(faces_.size(), static_cast<std::size_t>(policy_.frames_needed));
}

Result<UserInfo> EnrollmentSession::finish(FaceService& service) {
  if (finished_) {
    return make_error(ErrorCode::kNotFound, "this enrolment is already finished");
  }
  if (!ready()) {
    return make_error(ErrorCode::kInvalidArgument,
                      rejected() ? "this enrolment was refused: start again"
                                 : "the enrolment is not complete: keep sending frames until a "
                                   "frame's answer says ready");
  }
  std::vector<FaceTemplate> templates;
  std::vector<std::string> sources;
  for (const Face* f : chosen()) {
    templates.push_back(f->face);
    sources.push_back(fmt::format("frame {}", templates.size()));
  }
  finished_ = true;  // whatever the store says: a second finish must not store twice
  return service.enroll_templates(user_, templates, sources, add_);
}

}  // namespace facelogin
