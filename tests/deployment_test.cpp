// eval::simulate_deployment (issue 15): enrolment as FaceService decides it, the population-aware
// operating threshold, and every claim decided at it; on synthetic templates and on a few NUAA
// people.

#include <fmt/format.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "facelogin/eval.h"
#include "facelogin/image.h"
#include "test_data.h"
#include "test_engine.h"

#include "synthetic_faces.h"

namespace facelogin::eval {
namespace {

namespace fs = std::filesystem;
constexpr std::size_t kDim = 32;

// Synthetic people: a random centre per person (plus `shared_weight` times a direction common to
// everyone, which makes people alike), each image the centre plus a little noise.
class Synthetic {
 public:
  explicit Synthetic(unsigned seed, float shared_weight = 0.f, std::size_t dim = kDim)
      : rng_(seed), weight_(shared_weight), dim_(dim) {
    shared_ = random_direction();
  }

  std::vector<float> centre() {
    auto c = random_direction();
    for (std::size_t i = 0; i < dim_; ++i) c[i] += weight_ * shared_[i];
    return c;
  }

  std::vector<float> face(const std::vector<float>& centre, float noise = 0.25f) {
    std::normal_distribution<float> g(0.f, 1.f);
    std::vector<float> t(dim_);
    for (std::size_t i = 0; i < dim_; ++i) t[i] = centre[i] + noise * g(rng_);
    return testing::normalized(t);
  }

  // `count` images of a new person called `name`.
  void add_person(std::vector<DeploymentImage>& images, const std::string& name, int count) {
    const auto c = centre();
    for (int k = 0; k < count; ++k) {
      images.push_back({fmt::format("{}/{}.jpg", name, 100 + k), face(c), ""});
    }
  }

 private:
  std::vector<float> random_direction() {
    std::normal_distribution<float> g(0.f, 1.f);
    std::vector<float> d(dim_);
    for (float& x : d) x = g(rng_);
    return d;
  }

  std::mt19937 rng_;
  float weight_;
  std::size_t dim_;
  std::vector<float> shared_;
};

DeploymentOptions options(std::size_t enrol, float model_threshold) {
  DeploymentOptions o;
  o.enrol = enrol;
  o.model_threshold = model_threshold;
  o.same_person_threshold = model_threshold - 0.1f;
  o.population.target_fmr = 1e-3;
  o.population.min_users = 5;  // small synthetic populations (the product waits for 30)
  return o;
}

const DeploymentPerson& person(const DeploymentReport& r, const std::string& name) {
  for (const auto& p : r.persons) {
    if (p.name == name) return p;
  }
  ADD_FAILURE() << name << " not in the report";
  return r.persons.front();
}

TEST(SimulateDeployment, EnrolsEachPersonsFirstImagesAndClaimsTheRestAgainstEveryone) {
  Synthetic s(1);
  std::vector<DeploymentImage> images;
  for (int p = 0; p < 8; ++p) s.add_person(images, fmt::format("person{}", p), 5);
  images.push_back({"person3/zz.png", std::nullopt, "no_face"});
  images.push_back({"person4/zz.png", std::nullopt, "poor_quality:too_dark"});
  std::reverse(images.begin(), images.end());  // the order given does not matter

  auto r = simulate_deployment(images, kDim, options(2, 0.8f));
  ASSERT_TRUE(r) << r.error().to_string();
  EXPECT_EQ(r->people, 8u);
  EXPECT_EQ(r->images, 42u);
  EXPECT_EQ(r->usable_images, 40u);
  EXPECT_EQ(r->unusable.at("no_face"), 1u);
  EXPECT_EQ(r->unusable.at("poor_quality:too_dark"), 1u);
  EXPECT_EQ(r->enrolled_people, 8u);
  EXPECT_EQ(r->enrolled_templates, 16u);
  EXPECT_TRUE(r->refused.empty());
  // 3 probes per person, each against the 7 others (impostor) and its own (genuine).
  EXPECT_EQ(r->probes, 24u);
  EXPECT_EQ(r->at_operating.impostor_claims, 24u * 7u);
  EXPECT_EQ(r->at_operating.genuine_claims, 24u);
  EXPECT_EQ(r->at_model.impostor_claims, 24u * 7u);
  EXPECT_EQ(r->at_operating.identification_probes, 24u);
  EXPECT_EQ(r->at_operating.genuine_identification_probes, 24u);
  // Strangers in 32 dimensions never reach 0.8; one person's images always do.
  EXPECT_EQ(r->at_model.false_accepts, 0u);
  EXPECT_EQ(r->at_model.false_rejects, 0u);
  EXPECT_EQ(r->at_model.false_identifications, 0u);
  EXPECT_EQ(r->at_model.identification_misses, 0u);
  // 8 people, 16 templates x 7 others = 112 claims: usable, and the recogniser's threshold is
  // far above every impostor, so it stays the operating one.
  EXPECT_TRUE(r->estimate.usable);
  EXPECT_EQ(r->estimate.users, 8u);
  EXPECT_EQ(r->estimate.claims, 112u);
  EXPECT_FLOAT_EQ(r->operating_threshold, 0.8f);
  ASSERT_TRUE(r->predicted_fmr_model);
  EXPECT_LT(*r->predicted_fmr_model, 1e-3);
  // The enrolled images are the first two in name order.
  const auto& p3 = person(*r, "person3");
  EXPECT_EQ(p3.status, "enrolled");
  EXPECT_EQ(p3.images, 6u);
  EXPECT_EQ(p3.usable, 5u);
  EXPECT_EQ(p3.probes, 3u);
}

TEST(SimulateDeployment, RefusesDuplicatesMixedUpEnrolmentsAndTooFewImagesAsEnrolWould) {
  Synthetic s(2);
  std::vector<DeploymentImage> images;
  for (int p = 0; p < 5; ++p) s.add_person(images, fmt::format("p{}", p), 4);
  // "p0_again" is p0 under another name: refused as a duplicate of p0, its images probe p0.
  for (int k = 0; k < 4; ++k) {
    DeploymentImage copy = images[static_cast<std::size_t>(k)];
    copy.key = fmt::format("p0_again/{}.jpg", k);
    images.push_back(copy);
  }
  // "q_mixed": two different people in one enrolment.
  const auto a = s.centre();
  const auto b = s.centre();
  images.push_back({"q_mixed/1.jpg", s.face(a), ""});
  images.push_back({"q_mixed/2.jpg", s.face(b), ""});
  images.push_back({"q_mixed/3.jpg", s.face(a), ""});
  // "r_few": one usable image where two are needed.
  images.push_back({"r_few/1.jpg", s.face(s.centre()), ""});
  images.push_back({"r_few/2.jpg", std::nullopt, "several_faces"});

  auto r = simulate_deployment(images, kDim, options(2, 0.8f));
  ASSERT_TRUE(r) << r.error().to_string();
  EXPECT_EQ(r->enrolled_people, 5u);
  EXPECT_EQ(person(*r, "p0_again").status, "duplicate_face");
  EXPECT_NE(person(*r, "p0_again").detail.find("p0"), std::string::npos);
  EXPECT_EQ(person(*r, "q_mixed").status, "different_people");
  EXPECT_EQ(person(*r, "r_few").status, "too_few_images");
  EXPECT_EQ(r->refused.at("duplicate_face"), 1u);
  EXPECT_EQ(r->refused.at("different_people"), 1u);
  EXPECT_EQ(r->refused.at("too_few_images"), 1u);
  // Every usable image of a person not enrolled is a probe against everyone enrolled: p0's
  // copies are accepted as p0 (4 false accepts) and identified as p0 (4 false identifications).
  EXPECT_EQ(person(*r, "p0_again").probes, 4u);
  EXPECT_EQ(r->probes, 5u * 2u + 4u + 3u + 1u);
  EXPECT_EQ(r->at_model.impostor_claims, 5u * 2u * 4u + (4u + 3u + 1u) * 5u);
  EXPECT_EQ(r->at_model.genuine_claims, 10u);
  EXPECT_EQ(r->at_model.false_accepts, 4u);
  EXPECT_EQ(r->at_model.false_identifications, 4u);
  EXPECT_EQ(r->at_model.genuine_identification_probes, 10u);

  // Without the duplicate check (not the product's rule), the copy is enrolled as a person.
  auto o = options(2, 0.8f);
  o.check_duplicates = false;
  auto unchecked = simulate_deployment(images, kDim, o);
  ASSERT_TRUE(unchecked) << unchecked.error().to_string();
  EXPECT_EQ(person(*unchecked, "p0_again").status, "enrolled");
  EXPECT_EQ(unchecked->enrolled_people, 6u);
}

TEST(SimulateDeployment, LookAlikePeopleGetAHigherOperatingThresholdThatLowersTheirFmr) {
  // People with a strong common component (impostor scores about 0.5 +- 0.05), and a recogniser
  // threshold calibrated on strangers.
  constexpr std::size_t kWide = 256;
  Synthetic s(3, 1.0f, kWide);
  std::vector<DeploymentImage> images;
  for (int p = 0; p < 60; ++p) s.add_person(images, fmt::format("p{}", 100 + p), 8);
  auto o = options(3, 0.56f);
  o.same_person_threshold = 0.3f;
  o.population.target_fmr = 1e-3;  // resolvable from about 10 people on (max_decades)
  // Without the duplicate check: with it, no two enrolled people score above the threshold in
  // force, which censors the very tail the estimate needs (docs/models.md); that effect is
  // measured by the CLI runs, not asserted here.
  o.check_duplicates = false;
  auto r = simulate_deployment(images, kWide, o);
  ASSERT_TRUE(r) << r.error().to_string();
  ASSERT_TRUE(r->estimate.usable);
  ASSERT_TRUE(r->estimate.threshold);
  EXPECT_EQ(r->enrolled_people, 60u);
  EXPECT_GT(r->operating_threshold, 0.56f) << "the estimate raised the threshold";
  EXPECT_FLOAT_EQ(r->operating_threshold, *r->estimate.threshold);
  EXPECT_GT(r->at_model.enrolled_fmr, 1e-2) << "the recogniser's threshold does not hold here";
  EXPECT_LT(r->at_operating.fmr, r->at_model.fmr);
  EXPECT_LE(r->at_operating.false_identifications, r->at_model.false_identifications);
  EXPECT_GE(r->at_operating.fnmr, r->at_model.fnmr);
  ASSERT_TRUE(r->predicted_fmr_operating);
  EXPECT_NEAR(std::log10(*r->predicted_fmr_operating), -3.0, 0.3);
  // Not asserted close to the prediction: the duplicate check censors the enrolled population
  // (no two enrolled people reach the threshold in force), so the estimate sees too few
  // look-alikes. Here the measured rate is within 30x of it.
  EXPECT_LT(r->at_operating.enrolled_fmr, 1e-4 * 30);
  ASSERT_TRUE(r->measured_threshold_for_target);
}

TEST(SimulateDeployment, HeldOutRunsEstimateOnSomePeopleAndMeasureOnTheOthers) {
  Synthetic s(4);
  std::vector<DeploymentImage> images;
  for (int p = 0; p < 20; ++p) s.add_person(images, fmt::format("p{}", 100 + p), 4);
  auto o = options(2, 0.8f);
  o.calibrate_people = 8;
  o.seed = 42;
  auto r = simulate_deployment(images, kDim, o);
  ASSERT_TRUE(r) << r.error().to_string();
  ASSERT_EQ(r->enrolled_people, 20u);
  EXPECT_TRUE(r->held_out);
  EXPECT_EQ(r->estimate.users, 8u);
  EXPECT_EQ(r->measured_people, 12u);
  EXPECT_EQ(std::count_if(r->persons.begin(), r->persons.end(),
                          [](const DeploymentPerson& p) { return p.calibration; }),
            8);
  // Only the 12 others' probes, each against the 11 other measured people.
  EXPECT_EQ(r->measured_probes, 12u * 2u);
  EXPECT_EQ(r->at_operating.impostor_claims, 12u * 2u * 11u);
  EXPECT_EQ(r->at_operating.genuine_claims, 24u);
  // Another seed draws other people; the same seed the same.
  auto again = simulate_deployment(images, kDim, o);
  ASSERT_TRUE(again);
  o.seed = 43;
  auto other = simulate_deployment(images, kDim, o);
  ASSERT_TRUE(other);
  std::vector<std::string> first, second, third;
  for (std::size_t i = 0; i < r->persons.size(); ++i) {
    if (r->persons[i].calibration) first.push_back(r->persons[i].name);
    if (again->persons[i].calibration) second.push_back(again->persons[i].name);
    if (other->persons[i].calibration) third.push_back(other->persons[i].name);
  }
  EXPECT_EQ(first, second);
  EXPECT_NE(first, third);
}

TEST(SimulateDeployment, ThreadsChangeNoCount) {
  Synthetic s(5, 0.5f);
  std::vector<DeploymentImage> images;
  for (int p = 0; p < 30; ++p) s.add_person(images, fmt::format("p{}", 100 + p), 5);
  auto o = options(2, 0.7f);
  o.same_person_threshold = 0.3f;
  o.threads = 1;
  auto one = simulate_deployment(images, kDim, o);
  o.threads = 3;
  auto three = simulate_deployment(images, kDim, o);
  ASSERT_TRUE(one && three);
  for (auto [a, b] : {std::pair{one->at_operating, three->at_operating},
                      std::pair{one->at_model, three->at_model}}) {
    EXPECT_EQ(a.impostor_claims, b.impostor_claims);
    EXPECT_EQ(a.false_accepts, b.false_accepts);
    EXPECT_EQ(a.false_rejects, b.false_rejects);
    EXPECT_EQ(a.false_identifications, b.false_identifications);
    EXPECT_EQ(a.identification_misses, b.identification_misses);
  }
  EXPECT_EQ(one->measured_threshold_for_target, three->measured_threshold_for_target);
}

TEST(SimulateDeployment, RejectsWhatCannotBeADeployment) {
  Synthetic s(6);
  std::vector<DeploymentImage> images;
  EXPECT_FALSE(simulate_deployment(images, kDim, options(1, 0.8f)));  // no images
  s.add_person(images, "alone", 3);
  auto one = simulate_deployment(images, kDim, options(1, 0.8f));
  ASSERT_FALSE(one);
  EXPECT_EQ(one.error().code(), ErrorCode::kInvalidArgument);
  EXPECT_NE(one.error().message().find("at least 2"), std::string::npos) << one.error().message();
  s.add_person(images, "other", 3);
  EXPECT_TRUE(simulate_deployment(images, kDim, options(1, 0.8f)));
  EXPECT_FALSE(simulate_deployment(images, kDim, options(0, 0.8f)));  // enrol 0
  EXPECT_FALSE(simulate_deployment(images, kDim + 1, options(1, 0.8f)));  // wrong size
  auto held = options(1, 0.8f);
  held.calibrate_people = 1;  // leaves one person to measure on
  EXPECT_FALSE(simulate_deployment(images, kDim, held));
  auto bad_target = options(1, 0.8f);
  bad_target.population.target_fmr = 0;
  EXPECT_FALSE(simulate_deployment(images, kDim, bad_target));
}

TEST(SimulateDeployment, FiveNuaaPeopleEnrolAndAreToldApart) {
  FACELOGIN_REQUIRE_DATA(data);
  FACELOGIN_REQUIRE_ENGINE(engine);
  const fs::path nuaa = data / "nuaa/ClientRaw";
  if (!fs::is_directory(nuaa)) {
    GTEST_SKIP() << nuaa << " not found: skipping real-face test";
  }
  auto keys = list_identity_images(nuaa);
  ASSERT_TRUE(keys) << keys.error().to_string();
  auto worker = engine->make_worker();
  ASSERT_TRUE(worker) << worker.error().to_string();
  // The first 8 frames (name order) of 5 people, analysed as enrolment analyses a frame.
  std::vector<DeploymentImage> images;
  std::map<std::string, int> taken;
  for (const auto& key : *keys) {
    const std::string who(key_identity(key));
    if (taken.size() == 5 && !taken.contains(who)) break;
    if (taken[who]++ >= 8) continue;
    auto image = load_image_file(nuaa / key);
    ASSERT_TRUE(image) << key << ": " << image.error().to_string();
    auto analysis = (*worker)->analyze(*image, AnalyzeOptions{});
    ASSERT_TRUE(analysis) << analysis.error().to_string();
    DeploymentImage d{key, std::nullopt, std::string(frame_outcome_name(analysis->outcome))};
    if (analysis->face) {
      d.face = analysis->face->embedding;
      d.unusable.clear();
    }
    images.push_back(std::move(d));
  }
  ASSERT_EQ(images.size(), 40u);
  const RecognizerSpec& spec = engine->recognizer();
  DeploymentOptions o;
  o.enrol = 3;
  o.model_threshold = spec.cosine_threshold();
  o.same_person_threshold = spec.same_person_threshold;
  auto r = simulate_deployment(images, static_cast<std::size_t>(recognizer_embedding_size(spec)), o);
  ASSERT_TRUE(r) << r.error().to_string();
  EXPECT_GE(r->usable_images, 30u) << "the quality gate passes most webcam frames";
  EXPECT_GE(r->operating_threshold, o.model_threshold);
  // Every probe is claimed against every enrolled person, its own included when enrolled.
  const DeploymentRates& at = r->at_operating;
  EXPECT_EQ(at.impostor_claims + at.genuine_claims, r->probes * r->enrolled_people);
  EXPECT_GT(at.genuine_claims, 10u);
  // Consecutive frames of one person match each other.
  EXPECT_LE(at.fnmr, 0.1);
  EXPECT_LE(at.fmr, r->at_model.fmr);
}

}  // namespace
}  // namespace facelogin::eval
