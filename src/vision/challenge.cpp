#include "facelogin/challenge.h"

#include <openssl/rand.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <opencv2/imgproc.hpp>

namespace facelogin {

std::string_view challenge_action_name(ChallengeAction action) {
  switch (action) {
    case ChallengeAction::kTurnLeft:
      return "turn_left";
    case ChallengeAction::kTurnRight:
      return "turn_right";
    case ChallengeAction::kLookUp:
      return "look_up";
    case ChallengeAction::kMoveCloser:
      return "move_closer";
  }
  return "unknown";
}

std::string_view challenge_action_prompt(ChallengeAction action) {
  switch (action) {
    case ChallengeAction::kTurnLeft:
      return "Turn your head slowly to your left.";
    case ChallengeAction::kTurnRight:
      return "Turn your head slowly to your right.";
    case ChallengeAction::kLookUp:
      return "Tilt your head up a little.";
    case ChallengeAction::kMoveCloser:
      return "Move closer to the camera.";
  }
  return "";
}

std::string_view challenge_verdict_name(ChallengeVerdict verdict) {
  switch (verdict) {
    case ChallengeVerdict::kPending:
      return "pending";
    case ChallengeVerdict::kPassed:
      return "passed";
    case ChallengeVerdict::kWrongMove:
      return "wrong_move";
    case ChallengeVerdict::kTooSlow:
      return "too_slow";
    case ChallengeVerdict::kFlat:
      return "flat_motion";
  }
  return "unknown";
}

std::string_view challenge_verdict_advice(ChallengeVerdict verdict) {
  switch (verdict) {
    case ChallengeVerdict::kPending:
    case ChallengeVerdict::kPassed:
      return "";
    case ChallengeVerdict::kWrongMove:
      return "That was not the movement asked for: try again and follow the prompts.";
    case ChallengeVerdict::kTooSlow:
      return "The movement did not come in time: try again and follow the prompts.";
    case ChallengeVerdict::kFlat:
      return "The face moved like a flat picture: show your own face to the camera.";
  }
  return "";
}

std::optional<float> nose_parallax(const Landmarks5& from, const Landmarks5& to) {
  // Eyes (0, 1) and mouth corners (3, 4): the quadrilateral of a roughly planar part of the face.
  const std::array<int, 4> corners = {0, 1, 4, 3};
  std::array<cv::Point2f, 4> src;
  std::array<cv::Point2f, 4> dst;
  for (std::size_t i = 0; i < corners.size(); ++i) {
    src[i] = {from[corners[i]].x, from[corners[i]].y};
    dst[i] = {to[corners[i]].x, to[corners[i]].y};
  }
  auto area = [](const std::array<cv::Point2f, 4>& q) {
    std::vector<cv::Point2f> poly(q.begin(), q.end());
    return std::abs(cv::contourArea(poly));
  };
  const float eyes = std::hypot(to[1].x - to[0].x, to[1].y - to[0].y);
  if (eyes < 1.f || area(src) < 1.0 || area(dst) < 1.0) {
    return std::nullopt;
  }
  const cv::Mat h = cv::getPerspectiveTransform(src.data(), dst.data());
  if (h.empty()) {
    return std::nullopt;
  }
  std::vector<cv::Point2f> nose = {{from[2].x, from[2].y}};
  std::vector<cv::Point2f> mapped;
  cv::perspectiveTransform(nose, mapped, h);
  const float residual = std::hypot(mapped[0].x - to[2].x, mapped[0].y - to[2].y);
  if (!std::isfinite(residual)) {
    return std::nullopt;
  }
  return residual / eyes;
}

ChallengeAction next_challenge_action(const std::vector<ChallengeAction>& so_far, int pick) {
  if (!so_far.empty() && pick >= static_cast<int>(so_far.back())) {
    ++pick;  // skip the previous action
  }
  return kChallengeActions[static_cast<std::size_t>(pick)];
}

namespace {

Status check_options(const ChallengeOptions& options) {
  if (options.steps < 1 || options.neutral_frames < 1 || options.hold_frames < 1 ||
      options.step_time.count() < 1 || options.closer_ratio <= 1.f ||
      options.turn_degrees <= 0.f || options.up_degrees <= 0.f) {
    return Status(ErrorCode::kInvalidArgument,
                  "challenge steps, frame counts, time and thresholds must be positive");
  }
  return Status::Ok();
}

}  // namespace

Result<ActiveChallenge> ActiveChallenge::random(const ChallengeOptions& options) {
  if (Status s = check_options(options); !s.ok()) {
    return make_error(s);
  }
  std::vector<ChallengeAction> actions;
  while (static_cast<int>(actions.size()) < options.steps) {
    unsigned char byte = 0;
    if (RAND_bytes(&byte, 1) != 1) {
      return make_error(ErrorCode::kInternal, "the random generator failed");
    }
    // The first action from all four; each next one from the three others (rejection sampling
    // keeps the choice uniform).
    const int choices = actions.empty() ? 4 : 3;
    if (byte >= 252) {
      continue;
    }
    actions.push_back(next_challenge_action(actions, byte % choices));
  }
  return ActiveChallenge(std::move(actions), options);
}

Result<ActiveChallenge> ActiveChallenge::with_actions(std::vector<ChallengeAction> actions,
                                                      const ChallengeOptions& options) {
  ChallengeOptions adjusted = options;
  adjusted.steps = static_cast<int>(actions.size());
  if (Status s = check_options(adjusted); !s.ok()) {
    return make_error(s);
  }
  return ActiveChallenge(std::move(actions), adjusted);
}

std::optional<ChallengeAction> ActiveChallenge::asked() const {
  if (!acting_ || verdict_ != ChallengeVerdict::kPending) {
    return std::nullopt;
  }
  return actions_[static_cast<std::size_t>(done_)];
}

std::string_view ActiveChallenge::prompt() const {
  if (verdict_ != ChallengeVerdict::kPending) {
    return challenge_verdict_advice(verdict_);
  }
  if (acting_) {
    return challenge_action_prompt(actions_[static_cast<std::size_t>(done_)]);
  }
  if (done_ > 0 && actions_[static_cast<std::size_t>(done_ - 1)] == ChallengeAction::kMoveCloser) {
    return "Move back to where you were and look straight at the camera.";
  }
  return "Look straight at the camera.";
}

float ActiveChallenge::strength(ChallengeAction action, const ChallengeFrame& frame) const {
  const ChallengeFrame& ref = *reference_;
  switch (action) {
    case ChallengeAction::kTurnLeft:
      return (frame.pose.yaw - ref.pose.yaw) / options_.turn_degrees;
    case ChallengeAction::kTurnRight:
      return (ref.pose.yaw - frame.pose.yaw) / options_.turn_degrees;
    case ChallengeAction::kLookUp:
      return (frame.pose.pitch - ref.pose.pitch) / options_.up_degrees;
    case ChallengeAction::kMoveCloser:
      return ref.box.width > 0.f
                 ? (frame.box.width / ref.box.width - 1.f) / (options_.closer_ratio - 1.f)
                 : 0.f;
  }
  return 0.f;
}

bool ActiveChallenge::centred(const ChallengeFrame& frame) const {
  const ChallengeFrame& ref = *reference_;
  return std::abs(frame.pose.yaw - ref.pose.yaw) <= options_.neutral_degrees &&
         std::abs(frame.pose.pitch - ref.pose.pitch) <= options_.neutral_degrees &&
         frame.box.width <= options_.neutral_width_ratio * ref.box.width;
}

void ActiveChallenge::add_centring_frame(const ChallengeFrame& frame,
                                         std::chrono::milliseconds timestamp) {
  if (!reference_) {
    // The first reference: a run of frames that agree with the run's first, near frontal.
    const bool frontal = std::abs(frame.pose.yaw) <= options_.max_reference_yaw &&
                         std::abs(frame.pose.pitch) <= options_.max_reference_pitch;
    const bool agrees =
        run_.empty() ||
        (std::abs(frame.pose.yaw - run_.front().pose.yaw) <= options_.neutral_degrees &&
         std::abs(frame.pose.pitch - run_.front().pose.pitch) <= options_.neutral_degrees);
    if (!frontal) {
      run_.clear();
      return;
    }
    if (!agrees) {
      run_.clear();
    }
    run_.push_back(frame);
    if (static_cast<int>(run_.size()) < options_.neutral_frames) {
      return;
    }
    ChallengeFrame ref = run_.back();
    ref.pose = {};
    ref.box.width = 0.f;
    for (const ChallengeFrame& f : run_) {
      ref.pose.yaw += f.pose.yaw / static_cast<float>(run_.size());
      ref.pose.pitch += f.pose.pitch / static_cast<float>(run_.size());
      ref.box.width += f.box.width / static_cast<float>(run_.size());
    }
    reference_ = ref;
  } else {
    if (!centred(frame)) {
      run_.clear();
      return;
    }
    run_.push_back(frame);
    if (static_cast<int>(run_.size()) < options_.neutral_frames) {
      return;
    }
  }
  run_.clear();
  acting_ = true;
  prompted_ = timestamp;
  held_ = 0;
  wrong_frames_ = 0;
}

void ActiveChallenge::add_acting_frame(const ChallengeFrame& frame) {
  const ChallengeAction want = actions_[static_cast<std::size_t>(done_)];
  // The head move a frame shows is the one furthest past its threshold: a head turned left and
  // a little up answers "left", not "up" as well, so one combined movement cannot answer two
  // prompts. The face's size is judged apart: it changes as the head turns, so "closer" is shown
  // only by a frame with no head move.
  std::optional<ChallengeAction> shown;
  float strongest = 1.f;
  for (ChallengeAction a : {ChallengeAction::kTurnLeft, ChallengeAction::kTurnRight,
                            ChallengeAction::kLookUp}) {
    const float s = strength(a, frame);
    if (s >= strongest) {
      strongest = s;
      shown = a;
    }
  }
  if (!shown && strength(ChallengeAction::kMoveCloser, frame) >= 1.f) {
    shown = ChallengeAction::kMoveCloser;
  }
  if (!shown) {
    held_ = 0;
    return;
  }
  if (*shown != want) {
    // Counted over the whole step, so that frames without a face in between do not wipe it
    // out.
    held_ = 0;
    if (++wrong_frames_ >= options_.hold_frames) {
      verdict_ = ChallengeVerdict::kWrongMove;
    }
    return;
  }
  if (want != ChallengeAction::kMoveCloser && options_.min_parallax > 0.f) {
    const auto parallax = nose_parallax(reference_->landmarks, frame.landmarks);
    const float value = parallax.value_or(0.f);
    step_parallax_ = held_ == 0 ? value : std::max(step_parallax_, value);
  }
  if (++held_ < options_.hold_frames) {
    return;
  }
  if (want != ChallengeAction::kMoveCloser && options_.min_parallax > 0.f) {
    min_parallax_seen_ = std::min(min_parallax_seen_.value_or(step_parallax_), step_parallax_);
    if (step_parallax_ < options_.min_parallax) {
      verdict_ = ChallengeVerdict::kFlat;
      return;
    }
  }
  acting_ = false;
  held_ = 0;
  if (++done_ == static_cast<int>(actions_.size())) {
    verdict_ = ChallengeVerdict::kPassed;
  }
}

ChallengeVerdict ActiveChallenge::add_frame(const std::optional<ChallengeFrame>& frame,
                                            std::chrono::milliseconds timestamp) {
  if (verdict_ != ChallengeVerdict::kPending) {
    return verdict_;
  }
  if (prompted_ && timestamp - *prompted_ > options_.step_time) {
    verdict_ = ChallengeVerdict::kTooSlow;
    return verdict_;
  }
  if (!frame || !frame->same_person) {
    // Not counted, and it breaks a run: the frames that answer must be consecutive and of the
    // claimed person.
    run_.clear();
    held_ = 0;
    return verdict_;
  }
  if (acting_) {
    add_acting_frame(*frame);
    if (!acting_ && verdict_ == ChallengeVerdict::kPending) {
      prompted_ = timestamp;  // the time to centre again runs from here
    }
  } else {
    add_centring_frame(*frame, timestamp);
  }
  return verdict_;
}

}  // namespace facelogin
