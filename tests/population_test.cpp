// ImpostorPopulation (issue 15): the impostor claims of an enrolled population, kept
// incrementally, and the threshold that holds a target false-match rate on it.

#include "facelogin/population.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "synthetic_faces.h"

namespace facelogin {
namespace {

constexpr std::size_t kDim = 32;

// `count` templates of one person: a centre plus noise; `spread` sets how alike people are
// (a shared component of that weight).
std::vector<std::vector<float>> person(std::mt19937& rng, int count, float shared_weight,
                                       const std::vector<float>& shared) {
  std::normal_distribution<float> g(0.f, 1.f);
  std::vector<float> centre(kDim);
  for (std::size_t i = 0; i < kDim; ++i) centre[i] = g(rng) + shared_weight * shared[i];
  std::vector<std::vector<float>> out;
  for (int k = 0; k < count; ++k) {
    std::vector<float> t(kDim);
    for (std::size_t i = 0; i < kDim; ++i) t[i] = centre[i] + 0.3f * g(rng);
    out.push_back(testing::normalized(t));
  }
  return out;
}

std::vector<float> direction(std::mt19937& rng) {
  std::normal_distribution<float> g(0.f, 1.f);
  std::vector<float> d(kDim);
  for (float& x : d) x = g(rng);
  return d;
}

TEST(ImpostorPopulation, CountsEveryClaimBothWaysAndRemovesExactly) {
  std::mt19937 rng(7);
  const auto shared = direction(rng);
  ImpostorPopulation pop(kDim);
  std::vector<std::vector<std::vector<float>>> people;
  for (int u = 0; u < 6; ++u) {
    people.push_back(person(rng, 3, 0.f, shared));
    pop.set_user(u, people.back());
  }
  // 18 templates, each claimed against the 5 other users.
  EXPECT_EQ(pop.claims(), 18u * 5u);
  EXPECT_EQ(pop.users(), 6u);
  const auto before = pop.estimate(1e-2);

  // Adding a user and removing her again leaves exactly the histogram there was.
  pop.set_user(99, person(rng, 4, 0.f, shared));
  EXPECT_EQ(pop.claims(), 22u * 6u);
  pop.remove_user(99);
  EXPECT_EQ(pop.claims(), 18u * 5u);
  EXPECT_EQ(pop.estimate(1e-2).threshold, before.threshold);

  // And an incremental population equals one computed at once.
  ImpostorPopulation whole(kDim);
  for (int u = 0; u < 6; ++u) whole.set_user(u, people[static_cast<std::size_t>(u)]);
  whole.rebuild();
  EXPECT_EQ(whole.claims(), pop.claims());
  EXPECT_EQ(whole.estimate(1e-2).threshold, before.threshold);
  // Replacing a user's templates replaces her claims.
  pop.set_user(0, people[1]);
  EXPECT_EQ(pop.claims(), 18u * 5u);
}

TEST(ImpostorPopulation, BelowTheMinimumPopulationNothingIsEstimated) {
  std::mt19937 rng(1);
  const auto shared = direction(rng);
  PopulationOptions options;
  options.min_users = 5;
  options.target_fmr = 1e-2;
  ImpostorPopulation pop(kDim, options);
  for (int u = 0; u < 4; ++u) pop.set_user(u, person(rng, 5, 0.f, shared));
  EXPECT_FALSE(pop.estimate().usable);
  EXPECT_FALSE(pop.estimate().threshold);
  EXPECT_FALSE(pop.fmr_at(0.5f));
  pop.set_user(4, person(rng, 5, 0.f, shared));
  EXPECT_TRUE(pop.estimate().usable);
  EXPECT_TRUE(pop.estimate().threshold);
  // Enough people, but 1e-5 lies more than a decade beyond their 100 claims.
  EXPECT_FALSE(pop.estimate(1e-5).usable);
  EXPECT_EQ(pop.estimate(1e-5).method, "too-few-claims");
  EXPECT_EQ(PopulationOptions{}.min_users, 30u);
}

TEST(ImpostorPopulation, LookAlikePeopleRaiseTheThreshold) {
  std::mt19937 rng(3);
  const auto shared = direction(rng);
  ImpostorPopulation strangers(kDim);
  ImpostorPopulation colleagues(kDim);
  for (int u = 0; u < 80; ++u) {
    strangers.set_user(u, person(rng, 5, 0.f, shared));
    colleagues.set_user(u, person(rng, 5, 1.5f, shared));  // a strong common component
  }
  const auto a = strangers.estimate(1e-5);
  const auto b = colleagues.estimate(1e-5);
  ASSERT_TRUE(a.threshold && b.threshold);
  EXPECT_GT(*b.threshold, *a.threshold + 0.1f);
  EXPECT_EQ(a.method, "tail-fit");  // 400 x 79 claims cannot resolve 1e-5 empirically
  // The estimated rate falls as the threshold rises, and is about the target at the estimate.
  const double at = *colleagues.fmr_at(*b.threshold);
  EXPECT_NEAR(std::log10(at), -5.0, 0.2);
  EXPECT_GT(*colleagues.fmr_at(*b.threshold - 0.1f), at);
}

TEST(ImpostorPopulation, TheTailFitPredictsRatesBeyondTheDataOnHeldOutPeople) {
  // Fit on 60 people, check on 60 others from the same population: the rate predicted at the
  // threshold for 1e-3 must match the rate measured there on the others within a factor of 3.
  std::mt19937 rng(11);
  const auto shared = direction(rng);
  ImpostorPopulation fit(kDim);
  ImpostorPopulation held_out(kDim);
  for (int u = 0; u < 60; ++u) fit.set_user(u, person(rng, 5, 1.0f, shared));
  for (int u = 0; u < 60; ++u) held_out.set_user(u, person(rng, 5, 1.0f, shared));
  // 300 x 59 = 17,700 claims: 1e-3 is 17 claims, below the empirical minimum: a tail fit.
  const auto e = fit.estimate(1e-3);
  ASSERT_TRUE(e.threshold);
  EXPECT_EQ(e.method, "tail-fit");
  const auto measured = held_out.fmr_at(*e.threshold);
  ASSERT_TRUE(measured);
  EXPECT_GT(*measured, 1e-3 / 3);
  EXPECT_LT(*measured, 1e-3 * 3);
}

TEST(ImpostorPopulation, SamplesProbesAboveTheClaimBudgetAndStaysConsistent) {
  std::mt19937 rng(5);
  const auto shared = direction(rng);
  PopulationOptions options;
  options.max_claims = 2000;
  ImpostorPopulation pop(kDim, options);
  for (int u = 0; u < 30; ++u) pop.set_user(u, person(rng, 5, 0.5f, shared));
  pop.rebuild();  // 150 x 29 = 4,350 claims in full: about half the probes are sampled
  EXPECT_TRUE(pop.estimate().sampled);
  EXPECT_GT(pop.claims(), 1000u);
  EXPECT_LT(pop.claims(), 3500u);
  const auto claims = pop.claims();
  pop.set_user(100, person(rng, 5, 0.5f, shared));
  pop.remove_user(100);
  EXPECT_EQ(pop.claims(), claims);
}

}  // namespace
}  // namespace facelogin
