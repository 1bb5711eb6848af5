#pragma once

// Passive (single-frame) liveness: is this face in front of the camera, or a photo of one?
// The Silent-Face MiniFASNet pair (Apache-2.0, ../shared/models, docs/models.md): each network
// sees the raw BGR frame cropped around the face box enlarged by its own factor (2.7 and 4.0, so
// that the edges of a print or a screen are in view), resized to 80x80; the score is the mean of
// the two networks' softmax probability of the "real face" class.
//
// This is one signal of several (issue 4): it stops small printed photos (NUAA) well, and is
// known to pass some screen replays and masks. The passive
// policy rests on it and the replay checks alone; the active policy adds a challenge.
//
// Same shape as Engine: LivenessModels is immutable and shared; each thread makes its own
// LivenessScorer.

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "facelogin/challenge.h"
#include "facelogin/geometry.h"
#include "facelogin/image.h"
#include "facelogin/status.h"

namespace facelogin {

// The crop a liveness network of enlargement `scale` sees: the face box scaled around its centre,
// the scale lowered where needed so that the crop fits in the frame, then shifted (never padded)
// to lie inside it. Integer pixel bounds, inclusive of x and y, of width/height >= 1.
// Precondition: frame_width, frame_height >= 2 and a box of positive size.
[[nodiscard]] Box liveness_crop_box(const Box& face, float scale, int frame_width,
                                    int frame_height);

// The default decision threshold on LivenessScore::live (accept as live at or above it), for the
// mean score of an attempt's frames. How it was chosen: docs/liveness.md.
inline constexpr float kDefaultLiveThreshold = 0.46f;

// Under the adaptive policy, passive liveness decides alone only when its evidence is strong: the
// attempt's mean score at or above this and every counted frame at or above the threshold above.
// Otherwise the attempt steps up to the active challenge. How it was chosen: docs/liveness.md.
inline constexpr float kDefaultStrongLiveThreshold = 0.90f;

struct LivenessScore {
  float live = 0.f;              // 0..1: mean of the models' real-class probabilities
  std::vector<float> per_model;  // each model's real-class probability, catalog order
};

class LivenessScorer;

class LivenessModels {
 public:
  virtual ~LivenessModels() = default;

  // Loads and checks (sha256) every liveness model of the catalog from `model_dir` (empty:
  // default_model_dir()). Errors: kModelError naming the missing or corrupt file and how to
  // get it.
  [[nodiscard]] static Result<std::shared_ptr<const LivenessModels>> load(
      const std::filesystem::path& model_dir);

  // The catalog ids of the models, in scoring order.
  virtual const std::vector<std::string>& model_ids() const = 0;
  // A scorer with its own inference state. Errors: kModelError if a network fails to build.
  [[nodiscard]] virtual Result<std::unique_ptr<LivenessScorer>> make_scorer() const = 0;
};

// Not thread-safe: one per thread. Keeps its LivenessModels alive.
class LivenessScorer {
 public:
  virtual ~LivenessScorer() = default;

  // Scores the face `box` (in `frame` pixels, as the detector gives it) of a camera frame.
  // Errors: kInvalidArgument for an empty frame or a box that does not overlap it; kInternal
  // if a network fails.
  [[nodiscard]] virtual Result<LivenessScore> score(const Image& frame, const Box& box) = 0;
};

// ---------------------------------------------------------------------------------------------
// An attempt: the frames one camera sends for one login or enrolment, judged together.
//
// Signals so far: passive liveness averaged over several frames (signal 1 of issue 4) and replay
// checks on the stream itself (part of signal 4): a frame that repeats the previous one is not
// counted (a browser may sample a slow camera twice) and a stream that is a still image is
// refused; frames must come at a pace a camera can deliver and before the deadline. The server
// binds an attempt to its nonce by keeping one session per attempt. The active challenge and the
// 3-D check (signals 2 and 3, challenge.h) run beside it in LoginAttempt under kActive.

enum class LivenessPolicy {
  kOff,      // every attempt with enough frames passes (deployments that accept the risk)
  kPassive,  // the mean passive score of the counted frames must reach the threshold
  kActive,   // passive, and a random challenge answered with a head that moves like one
  // Passive; where its evidence is not strong (LivenessSession::strong) or the caller asks for
  // it (LoginPolicy::step_up), the same attempt goes on with the challenge of kActive.
  kAdaptive,
};

// "off", "passive", "active", "adaptive"
[[nodiscard]] std::string_view liveness_policy_name(LivenessPolicy policy);
// Errors: kInvalidArgument naming the accepted values.
[[nodiscard]] Result<LivenessPolicy> parse_liveness_policy(std::string_view name);

struct LivenessSessionOptions {
  LivenessPolicy policy = LivenessPolicy::kAdaptive;
  int frames_needed = 10;  // frames with a face, not repeats, that decide
  float threshold = kDefaultLiveThreshold;
  float strong_threshold = kDefaultStrongLiveThreshold;  // kAdaptive: see strong()
  std::chrono::milliseconds deadline{20'000};  // from the first frame
  // Frames closer together than this are not from a camera (over 100 frames per second).
  std::chrono::milliseconds min_frame_interval{10};
  // Mean absolute difference per channel (0-255) under which a frame repeats the previous one.
  // Consecutive frames of a real webcam differ by 2.5 or more (NUAA, full rate); the same frame
  // decoded again after JPEG re-encoding by about 0.25.
  double repeat_difference = 1.0;
  // More repeats than this (with no new frame between) and the stream is a still image.
  int max_consecutive_repeats = 15;
  ChallengeOptions challenge;  // under kActive (run by LoginAttempt)
};

enum class LivenessVerdict {
  kPending,  // more frames needed
  kLive,
  kNotLive,     // the passive score says photo or screen
  kStillImage,  // the same picture again and again
  kBadTiming,   // timestamps going backwards or faster than a camera
  kTimedOut,    // the deadline passed before enough frames
};

// "not_live"
[[nodiscard]] std::string_view liveness_verdict_name(LivenessVerdict verdict);
// What a person can do about it: "Hold your own face, not a photo or a screen, to the camera."
[[nodiscard]] std::string_view liveness_verdict_advice(LivenessVerdict verdict);

// Not thread-safe: one per attempt. Uses the caller's scorer, which must outlive it.
class LivenessSession {
 public:
  LivenessSession(LivenessScorer& scorer, LivenessSessionOptions options = {});

  // Adds the frame taken at `timestamp` (any monotonic clock, the same for every frame of the
  // attempt) with the subject's face box as the engine found it (nullopt: no usable face, the
  // frame is not counted). Returns the verdict so far; once it is final, later frames change
  // nothing, except that a live verdict still turns into still_image or bad_timing if later
  // frames repeat or come too fast (an attempt may go on for a challenge). Errors only for
  // internal faults (kInternal, kModelError) and an empty frame (kInvalidArgument).
  [[nodiscard]] Result<LivenessVerdict> add_frame(const Image& frame,
                                                  const std::optional<Box>& face,
                                                  std::chrono::milliseconds timestamp);

  // The scorer for the next frames. A server runs an attempt's frames on whichever worker is
  // free, each with its own scorer (inference state is per thread); the verdict so far is kept.
  void use_scorer(LivenessScorer& scorer) { scorer_ = &scorer; }

  LivenessVerdict verdict() const { return verdict_; }
  int frames_counted() const { return counted_; }
  int repeats() const { return repeats_; }
  // The last frame repeated the one before (it counted for nothing, and must not count for a
  // challenge either).
  bool last_frame_repeated() const { return last_repeated_; }
  // Mean passive score of the counted frames (0 before the first).
  float mean_score() const;
  // Lowest passive score of a counted frame (0 before the first).
  float min_score() const;
  // The passive evidence is strong enough to decide alone (the adaptive policy): the verdict is
  // live, the mean score reaches options.strong_threshold and no counted frame scored under
  // options.threshold (a replayed screen flickers between live and not).
  bool strong() const;
  const std::vector<float>& scores() const { return scores_; }

 private:
  LivenessScorer* scorer_;
  LivenessSessionOptions options_;
  LivenessVerdict verdict_ = LivenessVerdict::kPending;
  std::optional<std::chrono::milliseconds> first_;
  std::optional<std::chrono::milliseconds> last_;
  Image previous_;  // a sample of the last frame (see repeat_sample), for the repeat check
  int previous_width_ = 0;
  int previous_height_ = 0;
  int counted_ = 0;
  int repeats_ = 0;
  int consecutive_repeats_ = 0;
  bool last_repeated_ = false;
  std::vector<float> scores_;
};

}  // namespace facelogin
