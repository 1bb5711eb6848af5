// Verification metrics over similarity scores: cross-validated accuracy, ROC AUC, operating
// points at a target FMR and DET curve points.

#include <fmt/core.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>
#include <numeric>

#include "facelogin/eval.h"

namespace facelogin::eval {
namespace {

constexpr float kInf = std::numeric_limits<float>::infinity();

Status check_scores(std::span<const float> scores, std::string_view what) {
  for (std::size_t i = 0; i < scores.size(); ++i) {
    if (std::isnan(scores[i]) || scores[i] == kInf) {
      return Status(ErrorCode::kInvalidArgument,
                    fmt::format("{} score {} is {}: scores must be finite or -infinity", what, i,
                                std::isnan(scores[i]) ? "NaN" : "+infinity"));
    }
  }
  return Status::Ok();
}

// A threshold strictly above `lo` and at most `hi` (lo < hi), near their middle, so that a
// threshold learnt on training scores does not sit on one of them.
float threshold_between(float lo, float hi) {
  if (lo == -kInf) {
    return hi;
  }
  const float mid =
      static_cast<float>(0.5 * static_cast<double>(lo) + 0.5 * static_cast<double>(hi));
  return mid > lo ? mid : hi;
}

// The threshold of OperatingPoint for k allowed false matches among `desc` (sorted descending
// or, for index k, partitioned by nth_element around k).
float threshold_for_k(std::span<const float> desc_kth_partitioned, std::size_t k) {
  if (k >= desc_kth_partitioned.size()) {
    return std::numeric_limits<float>::lowest();
  }
  return std::nextafter(desc_kth_partitioned[k], kInf);
}

std::uint64_t allowed_false_matches(double target_fmr, std::size_t n) {
  // The absolute slack absorbs the rounding of target * n (1e-3 * 3000 must give 3, not 2).
  return static_cast<std::uint64_t>(std::floor(target_fmr * static_cast<double>(n) + 1e-6));
}

std::uint64_t count_below(std::span<const float> values, float threshold) {
  return static_cast<std::uint64_t>(
      std::count_if(values.begin(), values.end(), [threshold](float v) { return v < threshold; }));
}

struct Labelled {
  float score;
  bool same;
};

// The lowest threshold maximising accuracy on `train` (sorted by score), as documented in
// cross_validated_accuracy.
float best_threshold(const std::vector<Labelled>& train) {
  std::size_t correct = 0;
  for (const Labelled& l : train) {
    correct += l.same ? 1 : 0;  // accept all: every same pair is right
  }
  std::size_t best_correct = 0;
  float best = 0.f;
  bool have = false;
  // "Accept all" is a candidate only if no training score is -infinity (a threshold of -infinity
  // would accept those, and no threshold here ever does).
  if (!train.empty() && train.front().score != -kInf) {
    best_correct = correct;
    best = train.front().score;
    have = true;
  }
  std::size_t i = 0;
  while (i < train.size()) {
    const float v = train[i].score;
    // Move the threshold above every score equal to v.
    while (i < train.size() && train[i].score == v) {
      if (train[i].same) {
        --correct;
      } else {
        ++correct;
      }
      ++i;
    }
    const float t =
        i < train.size() ? threshold_between(v, train[i].score) : std::nextafter(v, kInf);
    if (!have || correct > best_correct) {
      best_correct = correct;
      best = t;
      have = true;
    }
  }
  return best;
}

Status check_sets(std::span<const float> genuine, std::span<const float> impostor,
                  std::string_view what) {
  if (genuine.empty() || impostor.empty()) {
    return Status(ErrorCode::kInvalidArgument,
                  fmt::format("{} needs at least one genuine and one impostor score", what));
  }
  if (Status s = check_scores(genuine, "genuine"); !s.ok()) {
    return s;
  }
  return check_scores(impostor, "impostor");
}

Status check_targets(std::span<const double> target_fmrs) {
  for (double t : target_fmrs) {
    if (!(t > 0.0 && t <= 1.0)) {
      return Status(ErrorCode::kInvalidArgument, fmt::format("target FMR {} is outside (0, 1]", t));
    }
  }
  return Status::Ok();
}

// The functions below take both score sets sorted ascending.

std::size_t count_at_least(std::span<const float> asc, float t) {
  return asc.size() -
         static_cast<std::size_t>(std::lower_bound(asc.begin(), asc.end(), t) - asc.begin());
}
std::size_t count_below_sorted(std::span<const float> asc, float t) {
  return static_cast<std::size_t>(std::lower_bound(asc.begin(), asc.end(), t) - asc.begin());
}

// OperatingPoint's threshold for k allowed false matches: the next float above the (k+1)-th
// highest impostor score.
float threshold_sorted(std::span<const float> imp_asc, std::uint64_t k) {
  if (k >= imp_asc.size()) {
    return std::numeric_limits<float>::lowest();
  }
  return std::nextafter(imp_asc[imp_asc.size() - 1 - static_cast<std::size_t>(k)], kInf);
}

OperatingPoint point_sorted(std::span<const float> gen_asc, std::span<const float> imp_asc,
                            double target) {
  OperatingPoint p;
  p.target_fmr = target;
  p.impostor_count = imp_asc.size();
  p.genuine_count = gen_asc.size();
  const std::uint64_t k = allowed_false_matches(target, imp_asc.size());
  p.resolvable = k >= 1;
  p.threshold = threshold_sorted(imp_asc, k);
  p.false_matches = count_at_least(imp_asc, p.threshold);
  p.fmr = static_cast<double>(p.false_matches) / static_cast<double>(imp_asc.size());
  p.fnmr = static_cast<double>(count_below_sorted(gen_asc, p.threshold)) /
           static_cast<double>(gen_asc.size());
  return p;
}

double auc_sorted(std::span<const float> gen_asc, std::span<const float> imp_asc) {
  // Twice the Mann-Whitney U, kept in integers so that it is exact (at most 2 * 1e4 * 1.5e7).
  std::uint64_t twice_u = 0;
  std::size_t below = 0;      // impostors < current genuine score
  std::size_t not_above = 0;  // impostors <= current genuine score
  for (float v : gen_asc) {
    while (below < imp_asc.size() && imp_asc[below] < v) {
      ++below;
    }
    not_above = std::max(not_above, below);
    while (not_above < imp_asc.size() && imp_asc[not_above] <= v) {
      ++not_above;
    }
    twice_u += 2 * static_cast<std::uint64_t>(below) + (not_above - below);
  }
  return static_cast<double>(twice_u) /
         (2.0 * static_cast<double>(gen_asc.size()) * static_cast<double>(imp_asc.size()));
}

double eer_sorted(std::span<const float> gen_asc, std::span<const float> imp_asc) {
  // Candidate thresholds: every distinct score, ascending; FMR falls and FNMR rises along them.
  // Take the one where |FMR - FNMR| is smallest and report the mean of the two there.
  const double ng = static_cast<double>(gen_asc.size());
  const double ni = static_cast<double>(imp_asc.size());
  double best_gap = std::numeric_limits<double>::infinity();
  double best = 0.5;
  std::size_t gi = 0;  // genuine scores < t
  std::size_t ii = 0;  // impostor scores < t
  while (gi < gen_asc.size() || ii < imp_asc.size()) {
    const float t = gi == gen_asc.size()   ? imp_asc[ii]
                    : ii == imp_asc.size() ? gen_asc[gi]
                                           : std::min(gen_asc[gi], imp_asc[ii]);
    const double fnmr = static_cast<double>(gi) / ng;
    const double fmr = 1.0 - static_cast<double>(ii) / ni;
    if (std::abs(fmr - fnmr) < best_gap) {
      best_gap = std::abs(fmr - fnmr);
      best = 0.5 * (fmr + fnmr);
    }
    if (fnmr >= fmr) {
      break;  // past the crossing: the gap only grows from here
    }
    while (gi < gen_asc.size() && gen_asc[gi] == t) {
      ++gi;
    }
    while (ii < imp_asc.size() && imp_asc[ii] == t) {
      ++ii;
    }
  }
  return best;
}

std::vector<CurvePoint> curve_sorted(std::span<const float> gen_asc, std::span<const float> imp_asc,
                                     int points_per_decade) {
  const std::size_t n = imp_asc.size();
  const double nd = static_cast<double>(n);
  // Allowed false matches for FMR 0 and 1/N, then for FMRs 10^(j / points_per_decade) above
  // 1/N (so every decade is among them), up to 1.
  std::vector<std::uint64_t> ks{0, 1};
  const double lo = std::log10(1.0 / nd);
  for (int j = static_cast<int>(std::floor(lo * points_per_decade)); j <= 0; ++j) {
    const double e = static_cast<double>(j) / points_per_decade;
    if (e > lo) {
      ks.push_back(allowed_false_matches(std::pow(10.0, e), n));
    }
  }
  ks.push_back(n);
  std::sort(ks.begin(), ks.end());
  ks.erase(std::unique(ks.begin(), ks.end()), ks.end());

  std::vector<CurvePoint> curve;
  curve.reserve(ks.size());
  for (std::uint64_t k : ks) {
    const float t = threshold_sorted(imp_asc, k);
    if (!curve.empty() && curve.back().threshold == t) {
      continue;
    }
    curve.push_back(CurvePoint{
        static_cast<double>(count_at_least(imp_asc, t)) / nd,
        static_cast<double>(count_below_sorted(gen_asc, t)) / static_cast<double>(gen_asc.size()),
        t});
  }
  return curve;
}

}  // namespace

Result<CrossValidation> cross_validated_accuracy(std::span<const Pair> pairs,
                                                 std::span<const float> scores) {
  if (pairs.size() != scores.size()) {
    return make_error(ErrorCode::kInvalidArgument,
                      fmt::format("{} pairs but {} scores", pairs.size(), scores.size()));
  }
  if (Status s = check_scores(scores, "pair"); !s.ok()) {
    return make_error(s);
  }
  int folds = 0;
  for (const Pair& p : pairs) {
    if (p.fold < 0) {
      return make_error(ErrorCode::kInvalidArgument, "a pair has a negative fold index");
    }
    folds = std::max(folds, p.fold + 1);
  }
  if (folds < 2) {
    return make_error(ErrorCode::kInvalidArgument, "cross-validation needs at least two folds");
  }
  std::vector<std::size_t> fold_size(static_cast<std::size_t>(folds), 0);
  for (const Pair& p : pairs) {
    ++fold_size[static_cast<std::size_t>(p.fold)];
  }
  for (int f = 0; f < folds; ++f) {
    if (fold_size[static_cast<std::size_t>(f)] == 0) {
      return make_error(ErrorCode::kInvalidArgument, fmt::format("fold {} has no pairs", f));
    }
  }

  CrossValidation result;
  std::vector<Labelled> train;
  train.reserve(pairs.size());
  for (int f = 0; f < folds; ++f) {
    train.clear();
    for (std::size_t k = 0; k < pairs.size(); ++k) {
      if (pairs[k].fold != f) {
        train.push_back(Labelled{scores[k], pairs[k].same});
      }
    }
    std::sort(train.begin(), train.end(),
              [](const Labelled& a, const Labelled& b) { return a.score < b.score; });
    const float t = best_threshold(train);
    std::size_t correct = 0;
    for (std::size_t k = 0; k < pairs.size(); ++k) {
      if (pairs[k].fold == f && (scores[k] >= t) == pairs[k].same) {
        ++correct;
      }
    }
    result.fold_threshold.push_back(t);
    result.fold_accuracy.push_back(static_cast<double>(correct) /
                                   static_cast<double>(fold_size[static_cast<std::size_t>(f)]));
  }
  const double n = static_cast<double>(folds);
  result.mean_accuracy =
      std::accumulate(result.fold_accuracy.begin(), result.fold_accuracy.end(), 0.0) / n;
  double sq = 0.0;
  for (double a : result.fold_accuracy) {
    sq += (a - result.mean_accuracy) * (a - result.mean_accuracy);
  }
  result.std_accuracy = std::sqrt(sq / (n - 1.0));
  return result;
}

Result<double> roc_auc(std::span<const float> genuine, std::span<const float> impostor) {
  if (Status s = check_sets(genuine, impostor, "ROC AUC"); !s.ok()) {
    return make_error(s);
  }
  std::vector<float> g(genuine.begin(), genuine.end());
  std::vector<float> imp(impostor.begin(), impostor.end());
  std::sort(g.begin(), g.end());
  std::sort(imp.begin(), imp.end());
  return auc_sorted(g, imp);
}

Result<std::vector<OperatingPoint>> operating_points(std::span<const float> genuine,
                                                     std::span<const float> impostor,
                                                     std::span<const double> target_fmrs) {
  if (Status s = check_targets(target_fmrs); !s.ok()) {
    return make_error(s);
  }
  if (Status s = check_sets(genuine, impostor, "operating points"); !s.ok()) {
    return make_error(s);
  }
  const std::size_t n = impostor.size();
  std::vector<float> work(impostor.begin(), impostor.end());

  // Largest k first: after nth_element at k, the k highest scores are in [0, k), so a smaller
  // k only needs to partition that prefix.
  std::vector<std::size_t> order(target_fmrs.size());
  std::iota(order.begin(), order.end(), 0);
  std::sort(order.begin(), order.end(),
            [&](std::size_t a, std::size_t b) { return target_fmrs[a] > target_fmrs[b]; });
  std::vector<OperatingPoint> points(target_fmrs.size());
  std::size_t prefix = n;
  for (std::size_t idx : order) {
    OperatingPoint& p = points[idx];
    p.target_fmr = target_fmrs[idx];
    p.impostor_count = n;
    p.genuine_count = genuine.size();
    const std::uint64_t k = allowed_false_matches(p.target_fmr, n);
    p.resolvable = k >= 1;
    if (k < n) {
      std::nth_element(work.begin(), work.begin() + static_cast<std::ptrdiff_t>(k),
                       work.begin() + static_cast<std::ptrdiff_t>(prefix), std::greater<>());
      prefix = static_cast<std::size_t>(k);
      p.threshold = threshold_for_k(work, static_cast<std::size_t>(k));
      const float kth = work[static_cast<std::size_t>(k)];
      // Scores above the (k+1)-th are all in the prefix; those equal to it are rejected.
      p.false_matches = static_cast<std::uint64_t>(
          std::count_if(work.begin(), work.begin() + static_cast<std::ptrdiff_t>(k),
                        [kth](float v) { return v > kth; }));
    } else {
      p.threshold = threshold_for_k(work, static_cast<std::size_t>(k));
      p.false_matches = n - count_below(impostor, p.threshold);
    }
    p.fmr = static_cast<double>(p.false_matches) / static_cast<double>(n);
    p.fnmr = static_cast<double>(count_below(genuine, p.threshold)) /
             static_cast<double>(genuine.size());
  }
  return points;
}

Result<std::vector<CurvePoint>> det_curve(std::span<const float> genuine,
                                          std::span<const float> impostor, int points_per_decade) {
  if (points_per_decade < 1 || points_per_decade > 1000) {
    return make_error(
        ErrorCode::kInvalidArgument,
        fmt::format("points per decade must be in 1..1000, not {}", points_per_decade));
  }
  if (Status s = check_sets(genuine, impostor, "a DET curve"); !s.ok()) {
    return make_error(s);
  }
  std::vector<float> g(genuine.begin(), genuine.end());
  std::vector<float> imp(impostor.begin(), impostor.end());
  std::sort(g.begin(), g.end());
  std::sort(imp.begin(), imp.end());
  return curve_sorted(g, imp, points_per_decade);
}

Result<ScoreSummary> summarize_scores(std::span<const float> genuine,
                                      std::span<const float> impostor,
                                      std::span<const double> target_fmrs, int points_per_decade) {
  if (points_per_decade < 1 || points_per_decade > 1000) {
    return make_error(
        ErrorCode::kInvalidArgument,
        fmt::format("points per decade must be in 1..1000, not {}", points_per_decade));
  }
  if (Status s = check_targets(target_fmrs); !s.ok()) {
    return make_error(s);
  }
  if (Status s = check_sets(genuine, impostor, "a score summary"); !s.ok()) {
    return make_error(s);
  }
  std::vector<float> g(genuine.begin(), genuine.end());
  std::vector<float> imp(impostor.begin(), impostor.end());
  std::sort(g.begin(), g.end());
  std::sort(imp.begin(), imp.end());
  ScoreSummary out;
  out.genuine_count = g.size();
  out.impostor_count = imp.size();
  out.auc = auc_sorted(g, imp);
  out.eer = eer_sorted(g, imp);
  for (double t : target_fmrs) {
    out.operating_points.push_back(point_sorted(g, imp, t));
  }
  out.curve = curve_sorted(g, imp, points_per_decade);
  return out;
}

}  // namespace facelogin::eval
