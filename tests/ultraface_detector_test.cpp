// The npm fallback detector (UltraFace + 68-point landmarks) against YuNet on real photos.

#include "vision/ultraface_detector.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <iostream>
#include <limits>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>

#include "facelogin/engine.h"
#include "facelogin/eval.h"
#include "facelogin/models.h"
#include "test_data.h"
#include "vision/cv_image.h"
#include "vision/detector.h"

namespace facelogin {
namespace {

namespace fs = std::filesystem;

constexpr char kFallbackId[] = "ultraface-rfb320-faceplugin";
constexpr char kYunetId[] = "yunet-2022mar";

float iou(const Box& a, const Box& b) {
  const float x1 = std::max(a.x, b.x);
  const float y1 = std::max(a.y, b.y);
  const float x2 = std::min(a.x + a.width, b.x + b.width);
  const float y2 = std::min(a.y + a.height, b.y + b.height);
  const float inter = std::max(0.f, x2 - x1) * std::max(0.f, y2 - y1);
  const float uni = a.area() + b.area() - inter;
  return uni > 0.f ? inter / uni : 0.f;
}

float distance(Point2 a, Point2 b) { return std::hypot(a.x - b.x, a.y - b.y); }

// Mean distance of the five landmarks from the reference's, over the reference's inter-ocular
// distance.
float landmark_error(const Landmarks5& got, const Landmarks5& reference) {
  float sum = 0.f;
  for (std::size_t i = 0; i < got.size(); ++i) {
    sum += distance(got[i], reference[i]);
  }
  return sum / static_cast<float>(got.size()) / distance(reference[0], reference[1]);
}

// Why `id` (and its companion) cannot be used from `dir`, or empty if it can.
std::string missing_reason(const fs::path& dir, const char* id) {
  const ModelSpec* spec = find_model(id);
  if (spec == nullptr) {
    return fmt::format("{} is not in the catalog", id);
  }
  Status s = verify_model_file(dir, *spec);
  if (s.ok() && !spec->companion_model.empty()) {
    const ModelSpec* companion = find_model(spec->companion_model);
    s = companion != nullptr ? verify_model_file(dir, *companion)
                             : Status(ErrorCode::kInternal, "unknown companion model");
  }
  return s.ok() ? std::string() : s.message();
}

// Both detectors, as the engine builds them (default DetectorOptions), or a reason to skip.
struct DetectorPair {
  std::unique_ptr<vision::FaceDetector> fallback;
  std::unique_ptr<vision::FaceDetector> yunet;
  std::string skip_reason;
};

DetectorPair make_detectors() {
  DetectorPair pair;
  const auto dir = testing::model_dir();
  if (!dir) {
    pair.skip_reason = "model directory not found (set FACELOGIN_MODEL_DIR)";
    return pair;
  }
  for (const char* id : {kFallbackId, kYunetId}) {
    if (std::string why = missing_reason(*dir, id); !why.empty()) {
      pair.skip_reason = "run tools/fetch_models.sh: " + why;
      return pair;
    }
  }
  auto fallback = vision::create_detector(*find_model(kFallbackId), *dir, {});
  auto yunet = vision::create_detector(*find_model(kYunetId), *dir, {});
  if (!fallback || !yunet) {
    pair.skip_reason = "a detector does not load";
    ADD_FAILURE() << (fallback ? yunet.error() : fallback.error()).to_string();
    return pair;
  }
  pair.fallback = std::move(*fallback);
  pair.yunet = std::move(*yunet);
  return pair;
}

#define FACELOGIN_REQUIRE_DETECTORS(var) \
  DetectorPair var = make_detectors();   \
  if (!var.fallback) {                   \
    GTEST_SKIP() << var.skip_reason;     \
  }

// The faces that count as people in view: those at least a quarter of the largest's area, as the
// engine's default second_face_area_ratio counts them. Webcam and LFW frames also hold small or
// cut-off faces in the background, which the two detectors find differently.
std::vector<DetectedFace> prominent(const std::vector<DetectedFace>& faces) {
  float largest = 0.f;
  for (const DetectedFace& f : faces) {
    largest = std::max(largest, f.box.area());
  }
  std::vector<DetectedFace> kept;
  for (const DetectedFace& f : faces) {
    if (f.box.area() >= 0.25f * largest) {
      kept.push_back(f);
    }
  }
  return kept;
}

// Photos with one or two people: two portraits, a two-person photo, webcam frames (NUAA
// ClientRaw, 640x480) and LFW crops (250x250, the subject centred; Tony_Blair_0001 also shows a
// second man cut by the left edge).
std::vector<fs::path> comparison_photos(const fs::path& data) {
  std::vector<fs::path> photos = {
      data / "media/face_recognition/obama.jpg",
      data / "media/face_recognition/two_people.jpg",
      data / "media/face_recognition/biden.jpg",
      data / "nuaa/ClientRaw/0001/0001_00_00_01_0.jpg",
  };
  for (const char* dir : {"0002", "0003", "0004", "0005", "0006"}) {
    const fs::path folder = data / "nuaa/ClientRaw" / dir;
    std::error_code ec;
    std::vector<fs::path> frames;
    for (const auto& entry : fs::directory_iterator(folder, ec)) {
      frames.push_back(entry.path());
    }
    std::sort(frames.begin(), frames.end());
    if (!frames.empty()) {
      photos.push_back(frames.front());
    }
  }
  for (const char* key : {"Colin_Powell/Colin_Powell_0001.jpg", "Tony_Blair/Tony_Blair_0001.jpg",
                          "Hugo_Chavez/Hugo_Chavez_0001.jpg", "Laura_Bush/Laura_Bush_0001.jpg",
                          "Jennifer_Capriati/Jennifer_Capriati_0001.jpg"}) {
    photos.push_back(data / "lfw/images" / key);
  }
  return photos;
}

TEST(UltrafaceDetector, FindsTheFacesYunetFindsWithCloseLandmarks) {
  FACELOGIN_REQUIRE_DATA(data);
  FACELOGIN_REQUIRE_DETECTORS(detectors);
  float error_sum = 0.f;
  int matched = 0;
  int photos = 0;
  for (const fs::path& path : comparison_photos(data)) {
    const cv::Mat frame = cv::imread(path.string(), cv::IMREAD_COLOR);
    if (frame.empty()) {
      continue;
    }
    ++photos;
    auto all_reference = detectors.yunet->detect(frame);
    auto all_got = detectors.fallback->detect(frame);
    ASSERT_TRUE(all_reference.has_value()) << all_reference.error().to_string();
    ASSERT_TRUE(all_got.has_value()) << all_got.error().to_string();
    SCOPED_TRACE(path.string());
    for (std::size_t i = 1; i < all_got->size(); ++i) {
      EXPECT_GE((*all_got)[i - 1].score, (*all_got)[i].score) << "faces must come best first";
    }
    const auto reference = prominent(*all_reference);
    const auto got = prominent(*all_got);
    ASSERT_GE(reference.size(), 1u);
    ASSERT_LE(reference.size(), 2u) << "a photo meant to hold one or two faces";
    EXPECT_EQ(got.size(), reference.size());
    for (const DetectedFace& ref : reference) {
      auto best = std::max_element(got.begin(), got.end(),
                                   [&](const DetectedFace& a, const DetectedFace& b) {
                                     return iou(a.box, ref.box) < iou(b.box, ref.box);
                                   });
      ASSERT_NE(best, got.end());
      const float overlap = iou(best->box, ref.box);
      const float error = landmark_error(best->landmarks, ref.landmarks);
      std::cout << fmt::format("{}: IoU {:.2f}, landmark error {:.3f} IOD, score {:.3f}\n",
                               path.filename().string(), overlap, error, best->score);
      EXPECT_GE(overlap, 0.5f);
      EXPECT_LT(error, 0.35f) << "one face's landmarks far from YuNet's";
      EXPECT_GT(best->score, 0.f);
      EXPECT_LE(best->score, 1.f);
      error_sum += error;
      ++matched;
    }
  }
  ASSERT_GE(photos, 5) << "too few of the comparison photos were found under " << data;
  ASSERT_GT(matched, 0);
  const float mean_error = error_sum / static_cast<float>(matched);
  std::cout << fmt::format("mean landmark error {:.3f} IOD over {} faces\n", mean_error, matched);
  EXPECT_LT(mean_error, 0.10f);
}

TEST(UltrafaceDetector, RefusesModelsThatAreNotItsOwn) {
  const ModelSpec* detector = find_model(kFallbackId);
  ASSERT_NE(detector, nullptr);
  const ModelSpec* landmarks = find_model(detector->companion_model);
  ASSERT_NE(landmarks, nullptr);
  EXPECT_EQ(landmarks->kind, ModelKind::kLandmarks);
  const ModelSpec* yunet = find_model(kYunetId);
  ASSERT_NE(yunet, nullptr);

  auto wrong = vision::create_ultraface_detector(*yunet, *landmarks, "/nonexistent", {});
  ASSERT_FALSE(wrong.has_value());
  EXPECT_EQ(wrong.error().code(), ErrorCode::kModelError);
  auto absent = vision::create_ultraface_detector(*detector, *landmarks, "/nonexistent", {});
  ASSERT_FALSE(absent.has_value());
  EXPECT_EQ(absent.error().code(), ErrorCode::kModelError);
}

TEST(UltrafaceDetector, FindsNothingInABlankFrame) {
  FACELOGIN_REQUIRE_DETECTORS(detectors);
  const cv::Mat grey(480, 640, CV_8UC3, cv::Scalar(128, 128, 128));
  auto got = detectors.fallback->detect(grey);
  ASSERT_TRUE(got.has_value()) << got.error().to_string();
  EXPECT_TRUE(got->empty());
}

TEST(UltrafaceDetector, RefusesAFrameThatIsNotBgr) {
  FACELOGIN_REQUIRE_DETECTORS(detectors);
  auto empty = detectors.fallback->detect(cv::Mat());
  ASSERT_FALSE(empty.has_value());
  EXPECT_EQ(empty.error().code(), ErrorCode::kInternal);
  auto grey = detectors.fallback->detect(cv::Mat(48, 64, CV_8UC1, cv::Scalar(0)));
  ASSERT_FALSE(grey.has_value());
  EXPECT_EQ(grey.error().code(), ErrorCode::kInternal);
}

// A face at the frame's left edge: the square crop for the landmarks (wider than the face box)
// extends past the image and is padded; the landmarks still land where YuNet puts them on the
// whole frame.
TEST(UltrafaceDetector, FindsLandmarksOfAFaceCutByTheEdge) {
  FACELOGIN_REQUIRE_DATA(data);
  FACELOGIN_REQUIRE_DETECTORS(detectors);
  const cv::Mat frame =
      cv::imread((data / "media/face_recognition/obama.jpg").string(), cv::IMREAD_COLOR);
  if (frame.empty()) {
    GTEST_SKIP() << "obama.jpg not found";
  }
  auto whole = detectors.yunet->detect(frame);
  ASSERT_TRUE(whole.has_value() && whole->size() == 1u);
  const DetectedFace reference = whole->front();
  // Cut the frame at 10% into the face box: the square reaches past the left edge.
  const int left = static_cast<int>(reference.box.x + reference.box.width * 0.1f);
  const cv::Mat cut = frame.colRange(left, frame.cols).clone();
  auto got = detectors.fallback->detect(cut);
  ASSERT_TRUE(got.has_value()) << got.error().to_string();
  ASSERT_EQ(got->size(), 1u);
  const Box& box = got->front().box;
  EXPECT_LT(box.x + box.width / 2 - box.height / 2, 0.f) << "the square crop does not reach out";
  Landmarks5 shifted = got->front().landmarks;
  for (Point2& p : shifted) {
    p.x += static_cast<float>(left);
  }
  const float error = landmark_error(shifted, reference.landmarks);
  std::cout << fmt::format("cut face: landmark error {:.3f} IOD\n", error);
  EXPECT_LT(error, 0.2f);
}

Result<std::shared_ptr<const Engine>> load_engine(const fs::path& dir, const char* detector_id,
                                                  int threads) {
  EngineOptions options;
  options.model_dir = dir;
  options.detector_id = detector_id;
  options.threads_per_worker = threads;
  return Engine::load(options);
}

float dot(const FaceTemplate& a, const FaceTemplate& b) {
  float sum = 0.f;
  for (std::size_t i = 0; i < a.embedding.size() && i < b.embedding.size(); ++i) {
    sum += a.embedding[i] * b.embedding[i];
  }
  return sum;
}

AnalyzeOptions portrait_options() {
  AnalyzeOptions options;
  options.enforce_quality = false;
  options.refuse_several_faces = false;
  options.subject = SubjectPolicy::kCentral;
  return options;
}

std::optional<FaceTemplate> template_of(Worker& worker, const fs::path& path) {
  const Image image = vision::from_mat(cv::imread(path.string(), cv::IMREAD_COLOR));
  if (image.empty()) {
    return std::nullopt;
  }
  auto analysis = worker.analyze(image, portrait_options());
  if (!analysis || !analysis->face) {
    return std::nullopt;
  }
  return analysis->face;
}

TEST(UltrafaceDetector, EngineWithTheFallbackTellsPeopleApart) {
  FACELOGIN_REQUIRE_DATA(data);
  const auto dir = testing::model_dir();
  if (!dir) {
    GTEST_SKIP() << "model directory not found (set FACELOGIN_MODEL_DIR)";
  }
  if (std::string why = missing_reason(*dir, kFallbackId); !why.empty()) {
    GTEST_SKIP() << "run tools/fetch_models.sh: " << why;
  }
  const fs::path lfw = data / "lfw/images";
  const std::vector<std::string> keys = {
      "Colin_Powell/Colin_Powell_0001.jpg", "Colin_Powell/Colin_Powell_0002.jpg",
      "Colin_Powell/Colin_Powell_0003.jpg", "Tony_Blair/Tony_Blair_0001.jpg",
      "Tony_Blair/Tony_Blair_0002.jpg",     "Hugo_Chavez/Hugo_Chavez_0001.jpg",
      "Laura_Bush/Laura_Bush_0001.jpg"};
  for (const std::string& key : keys) {
    if (!fs::exists(lfw / key)) {
      GTEST_SKIP() << lfw / key << " not found";
    }
  }
  // Engine::load picks the detector named in the options, not YuNet, although YuNet may be there.
  auto engine = load_engine(*dir, kFallbackId, 1);
  if (!engine && engine.error().code() == ErrorCode::kModelError) {
    GTEST_SKIP() << "recogniser models absent: " << engine.error().to_string();
  }
  ASSERT_TRUE(engine.has_value()) << engine.error().to_string();
  EXPECT_EQ((*engine)->options().detector_id, kFallbackId);
  auto worker = (*engine)->make_worker();
  ASSERT_TRUE(worker.has_value()) << worker.error().to_string();

  std::vector<FaceTemplate> templates;
  for (const std::string& key : keys) {
    auto t = template_of(**worker, lfw / key);
    ASSERT_TRUE(t.has_value()) << "no face found in " << key;
    templates.push_back(std::move(*t));
  }
  float lowest_same = 1.f;
  float highest_different = -1.f;
  float same_sum = 0.f;
  float different_sum = 0.f;
  int same_count = 0;
  int different_count = 0;
  for (std::size_t i = 0; i < keys.size(); ++i) {
    for (std::size_t j = i + 1; j < keys.size(); ++j) {
      const float score = dot(templates[i], templates[j]);
      if (eval::key_identity(keys[i]) == eval::key_identity(keys[j])) {
        lowest_same = std::min(lowest_same, score);
        same_sum += score;
        ++same_count;
      } else {
        highest_different = std::max(highest_different, score);
        different_sum += score;
        ++different_count;
      }
    }
  }
  const float same_mean = same_sum / static_cast<float>(same_count);
  const float different_mean = different_sum / static_cast<float>(different_count);
  std::cout << fmt::format(
      "same person: lowest {:.3f}, mean {:.3f}; different people: highest {:.3f}, mean {:.3f}\n",
      lowest_same, same_mean, highest_different, different_mean);
  // The default recogniser's cosines between different people run high (about 0.5-0.7 on LFW),
  // so "well above" is a margin over the worst impostor plus a wide gap between the means.
  EXPECT_GT(lowest_same, highest_different + 0.05f);
  EXPECT_GT(same_mean, different_mean + 0.2f);
}

double median(std::vector<double> values) {
  std::sort(values.begin(), values.end());
  return values[values.size() / 2];
}

// A measurement, not a requirement: prints the median detection time on a webcam-sized frame.
TEST(UltrafaceDetector, ReportsDetectionTimeOnAWebcamFrame) {
  FACELOGIN_REQUIRE_DATA(data);
  FACELOGIN_REQUIRE_DETECTORS(detectors);
  const cv::Mat frame =
      cv::imread((data / "nuaa/ClientRaw/0001/0001_00_00_01_0.jpg").string(), cv::IMREAD_COLOR);
  if (frame.empty()) {
    GTEST_SKIP() << "NUAA frame not found";
  }
  ASSERT_EQ(frame.size(), cv::Size(640, 480));
  const int threads = cv::getNumThreads();
  cv::setNumThreads(1);
  // Three alternating rounds of 20 calls each, so that both detectors see the same background
  // load; the first call of a round is a warm-up.
  std::vector<double> fallback_times;
  std::vector<double> yunet_times;
  std::size_t fallback_faces = 0;
  auto run = [&](vision::FaceDetector& d, std::vector<double>* times, std::size_t* faces) {
    for (int i = 0; i <= 20; ++i) {
      const auto start = std::chrono::steady_clock::now();
      auto got = d.detect(frame);
      const auto stop = std::chrono::steady_clock::now();
      if (i > 0) {
        times->push_back(std::chrono::duration<double, std::milli>(stop - start).count());
      }
      if (faces != nullptr) {
        *faces = got ? got->size() : 0;
      }
    }
  };
  for (int round = 0; round < 3; ++round) {
    run(*detectors.fallback, &fallback_times, &fallback_faces);
    run(*detectors.yunet, &yunet_times, nullptr);
  }
  cv::setNumThreads(threads);
  const double fallback_ms = median(fallback_times);
  const double yunet_ms = median(yunet_times);
  std::cout << fmt::format("640x480, 1 thread, median of 60: fallback {:.1f} ms, YuNet {:.1f} ms\n",
                           fallback_ms, yunet_ms);
  RecordProperty("fallback_ms", fmt::format("{:.1f}", fallback_ms));
  RecordProperty("yunet_ms", fmt::format("{:.1f}", yunet_ms));
  EXPECT_EQ(fallback_faces, 1u);
}

// A measurement with a loose bound: verification accuracy on the first LFW fold's first 100
// same-person and 100 different-person pairs, with each detector in front of the default
// recogniser. Accuracy is at the best threshold for each (optimistic, but equally so for both)
// and, for the fallback, at YuNet's best threshold (what a deployment calibrated on YuNet sees).
TEST(UltrafaceDetector, ReportsLfwAccuracyAgainstYunet) {
  FACELOGIN_REQUIRE_DATA(data);
  const auto dir = testing::model_dir();
  if (!dir) {
    GTEST_SKIP() << "model directory not found (set FACELOGIN_MODEL_DIR)";
  }
  for (const char* id : {kFallbackId, kYunetId}) {
    if (std::string why = missing_reason(*dir, id); !why.empty()) {
      GTEST_SKIP() << "run tools/fetch_models.sh: " << why;
    }
  }
  auto protocol = eval::read_pairs_file(data / "lfw/pairs.txt");
  if (!protocol) {
    GTEST_SKIP() << "LFW pairs not readable: " << protocol.error().to_string();
  }
  constexpr std::size_t kPerKind = 100;
  std::vector<eval::Pair> pairs;
  std::size_t same = 0;
  std::size_t different = 0;
  for (const eval::Pair& p : protocol->pairs) {
    if (p.fold != 0) {
      break;
    }
    if (p.same && same < kPerKind) {
      pairs.push_back(p);
      ++same;
    } else if (!p.same && different < kPerKind) {
      pairs.push_back(p);
      ++different;
    }
  }
  ASSERT_EQ(pairs.size(), 2 * kPerKind);

  struct Run {
    const char* detector;
    std::vector<float> scores;
    int no_face = 0;
  };
  std::vector<Run> runs = {{kYunetId, {}, 0}, {kFallbackId, {}, 0}};
  for (Run& run : runs) {
    auto engine = load_engine(*dir, run.detector, 2);
    ASSERT_TRUE(engine.has_value()) << engine.error().to_string();
    auto worker = (*engine)->make_worker();
    ASSERT_TRUE(worker.has_value()) << worker.error().to_string();
    std::map<std::string, std::optional<FaceTemplate>> templates;
    auto get = [&](const std::string& key) -> const std::optional<FaceTemplate>& {
      auto it = templates.find(key);
      if (it == templates.end()) {
        it = templates.emplace(key, template_of(**worker, data / "lfw/images" / key)).first;
        run.no_face += it->second ? 0 : 1;
      }
      return it->second;
    };
    for (const eval::Pair& p : pairs) {
      const auto& a = get(p.first);
      const auto& b = get(p.second);
      run.scores.push_back(a && b ? dot(*a, *b) : -std::numeric_limits<float>::infinity());
    }
  }

  auto accuracy_at = [&](const std::vector<float>& scores, float threshold) {
    std::size_t right = 0;
    for (std::size_t k = 0; k < pairs.size(); ++k) {
      right += (scores[k] >= threshold) == pairs[k].same ? 1 : 0;
    }
    return static_cast<double>(right) / static_cast<double>(pairs.size());
  };
  auto best_threshold = [&](const std::vector<float>& scores) {
    float best = 0.f;
    double best_accuracy = -1.0;
    for (float t : scores) {
      if (std::isfinite(t) && accuracy_at(scores, t) > best_accuracy) {
        best_accuracy = accuracy_at(scores, t);
        best = t;
      }
    }
    return best;
  };
  // Mean same-person score (alignment errors show there first) and how far each pair's score
  // moves when the detector changes.
  auto mean_same = [&](const std::vector<float>& scores) {
    double sum = 0;
    for (std::size_t k = 0; k < pairs.size(); ++k) {
      sum += pairs[k].same && std::isfinite(scores[k]) ? scores[k] : 0.0;
    }
    return sum / static_cast<double>(kPerKind);
  };
  double shift = 0;
  for (std::size_t k = 0; k < pairs.size(); ++k) {
    if (std::isfinite(runs[0].scores[k]) && std::isfinite(runs[1].scores[k])) {
      shift += std::abs(runs[0].scores[k] - runs[1].scores[k]);
    }
  }
  shift /= static_cast<double>(pairs.size());
  const float yunet_threshold = best_threshold(runs[0].scores);
  const double yunet_accuracy = accuracy_at(runs[0].scores, yunet_threshold);
  const double fallback_best = accuracy_at(runs[1].scores, best_threshold(runs[1].scores));
  const double fallback_at_yunet = accuracy_at(runs[1].scores, yunet_threshold);
  std::cout << fmt::format(
      "LFW fold 1, {} pairs: YuNet {:.1f}% (threshold {:.3f}, {} images without a face); "
      "fallback {:.1f}% at its best threshold, {:.1f}% at YuNet's ({} images without a face)\n",
      pairs.size(), 100 * yunet_accuracy, yunet_threshold, runs[0].no_face, 100 * fallback_best,
      100 * fallback_at_yunet, runs[1].no_face);
  std::cout << fmt::format(
      "mean same-person score: YuNet {:.3f}, fallback {:.3f}; mean |score change| per pair "
      "{:.3f}\n",
      mean_same(runs[0].scores), mean_same(runs[1].scores), shift);
  RecordProperty("yunet_accuracy", fmt::format("{:.3f}", yunet_accuracy));
  RecordProperty("fallback_accuracy", fmt::format("{:.3f}", fallback_best));
  EXPECT_GT(fallback_best, yunet_accuracy - 0.05);
}

}  // namespace
}  // namespace facelogin
