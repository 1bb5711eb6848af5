#pragma once

// A login attempt over a camera stream: frame after frame, each answered with feedback a person
// can act on, until the attempt is decided. Recognition (1:1 against the claimed user) and
// liveness (a LivenessSession under the configured policy) must both succeed. The CLI runs it
// on a video file or a local camera; the server (issue 3) will run one per attempt, bound to
// the attempt's nonce, with the frames its client streams.

#include <chrono>
#include <optional>
#include <string>
#include <string_view>

#include "facelogin/challenge.h"
#include "facelogin/face_service.h"
#include "facelogin/liveness.h"

namespace facelogin {

struct LoginPolicy {
  // Frames that must match the claimed user (each at the recogniser's threshold).
  int matching_frames_needed = 3;
  // Usable frames that do not match before the attempt is refused as "not this person".
  int non_matching_frames_allowed = 5;
  // An unknown or disabled account (or one enrolled with another recogniser) is treated as an
  // account whose faces never match, instead of failing the first frame with kNotFound: a
  // server must not tell which names exist.
  bool hide_unknown_user = false;
  LivenessSessionOptions liveness;  // policy, frames, threshold, deadline, replay checks
  // Under LivenessPolicy::kAdaptive: ask for the challenge once the passive window says live,
  // however strong its evidence, for this reason (the server's: "face_only", "administrator",
  // "recent_liveness_refusal", "not_camera_loop"). Empty: only weak passive evidence steps up.
  // The challenge starts at the same point either way, so that its timing does not tell a
  // client why.
  std::string step_up;
};

enum class AttemptState { kPending, kAccepted, kRejected };

// Why an attempt was refused: "no_match", a liveness verdict name ("not_live",
// "still_image", "bad_timing", "timed_out") or a challenge verdict name ("wrong_move",
// "too_slow", "flat_motion").
struct FrameFeedback {
  ImageReport image;           // outcome, quality, face box, message
  std::optional<float> score;  // this frame's similarity to the claimed user, if it had a face
  bool match = false;          // this frame matched
  int matching_frames = 0;     // so far
  LivenessVerdict liveness = LivenessVerdict::kPending;
  AttemptState state = AttemptState::kPending;
  // Under the active policy, or the adaptive one once it stepped up: what the person should do
  // now, and how far they are.
  std::string prompt;
  std::optional<ChallengeAction> asked;
  int challenge_steps_done = 0;
  int challenge_steps = 0;  // 0: no challenge
  std::string reason;       // when rejected
  std::string advice;      // what to do now, in plain language (empty when accepted)
  double liveness_ms = 0;  // time spent on liveness for this frame (for metrics)
};

// Not thread-safe: one per attempt. Uses the caller's service and scorer (which must outlive it;
// the scorer may be null when the policy is off).
class LoginAttempt {
 public:
  // Errors: kInvalidArgument (a passive policy without a scorer, or a count below 1). An unknown
  // or disabled user is reported by the first frame (kNotFound), as the store may change.
  // An empty `user` makes it a 1:N attempt: frames are searched among all enrolled users until
  // one matches, and the rest of the attempt is 1:1 against that user (user() then names them).
  // Only offer it where the gallery is small enough for the threshold (see RecognizerSpec::
  // threshold_fmr).
  [[nodiscard]] static Result<LoginAttempt> begin(FaceService& service, LivenessScorer* scorer,
                                                  std::string user, LoginPolicy policy = {});

  // The next frame, taken at `timestamp` (a monotonic clock, the same for the whole attempt).
  // Once decided, further frames change nothing. Errors only for store or internal faults.
  [[nodiscard]] Result<FrameFeedback> add_frame(const LabeledImage& frame,
                                                std::chrono::milliseconds timestamp);

  // The service and scorer for the next frames (see LivenessSession::use_scorer): a server
  // passes the free worker's own. Errors: kInvalidArgument (no scorer under a liveness policy).
  [[nodiscard]] Status use(FaceService& service, LivenessScorer* scorer);

  AttemptState state() const { return state_; }
  const std::string& user() const { return user_; }
  const std::string& reason() const { return reason_; }
  // Frames whose face was compared with the account (matching or not): an attempt abandoned
  // after any was judged counts as a failure, one abandoned before does not.
  int faces_judged() const { return matching_ + non_matching_; }
  // The best similarity seen (for the audit log; never the template).
  float best_score() const { return best_score_; }
  const LivenessSession& liveness() const { return *liveness_; }
  // The challenge under the active policy, or the adaptive one once it stepped up; else null.
  const ActiveChallenge* challenge() const { return challenge_ ? &*challenge_ : nullptr; }
  // Why the adaptive policy asked for the challenge: LoginPolicy::step_up, or "weak_passive"
  // when the passive evidence was not strong (LivenessSession::strong); empty if it did not.
  const std::string& step_up() const { return step_up_; }

 private:
  LoginAttempt(FaceService& service, std::string user, LoginPolicy policy,
               std::unique_ptr<LivenessSession> liveness, std::optional<ActiveChallenge> challenge)
      : service_(&service),
        user_(std::move(user)),
        policy_(std::move(policy)),
        liveness_(std::move(liveness)),
        challenge_(std::move(challenge)) {}

  FaceService* service_;
  std::string user_;
  LoginPolicy policy_;
  std::unique_ptr<LivenessSession> liveness_;
  std::optional<ActiveChallenge> challenge_;
  AttemptState state_ = AttemptState::kPending;
  std::string reason_;
  int matching_ = 0;
  int non_matching_ = 0;
  float best_score_ = 0.f;
  std::string step_up_;
};

}  // namespace facelogin
