#pragma once

// An enrolment over a camera stream, the counterpart of LoginAttempt: frame after frame, each
// answered with what the person should do, until enough good faces in enough poses (and, under a
// liveness policy, a live verdict) make it ready; then finish() stores the chosen faces. The
// server runs one per enrolment flow with the frames its client streams; the rules (which faces
// count, when it is ready, which faces are kept) live here, not in a request handler.

#include <chrono>
#include <cstddef>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "facelogin/face_service.h"
#include "facelogin/liveness.h"

namespace facelogin {

struct EnrollmentPolicy {
  int frames_needed = 5;        // usable faces kept, and needed before it is ready
  float min_pose_spread = 6.f;  // degrees of yaw or pitch between the extreme faces
  bool live_check = true;       // passive liveness must say live before it is ready
  LivenessSessionOptions liveness;
  std::size_t max_faces = 60;   // usable faces held while waiting (memory bound)
};

enum class EnrollmentState { kPending, kRejected };

struct EnrollmentFeedback {
  ImageReport image;  // outcome, quality, face box, message
  EnrollmentState state = EnrollmentState::kPending;
  std::string reason;  // when rejected: the liveness verdict's name ("not_live", ...)
  std::string advice;  // what to do now, in plain language
  bool ready = false;  // finish() will store the faces
  std::size_t good_frames = 0;
  float pose_spread = 0.f;
  double progress = 0;  // 0..1; 1 only when ready
  // Under a liveness check: the verdict so far and the frames it counted.
  std::optional<LivenessVerdict> liveness;
  int liveness_frames = 0;
  double liveness_ms = 0;  // time spent on liveness for this frame (for metrics)
};

// Not thread-safe: one per enrolment. The service and scorer are the caller's, passed with each
// frame (a server runs an enrolment's frames on whichever worker is free).
class EnrollmentSession {
 public:
  // Errors: kInvalidArgument (a count or spread out of range).
  [[nodiscard]] static Result<EnrollmentSession> begin(std::string user, bool add,
                                                       EnrollmentPolicy policy);

  // The next frame, taken at `timestamp` (a monotonic clock, the same for the whole enrolment).
  // After a rejection, further frames change nothing. Errors: kInvalidArgument (no scorer under
  // a liveness check), internal faults.
  [[nodiscard]] Result<EnrollmentFeedback> add_frame(FaceService& service, LivenessScorer* scorer,
                                                     const LabeledImage& frame,
                                                     std::chrono::milliseconds timestamp);

  bool ready() const;
  bool rejected() const { return state_ == EnrollmentState::kRejected; }
  bool finished() const { return finished_; }
  const std::string& user() const { return user_; }
  bool adds() const { return add_; }
  std::size_t good_frames() const { return faces_.size(); }
  float pose_spread() const;
  // Mean passive liveness score so far; nullopt without a liveness check.
  std::optional<float> liveness_score() const;

  // Stores the kept faces (the extremes of yaw and pitch first, then the best by quality) as the
  // user's, a new account or, with `add`, more faces of an existing one. Once only. Returns the
  // templates stored beside the user. Errors: kInvalidArgument (not ready or rejected: keep
  // sending frames), kNotFound (already finished, whatever came of it), and
  // FaceService::enroll_templates's (kAlreadyExists, kDuplicateFace, kDifferentPeople...).
  [[nodiscard]] Result<UserInfo> finish(FaceService& service);
  // How many templates finish() stores (frames_needed once ready).
  std::size_t templates_to_store() const;

 private:
  struct Face {
    FaceTemplate face;
    HeadPose pose;
    float quality = 0.f;
  };
  EnrollmentSession(std::string user, bool add, EnrollmentPolicy policy);
  std::vector<const Face*> chosen() const;

  std::string user_;
  bool add_ = false;
  EnrollmentPolicy policy_;
  std::vector<Face> faces_;
  std::unique_ptr<LivenessSession> liveness_;  // created with the first frame's scorer
  EnrollmentState state_ = EnrollmentState::kPending;
  bool finished_ = false;
};

}  // namespace facelogin
