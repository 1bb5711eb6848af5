// The population-aware operating threshold (issue 15) through FaceService, on a real store with
// synthetic templates of the default recogniser's size: people who look alike raise it, their
// removal lowers it again, and below the minimum population the recogniser's own threshold holds.

#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include "facelogin/face_service.h"
#include "facelogin/models.h"
#include "facelogin/store.h"
#include "synthetic_faces.h"
#include "test_data.h"
#include "test_engine.h"

namespace facelogin {
namespace {

namespace fs = std::filesystem;

class PopulationThresholdTest : public ::testing::Test {
 protected:
  void SetUp() override {
    FACELOGIN_REQUIRE_ENGINE(engine);
    engine_ = engine;
    dir_ = testing::make_temp_dir("facelogin-population");
    SqliteStoreOptions options;
    options.key = std::string(32, '\x33');
    auto store = open_sqlite_store(dir_ / "facelogin.db", options);
    ASSERT_TRUE(store) << store.error().to_string();
    store_ = std::move(*store);
    auto worker = engine->make_worker();
    ASSERT_TRUE(worker) << worker.error().to_string();
    // A small population for a test: 5 people suffice, and 1e-2 is resolvable on their claims
    // (the product's defaults, 30 people and 1e-5, are tested in population_test.cpp).
    GalleryOptions gallery;
    gallery.population.min_users = 5;
    gallery.population.target_fmr = 1e-2;
    ServiceOptions service_options;
    service_options.gallery = std::make_shared<GalleryCache>(gallery);
    gallery_ = service_options.gallery;
    service_ = std::make_unique<FaceService>(engine, std::move(*worker), *store_, service_options);
    dim_ = static_cast<std::size_t>(recognizer_embedding_size(engine->recognizer()));
    shared_ = testing::random_direction(dim_, rng_);
  }

  void TearDown() override {
    service_.reset();
    store_.reset();
    if (!dir_.empty()) {
      std::error_code ec;
      fs::remove_all(dir_, ec);
    }
  }

  void enrol(const std::string& name, float likeness, int count = 3) {
    ASSERT_TRUE(store_->create_user(
        name, testing::synthetic_person(engine_->recognizer().id, shared_, likeness, count, rng_)))
        << name;
  }

  float decision() {
    auto t = service_->decision_threshold();
    EXPECT_TRUE(t) << t.error().to_string();
    return t ? *t : std::nanf("");
  }

  std::shared_ptr<const Engine> engine_;
  fs::path dir_;
  std::unique_ptr<Store> store_;
  std::unique_ptr<FaceService> service_;
  std::shared_ptr<GalleryCache> gallery_;
  std::size_t dim_ = 0;
  std::mt19937 rng_{42};
  std::vector<float> shared_;
};

TEST_F(PopulationThresholdTest, LookAlikesRaiseItTheirRemovalLowersItAndFewPeopleKeepTheModels) {
  const float base = service_->threshold();
  for (int u = 0; u < 4; ++u) {
    enrol("stranger" + std::to_string(u), 0.f);
  }
  // Four people: too few for an estimate; the recogniser's threshold holds.
  EXPECT_EQ(decision(), base);
  auto status = service_->population_status();
  ASSERT_TRUE(status);
  EXPECT_FALSE(status->estimate.usable);
  EXPECT_EQ(status->estimate.users, 4u);

  // A fifth stranger: an estimate, far below the base threshold, which is kept (never lowered).
  enrol("stranger4", 0.f);
  status = service_->population_status();
  ASSERT_TRUE(status);
  ASSERT_TRUE(status->estimate.usable);
  ASSERT_TRUE(status->estimate.threshold);
  EXPECT_LT(*status->estimate.threshold, base);
  EXPECT_EQ(decision(), base);

  // Six people who look alike (their templates score about 0.85 against each other's).
  for (int u = 0; u < 6; ++u) {
    enrol("twin" + std::to_string(u), 0.92f);
  }
  const float raised = decision();
  EXPECT_GT(raised, base + 0.02f);
  status = service_->population_status();
  ASSERT_TRUE(status);
  EXPECT_EQ(status->operating_threshold, raised);
  ASSERT_TRUE(status->fmr_at_base);
  EXPECT_GT(*status->fmr_at_base, 1e-2);  // at the base threshold they would match each other

  // They leave: the threshold comes down again.
  for (int u = 0; u < 6; ++u) {
    ASSERT_TRUE(store_->remove_user("twin" + std::to_string(u)).ok());
  }
  EXPECT_EQ(decision(), base);

  // Switched off, the base threshold holds whatever the people.
  for (int u = 0; u < 6; ++u) {
    enrol("again" + std::to_string(u), 0.92f);
  }
  auto worker = engine_->make_worker();
  ASSERT_TRUE(worker);
  ServiceOptions off;
  off.population_threshold = false;
  off.gallery = gallery_;
  FaceService plain(engine_, std::move(*worker), *store_, off);
  EXPECT_EQ(*plain.decision_threshold(), base);
  EXPECT_GT(decision(), base);
}

}  // namespace
}  // namespace facelogin
