#pragma once

// Measuring a liveness policy as an attacker would (issue 16): a recording is played as the
// camera of a login, the attacker starting it at every whole second, and each login runs to its
// decision through the real LoginAttempt (recognition, passive liveness, replay checks, and the
// challenge under the active and adaptive policies). The same runs on live recordings give the
// share of live logins that pass on passive evidence alone, and that are asked for a challenge
// (which a recording cannot answer: live people who can are measured by `eval challenge`).

#include <chrono>
#include <map>
#include <string>
#include <vector>

#include "facelogin/image.h"
#include "facelogin/login_attempt.h"
#include "facelogin/status.h"

namespace facelogin::eval {

struct ReplayOutcome {
  double start_seconds = 0;    // where in the recording the camera started
  bool accepted = false;
  bool decided = false;        // false: the session ran out of time without a decision
  std::string reason;          // of a refusal
  bool challenged = false;     // the attempt asked for the challenge (active, or stepped up)
  std::string step_up;         // LoginAttempt::step_up(): why the adaptive policy asked
  bool challenge_passed = false;
  int frames = 0;              // sent before the decision
  float passive_mean = 0.f;    // the passive window's mean score (0 if it never completed)
};

struct ReplaySummary {
  int sessions = 0;
  int accepted = 0;
  int accepted_without_challenge = 0;
  int stepped_up = 0;             // asked for the challenge (active, or adaptive's step-up)
  int stepped_up_accepted = 0;    // ... and accepted after it
  std::map<std::string, int> refusals;  // reason -> sessions
  int undecided = 0;
};

[[nodiscard]] ReplaySummary summarise(const std::vector<ReplayOutcome>& outcomes);

struct ReplayOptions {
  // Frames sent per second (the web app sends about 8-10).
  double send_fps = 10;
  // Seconds between the starting points of two sessions.
  double every_seconds = 1;
  // A session that is still undecided after this much camera time is given up (the attempt's
  // own deadlines decide long before: 20 s passive, 8 s per challenge step).
  std::chrono::milliseconds max_session{60'000};
};

// One login session per starting point of `frames` (taken at `times`, seconds from the first,
// increasing; the recording lasts until the last time plus 1/fps and is looped as an attacker
// would loop a replay), each a fresh LoginAttempt::begin(service, &scorer, user, policy) fed a
// frame every 1/send_fps seconds: the frame the recording shows at that moment. Errors: those of
// the service (kNotFound for an unknown user) and kInvalidArgument (no frames, times not one per
// frame or not increasing, fps <= 0).
[[nodiscard]] Result<std::vector<ReplayOutcome>> run_replay_sessions(
    FaceService& service, LivenessScorer& scorer, const std::vector<Image>& frames,
    const std::vector<double>& times, double fps, const std::string& user,
    const LoginPolicy& policy, const ReplayOptions& options = {});

}  // namespace facelogin::eval
