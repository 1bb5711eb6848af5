#pragma once

// Measuring the active challenge (issue 4): how often a live person who answers the prompts
// passes, and how often a replayed recording gets through, on frames the engine has already
// analysed. The engine work (detection, pose, recognition, passive score) is done once per frame
// by the caller (`facelogin eval challenge`); these functions replay attempts over those
// observations, so thousands of random challenges cost milliseconds.
//
// Live: no recording can answer a random challenge, so live attempts are arranged from real
// frames of one person: frames whose pose (relative to the person's centred pose) shows each
// action are grouped, and an attempt plays centred frames, then frames of the first asked action,
// centred frames again, and so on, 100 ms apart (10 frames per second, as the web app sends).
// Replay: a recording played from a random point, at its own frame rate and looped, as a camera
// that cannot see the prompts would send it.

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "facelogin/challenge.h"
#include "facelogin/image.h"
#include "facelogin/status.h"

namespace facelogin::eval {

// One analysed frame.
struct ObservedFrame {
  std::optional<ChallengeFrame> face;  // nullopt: no usable face
  std::optional<float> live;           // passive liveness score, if scored
};

struct ChallengeTrials {
  int attempts = 0;
  int passed = 0;                         // challenge passed
  int passed_with_passive = 0;            // and the passive mean score reached the threshold
  std::map<std::string, int> refusals;    // challenge verdict name -> attempts
  double mean_seconds_to_pass = 0;        // of passed attempts, from the first frame
};

// Frames of a live recording grouped by what they show, relative to the median pose and size of
// its near-frontal frames.
struct ArrangedPools {
  std::vector<ObservedFrame> centred;
  std::map<ChallengeAction, std::vector<ObservedFrame>> actions;
};

// Groups `frames` (one person, in recording order) by pose. An action's frames go `margin_degrees`
// (or, for size, 10%) beyond the challenge's threshold, as a person who is told "done" only once
// the server saw the move overshoots it. `closer` are frames of the same recording cropped to
// show the face larger (the caller makes them; a recording rarely moves towards the camera); the
// ones with a centred pose make the "closer" group. Errors: kInvalidArgument if a pool is empty (the recording does not show that action).
[[nodiscard]] Result<ArrangedPools> arrange_pools(const std::vector<ObservedFrame>& frames,
                                                  const std::vector<ObservedFrame>& closer,
                                                  const ChallengeOptions& options,
                                                  float margin_degrees = 5.f);

// `frame` enlarged around `face` by `zoom` (a centred crop resized to the frame's size), as the
// camera sees a person who moved closer. Precondition: zoom >= 1, a BGR frame.
[[nodiscard]] Image zoom_on_face(const Image& frame, const Box& face, float zoom);

// `attempts` live attempts with challenges drawn from `seed`; each action answered with
// `frames_per_action` consecutive frames of its pool, each centring with as many centred ones.
[[nodiscard]] ChallengeTrials run_arranged_attempts(const ArrangedPools& pools,
                                                    const ChallengeOptions& options,
                                                    float live_threshold, int attempts,
                                                    std::uint64_t seed,
                                                    int frames_per_action = 4);

// `attempts` replays of `frames` (recorded at `fps`, looped) from random starting points, sent
// every 100 ms for up to `deadline_ms`.
[[nodiscard]] ChallengeTrials run_replay_attempts(const std::vector<ObservedFrame>& frames,
                                                  double fps, const ChallengeOptions& options,
                                                  float live_threshold, int attempts,
                                                  std::uint64_t seed, int deadline_ms = 20'000);

}  // namespace facelogin::eval
