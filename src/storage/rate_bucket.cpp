// The token bucket arithmetic of the start rate limit, shared by every AuthStore backend.

#include <algorithm>
#include <cmath>

#include "facelogin/auth_store.h"

namespace facelogin {

RateDecision take_rate_token(std::optional<RateBucket>& bucket, std::int64_t now_ms,
                             int per_minute) {
  const double capacity = per_minute;
  const double per_ms = per_minute / 60'000.0;
  if (!bucket) {
    bucket = RateBucket{capacity, now_ms};
  } else {
    // Clocks of several servers differ a little: time going backwards refills nothing.
    const auto elapsed = static_cast<double>(std::max<std::int64_t>(0, now_ms - bucket->updated_ms));
    bucket->tokens = std::min(capacity, bucket->tokens + elapsed * per_ms);
    bucket->updated_ms = std::max(bucket->updated_ms, now_ms);
  }
  RateDecision decision;
  if (bucket->tokens >= 1.0) {
    bucket->tokens -= 1.0;
    decision.allowed = true;
    return decision;
  }
  decision.retry_after_s =
      std::max(1, static_cast<int>(std::ceil((1.0 - bucket->tokens) / per_ms / 1000.0)));
  return decision;
}

}  // namespace facelogin
