#include "facelogin/login_attempt.h"

#include <fmt/format.h>

namespace facelogin {
namespace {

// Stands in for a scorer under LivenessPolicy::kOff, where the session never scores.
class NoScorer final : public LivenessScorer {
 public:
  Result<LivenessScore> score(const Image&, const Box&) override {
    return make_error(ErrorCode::kInternal, "liveness scoring asked for under policy 'off'");
  }
};

NoScorer& no_scorer() {
  static NoScorer scorer;
  return scorer;
}

}  // namespace

Result<LoginAttempt> LoginAttempt::begin(FaceService& service, LivenessScorer* scorer,
                                         std::string user, LoginPolicy policy) {
  if (policy.liveness.policy != LivenessPolicy::kOff && scorer == nullptr) {
    return make_error(ErrorCode::kInvalidArgument,
                      "a liveness policy other than 'off' needs the liveness models");
  }
  if (policy.matching_frames_needed < 1 || policy.non_matching_frames_allowed < 0 ||
      policy.liveness.frames_needed < 1) {
    return make_error(ErrorCode::kInvalidArgument, "login policy counts must be positive");
  }
  std::optional<ActiveChallenge> challenge;
  if (policy.liveness.policy == LivenessPolicy::kActive) {
    auto picked = ActiveChallenge::random(policy.liveness.challenge);
    if (!picked) {
      return make_error(picked.error());
    }
    challenge.emplace(std::move(*picked));
  }
  auto session =
      std::make_unique<LivenessSession>(scorer != nullptr ? *scorer : no_scorer(), policy.liveness);
  return LoginAttempt(service, std::move(user), std::move(policy), std::move(session),
                      std::move(challenge));
}

Status LoginAttempt::use(FaceService& service, LivenessScorer* scorer) {
  if (policy_.liveness.policy != LivenessPolicy::kOff && scorer == nullptr) {
    return Status(ErrorCode::kInvalidArgument,
                  "a liveness policy other than 'off' needs the liveness models");
  }
  service_ = &service;
  liveness_->use_scorer(scorer != nullptr ? *scorer : no_scorer());
  return Status::Ok();
}

Result<FrameFeedback> LoginAttempt::add_frame(const LabeledImage& frame,
                                              std::chrono::milliseconds timestamp) {
  FrameFeedback feedback;
  feedback.state = state_;
  feedback.reason = reason_;
  feedback.liveness = liveness_->verdict();
  feedback.matching_frames = matching_;
  if (state_ != AttemptState::kPending) {
    return feedback;
  }
  const float extra_yaw = challenge_ ? policy_.liveness.challenge.extra_yaw_degrees : 0.f;
  // 1:N until a frame names someone, then 1:1 against that person for the rest of the attempt,
  // so every matching frame is of the same enrolled user.
  std::optional<VerifyResult> verified;
  if (user_.empty()) {
    auto found = service_->identify_frame(frame, 1, extra_yaw);
    if (!found) {
      return make_error(found.error());
    }
    verified.emplace();
    verified->image = found->image;
    if (!found->candidates.empty()) {
      verified->decision.score = found->candidates.front().score;
      verified->decision.match = found->match;
    }
    if (found->match) {
      user_ = found->candidates.front().user;
    }
  } else {
    auto result = service_->verify_frame(user_, frame, extra_yaw);
    if (!result && policy_.hide_unknown_user &&
        (result.error().code() == ErrorCode::kNotFound ||
         result.error().code() == ErrorCode::kModelMismatch)) {
      // Analysed like any frame and never matching, so the attempt looks and lasts the same
      // as one on an account that exists.
      auto report = service_->probe_frame(frame, extra_yaw);
      if (!report) {
        return make_error(report.error());
      }
      verified.emplace();
      verified->image = std::move(*report);
    } else if (!result) {
      return make_error(result.error());
    } else {
      verified = std::move(*result);
    }
  }
  feedback.image = verified->image;
  const bool usable = verified->image.outcome == FrameOutcome::kOk;
  if (usable) {
    feedback.score = verified->decision.score;
    feedback.match = verified->decision.match;
    best_score_ = std::max(best_score_, verified->decision.score);
    ++(feedback.match ? matching_ : non_matching_);
  }
  // Liveness sees the frames recognition can use, so both judge the same faces.
  const auto live_start = std::chrono::steady_clock::now();
  auto verdict =
      liveness_->add_frame(frame.image, usable ? verified->image.box : std::nullopt, timestamp);
  feedback.liveness_ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - live_start)
          .count();
  if (!verdict) {
    return make_error(verdict.error());
  }
  feedback.liveness = *verdict;
  feedback.matching_frames = matching_;

  // Adaptive: once the passive window says live, evidence that is not strong, or a reason of the
  // caller's, steps up to the challenge in the same attempt; this frame is the challenge's first.
  if (policy_.liveness.policy == LivenessPolicy::kAdaptive && !challenge_ &&
      *verdict == LivenessVerdict::kLive &&
      (!policy_.step_up.empty() || !liveness_->strong())) {
    auto picked = ActiveChallenge::random(policy_.liveness.challenge);
    if (!picked) {
      return make_error(picked.error());
    }
    challenge_.emplace(std::move(*picked));
    step_up_ = policy_.step_up.empty() ? std::string("weak_passive") : policy_.step_up;
  }

  // The challenge counts only frames of the claimed (or, for 1:N, the found) person.
  ChallengeVerdict challenge = ChallengeVerdict::kPassed;
  if (challenge_) {
    std::optional<ChallengeFrame> seen;
    // A repeated frame (the same picture sent again) answers nothing.
    if (usable && verified->image.box && verified->image.landmarks &&
        !liveness_->last_frame_repeated()) {
      seen = ChallengeFrame{verified->image.quality.pose, *verified->image.box,
                            *verified->image.landmarks, feedback.match};
    }
    challenge = challenge_->add_frame(seen, timestamp);
    feedback.prompt = std::string(challenge_->prompt());
    feedback.asked = challenge_->asked();
    feedback.challenge_steps_done = challenge_->steps_done();
    feedback.challenge_steps = static_cast<int>(challenge_->actions().size());
  }

  if (*verdict != LivenessVerdict::kPending && *verdict != LivenessVerdict::kLive) {
    state_ = AttemptState::kRejected;
    reason_ = std::string(liveness_verdict_name(*verdict));
    feedback.advice = std::string(liveness_verdict_advice(*verdict));
  } else if (challenge != ChallengeVerdict::kPending && challenge != ChallengeVerdict::kPassed) {
    state_ = AttemptState::kRejected;
    reason_ = std::string(challenge_verdict_name(challenge));
    feedback.advice = std::string(challenge_verdict_advice(challenge));
  } else if (non_matching_ > policy_.non_matching_frames_allowed) {
    state_ = AttemptState::kRejected;
    reason_ = "no_match";
    feedback.advice = user_.empty() ? std::string("This face does not match anyone enrolled here.")
                                    : fmt::format("This face does not match {}.", user_);
  } else if (matching_ >= policy_.matching_frames_needed && *verdict == LivenessVerdict::kLive &&
             challenge == ChallengeVerdict::kPassed) {
    state_ = AttemptState::kAccepted;
    feedback.prompt.clear();
  } else if (!usable) {
    feedback.advice = verified->image.message;
  } else if (!feedback.prompt.empty()) {
    feedback.advice = feedback.prompt;
  } else {
    feedback.advice = std::string(liveness_verdict_advice(LivenessVerdict::kPending));
  }
  feedback.state = state_;
  feedback.reason = reason_;
  return feedback;
}

}  // namespace facelogin
