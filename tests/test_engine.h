#pragma once

// One Engine per test binary: loading takes about a second, so every test that needs real models
// shares this one (an Engine is immutable and thread-safe; each test makes its own Worker).
// Also the loading of shared photos, so that tests on real faces read them one way.

#include <gtest/gtest.h>

#include <filesystem>
#include <memory>
#include <opencv2/imgcodecs.hpp>
#include <optional>
#include <string>

#include "facelogin/engine.h"
#include "facelogin/image.h"
#include "test_data.h"
#include "vision/cv_image.h"

namespace facelogin::testing {

struct SharedEngine {
  std::shared_ptr<const Engine> engine;  // null when unavailable
  std::string skip_reason;               // why it is null
};

// The engine with the default recogniser and the models of model_dir(), loaded on first use.
inline const SharedEngine& shared_engine() {
  static const SharedEngine shared = [] {
    SharedEngine s;
    const auto dir = model_dir();
    if (!dir) {
      s.skip_reason =
          "model directory not found (set FACELOGIN_MODEL_DIR or run `facelogin "
          "models fetch`): skipping real-face test";
      return s;
    }
    EngineOptions options;
    options.model_dir = *dir;
    auto engine = Engine::load(options);
    if (!engine) {
      s.skip_reason = "models in " + dir->string() +
                      " do not load: skipping real-face test: " + engine.error().to_string();
      return s;
    }
    s.engine = std::move(*engine);
    return s;
  }();
  return shared;
}

// Any image file OpenCV reads (PGM included), as an Image; empty if it cannot be read. For test
// data only: untrusted input goes through load_image_file().
inline Image read_test_image(const std::filesystem::path& path) {
  return vision::from_mat(cv::imread(path.string(), cv::IMREAD_COLOR));
}

}  // namespace facelogin::testing

// Skips the current test with a clear message when the models are absent; otherwise declares
// `var` as the shared engine (std::shared_ptr<const Engine>).
#define FACELOGIN_REQUIRE_ENGINE(var)                               \
  const auto& var##_shared = ::facelogin::testing::shared_engine(); \
  if (!var##_shared.engine) {                                       \
    GTEST_SKIP() << var##_shared.skip_reason;                       \
  }                                                                 \
  const std::shared_ptr<const ::facelogin::Engine> var = var##_shared.engine
