#include <algorithm>
#include <cstdlib>
#include <limits>
#include <numeric>

#include <fmt/format.h>

#include "facelogin/liveness.h"

namespace facelogin {

std::string_view liveness_verdict_name(LivenessVerdict verdict) {
  switch (verdict) {
    case LivenessVerdict::kPending:
      return "pending";
    case LivenessVerdict::kLive:
      return "live";
    case LivenessVerdict::kNotLive:
      return "not_live";
    case LivenessVerdict::kStillImage:
      return "still_image";
    case LivenessVerdict::kBadTiming:
      return "bad_timing";
    case LivenessVerdict::kTimedOut:
      return "timed_out";
  }
  return "unknown";
}

std::string_view liveness_verdict_advice(LivenessVerdict verdict) {
  switch (verdict) {
    case LivenessVerdict::kPending:
      return "Keep looking at the camera.";
    case LivenessVerdict::kLive:
      return "";
    case LivenessVerdict::kNotLive:
      return "Show your own face to the camera, not a photo or a screen.";
    case LivenessVerdict::kStillImage:
      return "The camera sends the same picture again and again: check that it is a real camera.";
    case LivenessVerdict::kBadTiming:
      return "The frames did not arrive as a camera sends them: try again.";
    case LivenessVerdict::kTimedOut:
      return "That took too long: try again.";
  }
  return "";
}

std::string_view liveness_policy_name(LivenessPolicy policy) {
  switch (policy) {
    case LivenessPolicy::kOff:
      return "off";
    case LivenessPolicy::kPassive:
      return "passive";
    case LivenessPolicy::kActive:
      return "active";
    case LivenessPolicy::kAdaptive:
      return "adaptive";
  }
  return "unknown";
}

Result<LivenessPolicy> parse_liveness_policy(std::string_view name) {
  for (LivenessPolicy policy : {LivenessPolicy::kOff, LivenessPolicy::kPassive,
                                LivenessPolicy::kActive, LivenessPolicy::kAdaptive}) {
    if (name == liveness_policy_name(policy)) {
      return policy;
    }
  }
  return make_error(
      ErrorCode::kInvalidArgument,
      fmt::format("unknown liveness policy '{}': use off, passive, active or adaptive", name));
}

namespace {

// Mean absolute difference per channel value of two frames of the same size (else +inf).
double mean_difference(const Image& a, const Image& b) {
  if (a.width != b.width || a.height != b.height || a.bgr.size() != b.bgr.size() || a.bgr.empty()) {
    return std::numeric_limits<double>::infinity();
  }
  std::uint64_t sum = 0;
  for (std::size_t i = 0; i < a.bgr.size(); ++i) {
    sum += static_cast<std::uint64_t>(std::abs(int{a.bgr[i]} - int{b.bgr[i]}));
  }
  return static_cast<double>(sum) / static_cast<double>(a.bgr.size());
}

// Every k-th pixel of every k-th row, so that the kept copy is at most kRepeatSide pixels a side
// (a 4096 px frame would otherwise keep 38 MB per attempt). Pixels are picked, not averaged, so
// the mean difference of two samples estimates that of the frames with the same camera noise
// and the repeat threshold keeps its meaning.
constexpr int kRepeatSide = 320;

Image repeat_sample(const Image& frame) {
  const int step =
      std::max(1, (std::max(frame.width, frame.height) + kRepeatSide - 1) / kRepeatSide);
  Image out;
  out.width = (frame.width + step - 1) / step;
  out.height = (frame.height + step - 1) / step;
  out.bgr.reserve(static_cast<std::size_t>(out.width) * out.height * 3);
  for (int y = 0; y < frame.height; y += step) {
    const std::uint8_t* row = frame.bgr.data() + static_cast<std::size_t>(y) * frame.width * 3;
    for (int x = 0; x < frame.width; x += step) {
      out.bgr.insert(out.bgr.end(), row + 3 * x, row + 3 * x + 3);
    }
  }
  return out;
}

}  // namespace

LivenessSession::LivenessSession(LivenessScorer& scorer, LivenessSessionOptions options)
    : scorer_(&scorer), options_(options) {}

float LivenessSession::mean_score() const {
  if (scores_.empty()) {
    return 0.f;
  }
  return static_cast<float>(std::accumulate(scores_.begin(), scores_.end(), 0.0) /
                            static_cast<double>(scores_.size()));
}

float LivenessSession::min_score() const {
  return scores_.empty() ? 0.f : *std::min_element(scores_.begin(), scores_.end());
}

bool LivenessSession::strong() const {
  return verdict_ == LivenessVerdict::kLive && options_.policy != LivenessPolicy::kOff &&
         mean_score() >= options_.strong_threshold && min_score() >= options_.threshold;
}

Result<LivenessVerdict> LivenessSession::add_frame(const Image& frame,
                                                   const std::optional<Box>& face,
                                                   std::chrono::milliseconds timestamp) {
  last_repeated_ = false;
  // A refusal is final. A live verdict is not: while the attempt goes on (an active challenge),
  // every frame still goes through the timing and repeat checks, so that a client cannot pass
  // the passive window and then send the same picture again and again.
  const bool live_already = verdict_ == LivenessVerdict::kLive;
  if (verdict_ != LivenessVerdict::kPending && !live_already) {
    return verdict_;
  }
  if (frame.empty() ||
      frame.bgr.size() != static_cast<std::size_t>(frame.width) * frame.height * 3) {
    return make_error(ErrorCode::kInvalidArgument, "an attempt's frame must be a BGR image");
  }
  if (!first_) {
    first_ = timestamp;
  } else if (!live_already && timestamp - *first_ > options_.deadline) {
    verdict_ = LivenessVerdict::kTimedOut;
    return verdict_;
  }
  if (last_ && timestamp - *last_ < options_.min_frame_interval) {
    verdict_ = LivenessVerdict::kBadTiming;  // backwards, or faster than a camera
    return verdict_;
  }
  last_ = timestamp;

  Image sample = repeat_sample(frame);
  const bool repeat = frame.width == previous_width_ && frame.height == previous_height_ &&
                      mean_difference(sample, previous_) < options_.repeat_difference;
  previous_ = std::move(sample);
  previous_width_ = frame.width;
  previous_height_ = frame.height;
  if (repeat) {
    ++repeats_;
    last_repeated_ = true;
    if (++consecutive_repeats_ > options_.max_consecutive_repeats) {
      verdict_ = LivenessVerdict::kStillImage;
    }
    return verdict_;
  }
  consecutive_repeats_ = 0;
  if (live_already || !face) {
    return verdict_;
  }
  if (options_.policy != LivenessPolicy::kOff) {
    auto score = scorer_->score(frame, *face);
    if (!score) {
      return make_error(score.error());
    }
    scores_.push_back(score->live);
  }
  if (++counted_ >= options_.frames_needed) {
    verdict_ = options_.policy == LivenessPolicy::kOff || mean_score() >= options_.threshold
                   ? LivenessVerdict::kLive
                   : LivenessVerdict::kNotLive;
  }
  return verdict_;
}

}  // namespace facelogin
