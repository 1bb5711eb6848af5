// Replaying challenge attempts over analysed frames (include/facelogin/challenge_eval.h).

#include "facelogin/challenge_eval.h"

#include <algorithm>
#include <array>
#include <chrono>
#include <random>

#include <fmt/format.h>
#include <opencv2/imgproc.hpp>

namespace facelogin::eval {
namespace {

float median(std::vector<float> v) {
  std::nth_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(v.size() / 2), v.end());
  return v[v.size() / 2];
}

// A sequence as ActiveChallenge::random draws it (each action differs from the previous one),
// from a seeded generator so that a run can be repeated.
std::vector<ChallengeAction> draw_actions(int steps, std::mt19937_64& rng) {
  std::vector<ChallengeAction> actions;
  while (static_cast<int>(actions.size()) < steps) {
    const int choices = actions.empty() ? 4 : 3;
    actions.push_back(
        next_challenge_action(actions, std::uniform_int_distribution<int>(0, choices - 1)(rng)));
  }
  return actions;
}

// Feeds one attempt's frames (timestamps in ms) and records how it ended.
void run_one(const std::vector<std::pair<const ObservedFrame*, int>>& frames,
             const std::vector<ChallengeAction>& actions, const ChallengeOptions& options,
             float live_threshold, ChallengeTrials& trials, double& seconds_sum) {
  auto challenge = ActiveChallenge::with_actions(actions, options);
  ++trials.attempts;
  if (!challenge) {
    ++trials.refusals["invalid_options"];
    return;
  }
  double live_sum = 0;
  int live_n = 0;
  for (const auto& [frame, ms] : frames) {
    if (frame->face && frame->face->same_person && frame->live) {
      live_sum += *frame->live;
      ++live_n;
    }
    const ChallengeVerdict v = challenge->add_frame(frame->face, std::chrono::milliseconds(ms));
    if (v == ChallengeVerdict::kPending) {
      continue;
    }
    if (v == ChallengeVerdict::kPassed) {
      ++trials.passed;
      seconds_sum += (ms - frames.front().second) / 1000.0;
      if (live_n > 0 && live_sum / live_n >= live_threshold) {
        ++trials.passed_with_passive;
      }
    } else {
      ++trials.refusals[std::string(challenge_verdict_name(v))];
    }
    return;
  }
  ++trials.refusals["timed_out"];
}

void finish(ChallengeTrials& trials, double seconds_sum) {
  trials.mean_seconds_to_pass = trials.passed > 0 ? seconds_sum / trials.passed : 0;
}

}  // namespace

Result<ArrangedPools> arrange_pools(const std::vector<ObservedFrame>& frames,
                                    const std::vector<ObservedFrame>& closer,
                                    const ChallengeOptions& options, float margin_degrees) {
  std::vector<float> yaws;
  std::vector<float> pitches;
  std::vector<float> widths;
  for (const ObservedFrame& f : frames) {
    if (f.face && f.face->same_person && std::abs(f.face->pose.yaw) <= options.max_reference_yaw &&
        std::abs(f.face->pose.pitch) <= options.max_reference_pitch) {
      yaws.push_back(f.face->pose.yaw);
      pitches.push_back(f.face->pose.pitch);
      widths.push_back(f.face->box.width);
    }
  }
  if (yaws.empty()) {
    return make_error(ErrorCode::kInvalidArgument,
                      "the live recording has no near-frontal frames of the enrolled person");
  }
  const float yaw0 = median(yaws);
  const float pitch0 = median(pitches);
  const float width0 = median(widths);
  ArrangedPools pools;
  const float centred = options.neutral_degrees / 2.f;
  for (const ObservedFrame& f : frames) {
    if (!f.face || !f.face->same_person) {
      continue;
    }
    const float dyaw = f.face->pose.yaw - yaw0;
    const float dpitch = f.face->pose.pitch - pitch0;
    const float size = f.face->box.width / width0;
    if (std::abs(dyaw) <= centred && std::abs(dpitch) <= centred && size > 0.95f &&
        size < 1.05f) {
      pools.centred.push_back(f);
    } else if (dyaw >= options.turn_degrees + margin_degrees && dpitch < options.up_degrees) {
      pools.actions[ChallengeAction::kTurnLeft].push_back(f);
    } else if (-dyaw >= options.turn_degrees + margin_degrees && dpitch < options.up_degrees) {
      pools.actions[ChallengeAction::kTurnRight].push_back(f);
    } else if (dpitch >= options.up_degrees + margin_degrees &&
               std::abs(dyaw) < options.turn_degrees - margin_degrees) {
      pools.actions[ChallengeAction::kLookUp].push_back(f);
    }
  }
  for (const ObservedFrame& f : closer) {
    // Moving closer, not turning: the head's pose stays centred.
    if (f.face && f.face->same_person &&
        std::abs(f.face->pose.yaw - yaw0) <= options.neutral_degrees &&
        std::abs(f.face->pose.pitch - pitch0) <= options.neutral_degrees &&
        f.face->box.width >= (options.closer_ratio + 0.1f) * width0) {
      pools.actions[ChallengeAction::kMoveCloser].push_back(f);
    }
  }
  if (pools.centred.empty()) {
    return make_error(ErrorCode::kInvalidArgument, "the live recording has no centred frames");
  }
  for (ChallengeAction a : kChallengeActions) {
    if (pools.actions[a].empty()) {
      return make_error(ErrorCode::kInvalidArgument,
                        fmt::format("the live recording has no frames showing {}",
                                    challenge_action_name(a)));
    }
  }
  return pools;
}

Image zoom_on_face(const Image& frame, const Box& face, float zoom) {
  cv::Mat src(frame.height, frame.width, CV_8UC3, const_cast<std::uint8_t*>(frame.bgr.data()));
  const int w = static_cast<int>(static_cast<float>(frame.width) / zoom);
  const int h = static_cast<int>(static_cast<float>(frame.height) / zoom);
  const Point2 c = face.center();
  const int x = std::clamp(static_cast<int>(c.x) - w / 2, 0, frame.width - w);
  const int y = std::clamp(static_cast<int>(c.y) - h / 2, 0, frame.height - h);
  cv::Mat out;
  cv::resize(src(cv::Rect(x, y, w, h)), out, src.size(), 0, 0, cv::INTER_LINEAR);
  Image image;
  image.width = out.cols;
  image.height = out.rows;
  image.bgr.assign(out.data, out.data + out.total() * 3);
  return image;
}

ChallengeTrials run_arranged_attempts(const ArrangedPools& pools, const ChallengeOptions& options,
                                      float live_threshold, int attempts, std::uint64_t seed,
                                      int frames_per_action) {
  std::mt19937_64 rng(seed);
  ChallengeTrials trials;
  double seconds_sum = 0;
  constexpr int kFrameMs = 100;
  for (int i = 0; i < attempts; ++i) {
    const auto actions = draw_actions(options.steps, rng);
    std::vector<std::pair<const ObservedFrame*, int>> frames;
    // `n` consecutive frames of a pool from a random point (the pools keep recording order).
    auto play = [&](const std::vector<ObservedFrame>& pool, int n) {
      const std::size_t start = std::uniform_int_distribution<std::size_t>(0, pool.size() - 1)(rng);
      for (int k = 0; k < n; ++k) {
        const int ms = static_cast<int>(frames.size()) * kFrameMs;
        frames.emplace_back(&pool[(start + static_cast<std::size_t>(k)) % pool.size()], ms);
      }
    };
    const int centring = std::max(options.neutral_frames + 1, 3);
    play(pools.centred, centring);
    for (ChallengeAction a : actions) {
      play(pools.actions.at(a), frames_per_action);
      play(pools.centred, centring);
    }
    run_one(frames, actions, options, live_threshold, trials, seconds_sum);
  }
  finish(trials, seconds_sum);
  return trials;
}

ChallengeTrials run_replay_attempts(const std::vector<ObservedFrame>& frames, double fps,
                                    const ChallengeOptions& options, float live_threshold,
                                    int attempts, std::uint64_t seed, int deadline_ms) {
  std::mt19937_64 rng(seed);
  ChallengeTrials trials;
  double seconds_sum = 0;
  if (frames.empty() || fps <= 0) {
    return trials;
  }
  // The recording plays at its own rate; the client sends a frame every 100 ms, as the web app.
  constexpr int kSendMs = 100;
  const int count = deadline_ms / kSendMs;
  for (int i = 0; i < attempts; ++i) {
    const auto actions = draw_actions(options.steps, rng);
    const std::size_t start =
        std::uniform_int_distribution<std::size_t>(0, frames.size() - 1)(rng);
    std::vector<std::pair<const ObservedFrame*, int>> played;
    for (int k = 0; k < count; ++k) {
      const auto index = start + static_cast<std::size_t>(k * kSendMs * fps / 1000.0);
      played.emplace_back(&frames[index % frames.size()], k * kSendMs);
    }
    run_one(played, actions, options, live_threshold, trials, seconds_sum);
  }
  finish(trials, seconds_sum);
  return trials;
}

}  // namespace facelogin::eval
