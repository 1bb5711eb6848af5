#include "facelogin/replay_eval.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>

namespace facelogin::eval {

ReplaySummary summarise(const std::vector<ReplayOutcome>& outcomes) {
  ReplaySummary s;
  for (const ReplayOutcome& o : outcomes) {
    ++s.sessions;
    const bool challenged = o.challenged;
    s.stepped_up += challenged ? 1 : 0;
    if (o.accepted) {
      ++s.accepted;
      ++(challenged ? s.stepped_up_accepted : s.accepted_without_challenge);
    } else if (o.decided) {
      ++s.refusals[o.reason];
    } else {
      ++s.undecided;
    }
  }
  return s;
}

Result<std::vector<ReplayOutcome>> run_replay_sessions(FaceService& service,
                                                       LivenessScorer& scorer,
                                                       const std::vector<Image>& frames,
                                                       const std::vector<double>& times,
                                                       double fps, const std::string& user,
                                                       const LoginPolicy& policy,
                                                       const ReplayOptions& options) {
  if (frames.empty() || !(fps > 0) || !(options.send_fps > 0) || !(options.every_seconds > 0)) {
    return make_error(ErrorCode::kInvalidArgument,
                      "a replay needs frames, a frame rate and a sending rate above 0");
  }
  if (times.size() != frames.size() || !std::is_sorted(times.begin(), times.end()) ||
      !(times.front() >= 0)) {
    return make_error(ErrorCode::kInvalidArgument,
                      "a replay needs one increasing time per frame, from 0");
  }
  const double duration = times.back() + 1.0 / fps;
  const double interval = 1.0 / options.send_fps;
  const double max_session =
      std::chrono::duration<double>(options.max_session).count();
  std::vector<ReplayOutcome> out;
  for (double start = 0; start < duration; start += options.every_seconds) {
    auto attempt = LoginAttempt::begin(service, &scorer, user, policy);
    if (!attempt) {
      return make_error(attempt.error());
    }
    ReplayOutcome o;
    o.start_seconds = start;
    for (double t = 0; t <= max_session && attempt->state() == AttemptState::kPending;
         t += interval) {
      const double at = std::fmod(start + t, duration);
      // The last frame taken at or before `at`.
      const auto after = std::upper_bound(times.begin(), times.end(), at);
      const auto index = static_cast<std::size_t>(
          std::max<std::ptrdiff_t>(0, std::distance(times.begin(), after) - 1));
      const auto stamp = std::chrono::milliseconds(std::llround(1000 * t));
      auto feedback =
          attempt->add_frame({fmt::format("{:.2f} s", at), frames[index]}, stamp);
      if (!feedback) {
        return make_error(feedback.error());
      }
      ++o.frames;
    }
    o.accepted = attempt->state() == AttemptState::kAccepted;
    o.decided = attempt->state() != AttemptState::kPending;
    o.reason = attempt->reason();
    o.step_up = attempt->step_up();
    o.challenged = attempt->challenge() != nullptr;
    o.challenge_passed =
        attempt->challenge() != nullptr && attempt->challenge()->verdict() == ChallengeVerdict::kPassed;
    if (attempt->liveness().frames_counted() >= policy.liveness.frames_needed) {
      o.passive_mean = attempt->liveness().mean_score();
    }
    out.push_back(std::move(o));
  }
  return out;
}

}  // namespace facelogin::eval
