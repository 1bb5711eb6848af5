// ImpostorPopulation: see include/facelogin/population.h.

#include "facelogin/population.h"

#include <algorithm>
#include <cmath>

#include "matching/dot.h"

namespace facelogin {
namespace {

constexpr int kBins = 2 * ImpostorScores::kBinsPerUnit;

// Claims the tail is fitted to: 5% of them, at least 30 (fewer cannot fit two parameters with
// any stability) and at most 5,000 (enough; the fit should describe the far tail, not the body).
std::uint64_t tail_claims(std::uint64_t claims) {
  return std::clamp<std::uint64_t>(claims / 20, 30, 5000);
}

// A deterministic coin for sampling probes: the same template is sampled or not in every
// computation, so claims added and later removed are the same claims.
double unit_hash(std::int64_t user, std::size_t index) {
  std::uint64_t x = static_cast<std::uint64_t>(user) * 0x9E3779B97F4A7C15ull + index;
  x ^= x >> 30;
  x *= 0xBF58476D1CE4E5B9ull;
  x ^= x >> 27;
  x *= 0x94D049BB133111EBull;
  x ^= x >> 31;
  return static_cast<double>(x >> 11) * 0x1.0p-53;
}

}  // namespace

ImpostorScores::ImpostorScores() : ImpostorScores(PopulationOptions{}) {}

ImpostorScores::ImpostorScores(PopulationOptions options)
    : options_(options), histogram_(kBins, 0) {}

ImpostorPopulation::ImpostorPopulation(std::size_t dim, PopulationOptions options)
    : dim_(dim), scores_(options) {}

int ImpostorScores::bin_of(float score) {
  const double b = std::floor((static_cast<double>(score) + 1.0) * kBinsPerUnit);
  return static_cast<int>(std::clamp(b, 0.0, static_cast<double>(kBins - 1)));
}

float ImpostorScores::bin_start(int bin) {
  return static_cast<float>(static_cast<double>(bin) / kBinsPerUnit - 1.0);
}

void ImpostorPopulation::recount() {
  scores_.users_ = static_cast<std::size_t>(std::count_if(
      users_.begin(), users_.end(), [](const auto& u) { return !u.second.empty(); }));
  scores_.templates_ = 0;
  for (const auto& [user, t] : users_) {
    scores_.templates_ += t.size();
  }
  scores_.sampled_ = sample_rate_ < 1.0;
}

bool ImpostorPopulation::sampled(std::int64_t user, std::size_t index) const {
  return sample_rate_ >= 1.0 || unit_hash(user, index) < sample_rate_;
}

void ImpostorScores::count(float score, int sign) {
  histogram_[static_cast<std::size_t>(bin_of(score))] += sign;
  claims_ = sign > 0 ? claims_ + 1 : claims_ - 1;
}

void ImpostorPopulation::score_probe(std::int64_t owner, const std::vector<float>& probe,
                                     int sign) {
  const detail::DotFn dot = detail::best_dot_f32();
  for (const auto& [user, targets] : users_) {
    if (user == owner || targets.empty()) {
      continue;
    }
    float best = -1.f;
    for (const auto& t : targets) {
      best = std::max(best, dot(probe.data(), t.data(), dim_));
    }
    scores_.count(best, sign);
  }
}

void ImpostorPopulation::score_against(std::int64_t user,
                                       const std::vector<std::vector<float>>& targets, int sign) {
  if (targets.empty()) {
    return;
  }
  const detail::DotFn dot = detail::best_dot_f32();
  for (const auto& [other, probes] : users_) {
    if (other == user) {
      continue;
    }
    for (std::size_t i = 0; i < probes.size(); ++i) {
      if (!sampled(other, i)) {
        continue;
      }
      float best = -1.f;
      for (const auto& t : targets) {
        best = std::max(best, dot(probes[i].data(), t.data(), dim_));
      }
      scores_.count(best, sign);
    }
  }
}

void ImpostorPopulation::set_user(std::int64_t user, std::vector<std::vector<float>> templates) {
  remove_user(user);
  templates.erase(std::remove_if(templates.begin(), templates.end(),
                                 [this](const auto& t) { return t.size() != dim_; }),
                  templates.end());
  // Her templates as probes against everyone else, then everyone else's against her.
  for (std::size_t i = 0; i < templates.size(); ++i) {
    if (sampled(user, i)) {
      score_probe(user, templates[i], +1);
    }
  }
  score_against(user, templates, +1);
  users_[user] = std::move(templates);
  recount();
}

void ImpostorPopulation::remove_user(std::int64_t user) {
  auto it = users_.find(user);
  if (it == users_.end()) {
    return;
  }
  const std::vector<std::vector<float>> templates = std::move(it->second);
  users_.erase(it);
  // Undo exactly what set_user counted, in the same population without her.
  for (std::size_t i = 0; i < templates.size(); ++i) {
    if (sampled(user, i)) {
      score_probe(user, templates[i], -1);
    }
  }
  score_against(user, templates, -1);
  recount();
}

void ImpostorPopulation::reset(std::map<std::int64_t, std::vector<std::vector<float>>> users) {
  for (auto& [user, templates] : users) {
    templates.erase(std::remove_if(templates.begin(), templates.end(),
                                   [this](const auto& t) { return t.size() != dim_; }),
                    templates.end());
  }
  users_ = std::move(users);
  rebuild();
}

void ImpostorPopulation::rebuild() {
  std::fill(scores_.histogram_.begin(), scores_.histogram_.end(), 0);
  scores_.claims_ = 0;
  recount();
  const double probes = static_cast<double>(templates());
  const double others = static_cast<double>(std::max<std::size_t>(users(), 1) - 1);
  const double full = probes * others;
  const double budget = static_cast<double>(options().max_claims);
  sample_rate_ = full > budget ? budget / full : 1.0;
  for (const auto& [user, templates] : users_) {
    for (std::size_t i = 0; i < templates.size(); ++i) {
      if (sampled(user, i)) {
        score_probe(user, templates[i], +1);
      }
    }
  }
  recount();
}

std::uint64_t ImpostorScores::at_or_above(int bin) const {
  std::int64_t n = 0;
  for (int b = std::max(bin, 0); b < kBins; ++b) {
    n += histogram_[static_cast<std::size_t>(b)];
  }
  return static_cast<std::uint64_t>(std::max<std::int64_t>(n, 0));
}

bool ImpostorScores::usable() const {
  return users_ >= std::max<std::size_t>(options_.min_users, 2) && claims_ > 0;
}

std::optional<ImpostorScores::Tail> ImpostorScores::fit_tail() const {
  const std::uint64_t want = tail_claims(claims_);
  if (claims_ < want) {
    return std::nullopt;
  }
  // The highest bin with at least `want` claims at or above it starts the tail.
  int start = kBins - 1;
  std::uint64_t above = 0;
  for (; start >= 0; --start) {
    above += static_cast<std::uint64_t>(std::max<std::int64_t>(histogram_[static_cast<std::size_t>(start)], 0));
    if (above >= want) {
      break;
    }
  }
  if (start < 0) {
    return std::nullopt;
  }
  const double u = bin_start(start);
  const double width = 1.0 / kBinsPerUnit;
  // Probability-weighted moments of the exceedances y = score - u, from the ascending order
  // statistics (bin centres, each repeated by its count): a0 = mean y, a1 = mean (1 - p) y with
  // plotting positions p = (j - 0.35) / n.
  const double n = static_cast<double>(above);
  double a0 = 0;
  double a1 = 0;
  double j = 0;
  for (int b = start; b < kBins; ++b) {
    const auto c = histogram_[static_cast<std::size_t>(b)];
    if (c <= 0) {
      continue;
    }
    const double y = bin_start(b) + width / 2 - u;
    for (std::int64_t k = 0; k < c; ++k) {
      j += 1;
      const double p = (j - 0.35) / n;
      a0 += y;
      a1 += (1 - p) * y;
    }
  }
  a0 /= n;
  a1 /= n;
  const double denominator = a0 - 2 * a1;
  if (a0 <= 0 || denominator <= 0) {
    return std::nullopt;  // degenerate (every exceedance in one bin)
  }
  // Hosking's k = a0 / (a0 - 2 a1) - 2 is minus the shape xi of the survival function
  // (1 + xi y / sigma)^(-1 / xi).
  Tail tail;
  tail.start = static_cast<float>(u);
  tail.share = n / static_cast<double>(claims_);
  tail.shape = -(a0 / denominator - 2);
  tail.scale = 2 * a0 * a1 / denominator;
  if (!(tail.scale > 0) || !std::isfinite(tail.shape)) {
    return std::nullopt;
  }
  return tail;
}

std::optional<double> ImpostorScores::fmr_at(float threshold) const {
  if (!usable()) {
    return std::nullopt;
  }
  const std::uint64_t above = at_or_above(bin_of(threshold));
  const double empirical = static_cast<double>(above) / static_cast<double>(claims_);
  if (above >= kMinTailClaims) {
    return empirical;
  }
  const auto tail = fit_tail();
  if (!tail || threshold < tail->start) {
    return empirical;
  }
  const double y = threshold - tail->start;
  double survival = 0;
  if (std::abs(tail->shape) < 1e-9) {
    survival = std::exp(-y / tail->scale);
  } else {
    const double base = 1 + tail->shape * y / tail->scale;
    survival = base <= 0 ? 0 : std::pow(base, -1 / tail->shape);
  }
  return tail->share * survival;
}

PopulationEstimate ImpostorScores::estimate(double target_fmr) const {
  PopulationEstimate e;
  e.users = users_;
  e.templates = templates_;
  e.claims = claims_;
  e.sampled = sampled_;
  e.target_fmr = target_fmr;
  e.usable = usable() && target_fmr > 0 && target_fmr < 1;
  if (!e.usable) {
    return e;
  }
  const auto tail = fit_tail();
  if (tail) {
    e.tail_start = tail->start;
    e.tail_share = tail->share;
    e.tail_shape = tail->shape;
    e.tail_scale = tail->scale;
  }
  const double allowed = target_fmr * static_cast<double>(claims_);
  if (allowed < std::pow(10.0, -options_.max_decades)) {
    e.usable = false;
    e.method = "too-few-claims";
    return e;
  }
  if (allowed >= kMinTailClaims) {
    // Enough claims: the lowest bin edge with at most `allowed` claims at or above it.
    std::uint64_t above = 0;
    int b = kBins - 1;
    for (; b >= 0; --b) {
      above += static_cast<std::uint64_t>(std::max<std::int64_t>(histogram_[static_cast<std::size_t>(b)], 0));
      if (static_cast<double>(above) > allowed) {
        break;
      }
    }
    e.threshold = bin_start(b + 1);
    e.method = "empirical";
    return e;
  }
  if (tail) {
    const double ratio = target_fmr / tail->share;  // < 1: the target lies beyond the tail start
    double t = 0;
    if (std::abs(tail->shape) < 1e-9) {
      t = tail->start - tail->scale * std::log(ratio);
    } else {
      t = tail->start + tail->scale / tail->shape * (std::pow(ratio, -tail->shape) - 1);
    }
    e.threshold = static_cast<float>(std::min(t, 1.0));
    e.method = "tail-fit";
    return e;
  }
  // No usable fit: above every impostor claim seen, the most that can be said.
  int top = kBins - 1;
  while (top > 0 && histogram_[static_cast<std::size_t>(top)] <= 0) {
    --top;
  }
  e.threshold = bin_start(std::min(top + 1, kBins - 1));
  e.method = "above-all-claims";
  return e;
}

}  // namespace facelogin
