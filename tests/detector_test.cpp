// The default detector: YuNet's boxes with the five points located again by the 68-point
// network, and how the engine falls back when that network is missing.

#include "vision/detector.h"

#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include <opencv2/imgcodecs.hpp>

#include "facelogin/engine.h"
#include "facelogin/models.h"
#include "test_data.h"

namespace facelogin {
namespace {

namespace fs = std::filesystem;

constexpr char kRefinedId[] = "yunet-landmark68";
constexpr char kYunetId[] = "yunet-2022mar";

float distance(Point2 a, Point2 b) { return std::hypot(a.x - b.x, a.y - b.y); }

// The model directory if it holds every file of `ids` (and their companions), else nullopt.
std::optional<fs::path> models_with(const std::vector<std::string>& ids) {
  const auto dir = testing::model_dir();
  if (!dir) {
    return std::nullopt;
  }
  for (const auto& id : ids) {
    const ModelSpec* spec = find_model(id);
    if (spec == nullptr || !verify_model_file(*dir, *spec).ok()) {
      return std::nullopt;
    }
    if (!spec->companion_model.empty()) {
      const ModelSpec* companion = find_model(spec->companion_model);
      if (companion == nullptr || !verify_model_file(*dir, *companion).ok()) {
        return std::nullopt;
      }
    }
  }
  return dir;
}

TEST(RefinedDetector, KeepsYunetsBoxesAndMovesTheLandmarksOnlySlightly) {
  FACELOGIN_REQUIRE_DATA(data);
  const auto dir = models_with({kRefinedId, kYunetId});
  if (!dir) {
    GTEST_SKIP() << "YuNet or the landmark model is missing: run tools/fetch_models.sh";
  }
  auto refined = vision::create_detector(*find_model(kRefinedId), *dir, {});
  auto plain = vision::create_detector(*find_model(kYunetId), *dir, {});
  ASSERT_TRUE(refined.has_value()) << refined.error().to_string();
  ASSERT_TRUE(plain.has_value()) << plain.error().to_string();

  int faces = 0;
  int moved = 0;
  for (const char* rel :
       {"media/face_recognition/obama.jpg", "media/face_recognition/biden.jpg",
        "nuaa/ClientRaw/0001/0001_00_00_01_0.jpg", "lfw/images/Colin_Powell/Colin_Powell_0001.jpg",
        "lfw/images/Laura_Bush/Laura_Bush_0001.jpg"}) {
    SCOPED_TRACE(rel);
    const cv::Mat frame = cv::imread((data / rel).string(), cv::IMREAD_COLOR);
    ASSERT_FALSE(frame.empty());
    auto a = (*refined)->detect(frame);
    auto b = (*plain)->detect(frame);
    ASSERT_TRUE(a.has_value()) << a.error().to_string();
    ASSERT_TRUE(b.has_value()) << b.error().to_string();
    ASSERT_EQ(a->size(), b->size()) << "the same network finds the boxes";
    ASSERT_FALSE(a->empty());
    const DetectedFace& r = a->front();
    const DetectedFace& p = b->front();
    EXPECT_FLOAT_EQ(r.box.x, p.box.x);
    EXPECT_FLOAT_EQ(r.box.width, p.box.width);
    EXPECT_FLOAT_EQ(r.score, p.score);
    const float iod = distance(p.landmarks[0], p.landmarks[1]);
    ASSERT_GT(iod, 1.f);
    float shift = 0.f;
    for (std::size_t i = 0; i < 5; ++i) {
      shift += distance(r.landmarks[i], p.landmarks[i]) / iod / 5.f;
    }
    // The two models agree on where the features are, not to the pixel.
    EXPECT_LT(shift, 0.25f);
    // Left eye stays left of the right eye, eyes above the mouth.
    EXPECT_LT(r.landmarks[0].x, r.landmarks[1].x);
    EXPECT_LT(r.landmarks[0].y, r.landmarks[3].y);
    ++faces;
    moved += shift > 0.005f ? 1 : 0;
  }
  EXPECT_EQ(moved, faces) << "the landmark network did not run";
}

TEST(RefinedDetector, IsTheEnginesDefaultAndFallsBackToYunetWithoutTheLandmarkModel) {
  const auto dir = models_with({kRefinedId, std::string(default_recognizer_id())});
  if (!dir) {
    GTEST_SKIP() << "models missing: run tools/fetch_models.sh";
  }
  EngineOptions options;
  options.model_dir = *dir;
  auto engine = Engine::load(options);
  ASSERT_TRUE(engine.has_value()) << engine.error().to_string();
  EXPECT_EQ((*engine)->options().detector_id, kRefinedId);

  // The same directory without the landmark model: YuNet alone takes over.
  const fs::path copy = testing::make_temp_dir("facelogin-detector");
  const std::string landmark_file = find_model(find_model(kRefinedId)->companion_model)->file;
  for (const auto& entry : fs::directory_iterator(*dir)) {
    if (entry.path().filename() != landmark_file && entry.is_regular_file()) {
      fs::create_symlink(entry.path(), copy / entry.path().filename());
    }
  }
  options.model_dir = copy;
  auto fallback = Engine::load(options);
  ASSERT_TRUE(fallback.has_value()) << fallback.error().to_string();
  EXPECT_EQ((*fallback)->options().detector_id, kYunetId);

  // Asked for by name, the refined detector says what is missing instead of falling back.
  options.detector_id = kRefinedId;
  auto explicit_choice = Engine::load(options);
  ASSERT_FALSE(explicit_choice.has_value());
  EXPECT_NE(explicit_choice.error().message().find(landmark_file), std::string::npos)
      << explicit_choice.error().to_string();
  fs::remove_all(copy);
}

}  // namespace
}  // namespace facelogin
