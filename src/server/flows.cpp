#include "server/flows.h"

#include <algorithm>
#include <cmath>

namespace facelogin::server {

bool RateLimiter::allow(const std::string& key, int* retry_after_s) {
  const auto now = SteadyClock::now();
  std::lock_guard lock(mu_);
  if (buckets_.size() > 100'000) {
    // Forget full buckets so that many addresses cannot grow the map without bound.
    std::erase_if(buckets_, [&](const auto& entry) {
      return now - entry.second.updated > std::chrono::minutes(1);
    });
  }
  auto [it, inserted] = buckets_.try_emplace(key);
  Bucket& b = it->second;
  const double rate = per_minute_ / 60.0;  // tokens per second
  if (inserted) {
    b.tokens = per_minute_;
  } else {
    const double elapsed = std::chrono::duration<double>(now - b.updated).count();
    b.tokens = std::min<double>(per_minute_, b.tokens + elapsed * rate);
  }
  b.updated = now;
  if (b.tokens >= 1.0) {
    b.tokens -= 1.0;
    return true;
  }
  *retry_after_s = std::max(1, static_cast<int>(std::ceil((1.0 - b.tokens) / rate)));
  return false;
}

}  // namespace facelogin::server
