#pragma once

// The active liveness challenge (signals 2 and 3 of issue 4): at the start of an attempt the
// server picks, at random, a short sequence of actions (turn the head left or right, look up,
// move closer); the person answers them, in order, each within its time; the frames' head pose
// and face size (from the five landmarks) say whether they did. A recording cannot know which
// sequence it will be asked for, and one that shows a different move first is refused. A frame
// shows the one head move it goes furthest past its threshold for (turned well left and a little
// up: left), so one combined movement cannot answer two prompts; "closer" is shown only without
// a head move (the face's size changes as the head turns).
//
// Every frame that counts towards an action must show the claimed person (the caller says
// whether it matched), so the face that answers is the face that logs in.
//
// Signal 3, the 3-D check: between the centred frame and the frame that completes a turn or a
// look up, the eye and mouth corners of a flat picture move by one homography, and the nose tip
// with them; on a real head the nose tip leaves that plane (parallax). The residual of the nose
// tip after the homography of the other four landmarks, in inter-eye distances, must reach
// ChallengeOptions::min_parallax on every such step. How the figures were chosen:
// docs/liveness.md.
//
// Blinking is not an action: YuNet's five landmarks give eye centres, not lids.

#include <array>
#include <chrono>
#include <optional>
#include <string_view>
#include <vector>

#include "facelogin/engine.h"
#include "facelogin/geometry.h"
#include "facelogin/status.h"

namespace facelogin {

enum class ChallengeAction { kTurnLeft, kTurnRight, kLookUp, kMoveCloser };
inline constexpr std::array kChallengeActions = {
    ChallengeAction::kTurnLeft, ChallengeAction::kTurnRight, ChallengeAction::kLookUp,
    ChallengeAction::kMoveCloser};

// The next action of a sequence from a uniform draw `pick` in [0, 4) for the first action and
// [0, 3) after (each action differs from the one before it).
[[nodiscard]] ChallengeAction next_challenge_action(const std::vector<ChallengeAction>& so_far,
                                                    int pick);

// "turn_left"
[[nodiscard]] std::string_view challenge_action_name(ChallengeAction action);
// "Turn your head to your left."
[[nodiscard]] std::string_view challenge_action_prompt(ChallengeAction action);

struct ChallengeOptions {
  int steps = 3;  // actions per attempt; consecutive actions differ
  // An action shows when the pose or size differs from the centred reference by this much.
  float turn_degrees = 13.f;   // yaw
  float up_degrees = 10.f;     // pitch
  float closer_ratio = 1.2f;   // face width over the reference width
  // Centred: within this of the reference (yaw and pitch) and under neutral_width_ratio of
  // its width. The first reference is any run of frames that agree within it.
  float neutral_degrees = 8.f;
  float neutral_width_ratio = 1.1f;
  // The reference pose of the first centring may be anywhere within these (a camera above or
  // beside the screen shifts it), so that every action stays within the quality gate.
  float max_reference_yaw = 17.f;
  float max_reference_pitch = 22.f;
  int neutral_frames = 2;  // consecutive centred frames before each prompt
  // Consecutive frames of the claimed person showing the asked action to answer it; a step with
  // as many frames showing another action (in any order, not only consecutive) is a wrong move.
  int hold_frames = 2;
  // Time for each prompt, from the frame that showed it to the frame that answers it.
  std::chrono::milliseconds step_time{8'000};
  // Signal 3, in inter-eye distances; 0 turns it off. Real turns on live.webm gave 0.125 or more,
  // a photo tilted by up to 30 degrees 0.037 or less (docs/liveness.md).
  float min_parallax = 0.06f;
  // Login frames may be turned this much further than the quality gate's max_yaw (30), so that
  // a turn past the threshold still gives frames recognition can check.
  float extra_yaw_degrees = 15.f;
};

// What the engine saw of the subject in one frame.
struct ChallengeFrame {
  HeadPose pose;
  Box box;
  Landmarks5 landmarks;
  bool same_person = false;  // the face matched the claimed user
};

enum class ChallengeVerdict {
  kPending,
  kPassed,
  kWrongMove,  // another action than the one asked for, shown: a recording, or a mistake
  kTooSlow,    // a prompt was not answered in time
  kFlat,       // the head turned like a flat picture, not like a head (signal 3)
};

// "wrong_move", "too_slow", "flat_motion"
[[nodiscard]] std::string_view challenge_verdict_name(ChallengeVerdict verdict);
[[nodiscard]] std::string_view challenge_verdict_advice(ChallengeVerdict verdict);

// The nose tip's residual after the homography that maps `from`'s eye and mouth corners onto
// `to`'s, in `to`'s inter-eye distances (signal 3). Near 0 for a flat picture moved in any way;
// a real head turning by 13 degrees or more gives about 0.06-0.2 (docs/liveness.md). Returns
// nullopt for degenerate landmarks (collinear corners or eyes on one point).
[[nodiscard]] std::optional<float> nose_parallax(const Landmarks5& from, const Landmarks5& to);

// Not thread-safe: one per attempt.
class ActiveChallenge {
 public:
  // `steps` random actions from the operating system's random generator.
  // Errors: kInvalidArgument (steps < 1 or other counts below 1), kInternal (no randomness).
  [[nodiscard]] static Result<ActiveChallenge> random(const ChallengeOptions& options);
  // A given sequence (for tests and evaluation). Errors: kInvalidArgument (empty, or counts
  // below 1).
  [[nodiscard]] static Result<ActiveChallenge> with_actions(std::vector<ChallengeAction> actions,
                                                            const ChallengeOptions& options);

  // The next frame at `timestamp` (the attempt's monotonic clock); nullopt when it had no usable
  // face. Once decided, frames change nothing.
  ChallengeVerdict add_frame(const std::optional<ChallengeFrame>& frame,
                             std::chrono::milliseconds timestamp);

  ChallengeVerdict verdict() const { return verdict_; }
  const std::vector<ChallengeAction>& actions() const { return actions_; }
  int steps_done() const { return done_; }
  // The action asked for now; nullopt while the person should centre (and after the end).
  std::optional<ChallengeAction> asked() const;
  // What to tell the person now.
  std::string_view prompt() const;
  // The smallest parallax of the turn and look-up steps so far (for the audit log; nullopt
  // before the first).
  std::optional<float> min_parallax_seen() const { return min_parallax_seen_; }

 private:
  ActiveChallenge(std::vector<ChallengeAction> actions, const ChallengeOptions& options)
      : actions_(std::move(actions)), options_(options) {}

  // How far past its threshold a frame is for `action` (>= 1: it shows the action), against the
  // reference.
  float strength(ChallengeAction action, const ChallengeFrame& frame) const;
  bool centred(const ChallengeFrame& frame) const;
  void add_centring_frame(const ChallengeFrame& frame, std::chrono::milliseconds timestamp);
  void add_acting_frame(const ChallengeFrame& frame);

  std::vector<ChallengeAction> actions_;
  ChallengeOptions options_;
  ChallengeVerdict verdict_ = ChallengeVerdict::kPending;
  int done_ = 0;
  bool acting_ = false;
  std::optional<ChallengeFrame> reference_;  // the centred pose, size and landmarks
  std::vector<ChallengeFrame> run_;          // consecutive centred frames
  std::optional<std::chrono::milliseconds> prompted_;
  int held_ = 0;          // consecutive frames showing the asked action alone
  int wrong_frames_ = 0;  // frames of this step showing another action
  float step_parallax_ = 0.f;  // the largest parallax of the held frames of this step
  std::optional<float> min_parallax_seen_;
};

}  // namespace facelogin
