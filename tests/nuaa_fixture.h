#pragma once

// A FaceService on a temporary SQLite store, with the real engine and a liveness scorer, for the
// tests that play whole NUAA recordings (login_attempt_test, enrollment_session_test). Skips,
// saying why, without ../shared or the models.

#include <gtest/gtest.h>

#include <filesystem>
#include <memory>
#include <string>

#include "facelogin/face_service.h"
#include "facelogin/liveness.h"
#include "facelogin/store.h"
#include "test_data.h"
#include "test_engine.h"

namespace facelogin::testing {

class NuaaServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    FACELOGIN_REQUIRE_DATA(data);
    FACELOGIN_REQUIRE_ENGINE(engine);
    nuaa_ = data / "nuaa";
    if (!std::filesystem::is_directory(nuaa_)) {
      GTEST_SKIP() << nuaa_ << " not found: skipping real-face test";
    }
    auto models = LivenessModels::load(*model_dir());
    if (!models) {
      GTEST_SKIP() << "liveness models unavailable: " << models.error().message();
    }
    auto scorer = (*models)->make_scorer();
    ASSERT_TRUE(scorer.has_value()) << scorer.error().to_string();
    scorer_ = std::move(*scorer);
    dir_ = make_temp_dir("facelogin-nuaa");
    SqliteStoreOptions options;
    options.key = std::string(32, '\x33');
    auto store = open_sqlite_store(dir_ / "facelogin.db", options);
    ASSERT_TRUE(store.has_value()) << store.error().to_string();
    store_ = std::move(*store);
    auto worker = engine->make_worker();
    ASSERT_TRUE(worker.has_value()) << worker.error().to_string();
    service_ = std::make_unique<FaceService>(engine, std::move(*worker), *store_);
  }

  void TearDown() override {
    service_.reset();
    store_.reset();
    if (!dir_.empty()) {
      std::error_code ec;
      std::filesystem::remove_all(dir_, ec);
    }
  }

  std::filesystem::path nuaa_;
  std::filesystem::path dir_;
  std::unique_ptr<Store> store_;
  std::unique_ptr<FaceService> service_;
  std::unique_ptr<LivenessScorer> scorer_;
};

}  // namespace facelogin::testing
