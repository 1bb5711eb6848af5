#pragma once

// The impostor scores of the people a deployment actually has (issue 15). The store holds, for
// every enrolled user, templates of known different people: each template of one user claimed
// against every other user, with the product's own rule (the best of that user's templates),
// is an impostor claim whose score we can compute. Their distribution says what a threshold's
// false-match rate is *on this population*, where LFW's calibration can be hundreds of times off
// (webcam frames of similar-looking colleagues match each other far more often than press
// photos of strangers).
//
// Scores are kept as a fine histogram (exact counts, so users can be added and removed
// incrementally), never as templates of their own: the estimator holds the templates it was
// given to score new users against, like the gallery does.
//
// The tail: where the population has enough claims at a threshold (at least kMinTailClaims above
// it), the empirical rate is used. Beyond that, a generalised Pareto distribution is fitted to
// the claims above a high quantile (peaks over threshold, probability-weighted moments; Hosking &
// Wallis 1987) and extrapolated. docs/models.md ("Population-aware threshold") says how well that
// predicted the false-match rate on people it never saw.

#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace facelogin {

// What the estimate rests on and what it says, for a target false-match rate.
struct PopulationEstimate {
  std::size_t users = 0;      // with at least one template
  std::size_t templates = 0;  // of those users
  std::uint64_t claims = 0;   // (template, other user) impostor claims scored
  bool sampled = false;       // probes were sampled (a population too large to score fully)
  // Enough people to estimate anything (PopulationOptions::min_users); below that the
  // recogniser's own threshold holds.
  bool usable = false;
  double target_fmr = 0;
  // The threshold whose estimated per-claim false-match rate is target_fmr on this population;
  // nullopt when not usable.
  std::optional<float> threshold;
  // How the threshold was found: "empirical", "tail-fit", "above-all-claims" (no tail could be
  // fitted: just above the highest impostor claim), "too-few-claims" (not usable: the target is
  // further beyond the claims than max_decades), or "" when not usable for want of people.
  std::string method;
  // The fitted tail (diagnostics): its start, its share of the claims, its shape and scale.
  float tail_start = 0;
  double tail_share = 0;
  double tail_shape = 0;
  double tail_scale = 0;
};

struct PopulationOptions {
  double target_fmr = 1e-5;
  // People before the estimate acts. Measured (docs/models.md, "Population-aware threshold"):
  // on 5 to 9 webcam people the estimate swung from 0.778 to 0.898 with the choice of people
  // (FNMR 67% at the high end) and was 1,000x off; fewer than about 30 people say nothing at
  // 1e-5.
  std::size_t min_users = 30;
  // A tail fit is trusted at most this many decades beyond the data: target_fmr x claims must
  // reach 10^-max_decades (a threshold for 1e-5 needs at least 10,000 claims).
  double max_decades = 1.0;
  // Above this many claims a full computation samples probe templates instead (each sampled
  // probe still against every other user), keeping the cost bounded at startup: 5 million
  // claims are about 25 million dot products (a few seconds of one core), far more than the
  // tail fit needs. Measured: facelogin_population_bench, docs/models.md.
  std::uint64_t max_claims = 5'000'000;
};

// The scores of one population at one moment: a histogram of its impostor claims and what they
// say. Cheap to copy (no templates); what a gallery snapshot carries.
class ImpostorScores {
 public:
  ImpostorScores();
  explicit ImpostorScores(PopulationOptions options);

  std::size_t users() const { return users_; }
  std::size_t templates() const { return templates_; }
  std::uint64_t claims() const { return claims_; }
  const PopulationOptions& options() const { return options_; }

  // The threshold holding options().target_fmr (or `target_fmr`) on this population.
  PopulationEstimate estimate() const { return estimate(options_.target_fmr); }
  PopulationEstimate estimate(double target_fmr) const;
  // The estimated per-claim false-match rate at `threshold` (empirical where enough claims lie
  // above it, else the fitted tail); nullopt when not usable.
  std::optional<double> fmr_at(float threshold) const;

  // Histogram resolution: scores in [-1, 1] in bins of 1/kBinsPerUnit.
  static constexpr int kBinsPerUnit = 4096;
  // Claims above a threshold that make its empirical rate trustworthy.
  static constexpr std::uint64_t kMinTailClaims = 25;

 private:
  friend class ImpostorPopulation;
  struct Tail {
    float start = 0;   // u
    double share = 0;  // claims above u / claims
    double shape = 0;  // xi
    double scale = 0;  // sigma
  };
  void count(float score, int sign);
  bool usable() const;
  std::optional<Tail> fit_tail() const;
  // Claims in bins at or above `bin`.
  std::uint64_t at_or_above(int bin) const;
  static int bin_of(float score);
  static float bin_start(int bin);

  PopulationOptions options_;
  std::vector<std::int64_t> histogram_;  // signed while updating; never negative at rest
  std::uint64_t claims_ = 0;
  std::size_t users_ = 0;
  std::size_t templates_ = 0;
  bool sampled_ = false;
};

// The population itself: its users' templates and their scores, updated as users come and go.
// Not thread-safe; scores() is a snapshot to share.
class ImpostorPopulation {
 public:
  // `dim`: the templates' size (all must have it; others are ignored).
  explicit ImpostorPopulation(std::size_t dim, PopulationOptions options = {});

  // Adds (or replaces) a user's templates, unit vectors of dim() floats, and scores them against
  // every other user both ways: O(new templates x all templates) dot products.
  void set_user(std::int64_t user, std::vector<std::vector<float>> templates);
  // Removes a user and every claim made by or against them. Unknown users are ignored.
  void remove_user(std::int64_t user);
  // Replaces every user at once and scores them all, sampling probes above max_claims.
  void reset(std::map<std::int64_t, std::vector<std::vector<float>>> users);
  // Recomputes every claim from the users held now (sampling as reset does).
  void rebuild();

  bool has_user(std::int64_t user) const { return users_.count(user) != 0; }
  std::size_t users() const { return scores_.users(); }
  std::size_t templates() const { return scores_.templates(); }
  std::uint64_t claims() const { return scores_.claims(); }
  std::size_t dim() const { return dim_; }
  const PopulationOptions& options() const { return scores_.options(); }
  const ImpostorScores& scores() const { return scores_; }

  PopulationEstimate estimate() const { return scores_.estimate(); }
  PopulationEstimate estimate(double target_fmr) const { return scores_.estimate(target_fmr); }
  std::optional<double> fmr_at(float threshold) const { return scores_.fmr_at(threshold); }

  static constexpr int kBinsPerUnit = ImpostorScores::kBinsPerUnit;
  static constexpr std::uint64_t kMinTailClaims = ImpostorScores::kMinTailClaims;

 private:
  // Scores one probe template of `owner` against every other user (its best template each) and
  // adds `sign` (+1 or -1) times one claim per user.
  void score_probe(std::int64_t owner, const std::vector<float>& probe, int sign);
  // Claims against `user` (with `targets`) by every other user's sampled templates.
  void score_against(std::int64_t user, const std::vector<std::vector<float>>& targets, int sign);
  bool sampled(std::int64_t user, std::size_t index) const;
  void recount();

  std::size_t dim_;
  std::map<std::int64_t, std::vector<std::vector<float>>> users_;
  ImpostorScores scores_;
  // Share of probe templates scored (1: all); chosen by rebuild(), kept by later updates.
  double sample_rate_ = 1.0;
};

}  // namespace facelogin
