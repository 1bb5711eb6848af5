// Passive liveness (facelogin/liveness.h): the crop geometry of the Silent-Face recipe, model
// loading, and scores on real live and printed-photo webcam frames (NUAA, Silent-Face samples).

#include "facelogin/liveness.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "facelogin/models.h"
#include "test_data.h"
#include "test_engine.h"

namespace facelogin {
namespace {

namespace fs = std::filesystem;

void expect_inside(const Box& c, int w, int h) {
  EXPECT_GE(c.x, 0.f);
  EXPECT_GE(c.y, 0.f);
  EXPECT_LE(c.x + c.width, static_cast<float>(w));
  EXPECT_LE(c.y + c.height, static_cast<float>(h));
  EXPECT_GE(c.width, 1.f);
  EXPECT_GE(c.height, 1.f);
}

TEST(LivenessCrop, ScalesAroundTheCentreWhenThereIsRoom) {
  // A 100x120 face centred at (320, 240) in 640x480, scale 2.7: 270x324 around the centre.
  const Box c = liveness_crop_box(Box{270, 180, 100, 120}, 2.7f, 640, 480);
  // (Bounds are truncated to whole pixels, as in the recipe, so allow one pixel either way.)
  EXPECT_NEAR(c.x, 185.f, 1.f);       // 320 - 135
  EXPECT_NEAR(c.y, 78.f, 1.f);        // 240 - 162
  EXPECT_NEAR(c.width, 271.f, 1.f);   // 185..455 inclusive
  EXPECT_NEAR(c.height, 325.f, 1.f);  // 78..402 inclusive
  expect_inside(c, 640, 480);
}

TEST(LivenessCrop, ShiftsIntoTheFrameInsteadOfPadding) {
  // Near the top-left corner: the crop keeps its size and moves right and down.
  const Box c = liveness_crop_box(Box{10, 10, 100, 100}, 2.7f, 640, 480);
  EXPECT_EQ(c.x, 0.f);
  EXPECT_EQ(c.y, 0.f);
  EXPECT_NEAR(c.width, 271.f, 1.f);
  EXPECT_NEAR(c.height, 271.f, 1.f);
  // Near the bottom-right corner: it moves left and up and ends on the last pixel.
  const Box d = liveness_crop_box(Box{560, 400, 70, 70}, 4.0f, 640, 480);
  EXPECT_EQ(d.x + d.width, 640.f);
  EXPECT_EQ(d.y + d.height, 480.f);
  EXPECT_NEAR(d.width, 281.f, 1.f);
  expect_inside(d, 640, 480);
}

TEST(LivenessCrop, LowersTheScaleWhenTheCropWouldNotFit) {
  // 200 px high face, scale 4: 800 > 479, so the scale drops to 479/200 in both directions
  // (the crop keeps the face box's aspect ratio).
  const Box c = liveness_crop_box(Box{220, 140, 200, 200}, 4.0f, 640, 480);
  EXPECT_NEAR(c.height, 480.f, 1.f);
  EXPECT_NEAR(c.width, 480.f, 1.f);
  expect_inside(c, 640, 480);
}

TEST(LivenessCrop, BoxesPastTheEdgeStayInside) {
  for (const Box& b :
       {Box{-50, -40, 120, 130}, Box{600, 450, 90, 90}, Box{-5, 200, 700, 300}, Box{0, 0, 1, 1}}) {
    expect_inside(liveness_crop_box(b, 2.7f, 640, 480), 640, 480);
    expect_inside(liveness_crop_box(b, 4.0f, 640, 480), 640, 480);
  }
}

TEST(LivenessModelsLoad, FailsWithAModelErrorNamingTheMissingFile) {
  const fs::path empty = testing::make_temp_dir("facelogin-liveness-empty");
  auto models = LivenessModels::load(empty);
  ASSERT_FALSE(models.has_value());
  EXPECT_EQ(models.error().code(), ErrorCode::kModelError);
  EXPECT_NE(models.error().message().find("antispoof_minifasnet"), std::string::npos)
      << models.error().message();
  std::error_code ec;
  fs::remove_all(empty, ec);
}

// The liveness models and the shared engine, or a skip.
class LivenessOnPhotos : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto data = testing::shared_data_dir();
    const auto dir = testing::model_dir();
    if (!data || !dir) {
      GTEST_SKIP() << "../shared/data or the models not found: skipping real-face liveness test";
    }
    auto models = LivenessModels::load(*dir);
    if (!models) {
      GTEST_SKIP() << "liveness models unavailable: " << models.error().message();
    }
    const auto& shared = testing::shared_engine();
    if (!shared.engine) {
      GTEST_SKIP() << shared.skip_reason;
    }
    auto worker = shared.engine->make_worker();
    ASSERT_TRUE(worker.has_value()) << worker.error().to_string();
    worker_ = std::move(*worker);
    auto scorer = (*models)->make_scorer();
    ASSERT_TRUE(scorer.has_value()) << scorer.error().to_string();
    scorer_ = std::move(*scorer);
    data_ = *data;
  }

  // The live score of the largest face of the image.
  float live_score(const fs::path& path) {
    auto image = load_image_file(path);
    EXPECT_TRUE(image.has_value()) << path;
    if (!image) {
      return -1.f;
    }
    auto faces = worker_->detect(*image);
    EXPECT_TRUE(faces.has_value() && !faces->empty()) << "no face in " << path;
    if (!faces || faces->empty()) {
      return -1.f;
    }
    const DetectedFace* largest = &faces->front();
    for (const auto& f : *faces) {
      if (f.box.area() > largest->box.area()) {
        largest = &f;
      }
    }
    auto score = scorer_->score(*image, largest->box);
    EXPECT_TRUE(score.has_value()) << score.error().to_string();
    if (!score) {
      return -1.f;
    }
    EXPECT_EQ(score->per_model.size(), 2u);
    return score->live;
  }

  std::unique_ptr<Worker> worker_;
  std::unique_ptr<LivenessScorer> scorer_;
  fs::path data_;
};

TEST_F(LivenessOnPhotos, LiveWebcamFramesPassAndPrintedPhotosDoNot) {
  // Subjects 0006 and 0009: held out from the threshold choice (docs/liveness.md).
  for (const char* live :
       {"0006/0006_00_00_01_0.jpg", "0006/0006_00_06_03_102.jpg", "0009/0009_01_00_01_0.jpg"}) {
    const fs::path path = data_ / "nuaa/ClientRaw" / live;
    if (!fs::exists(path)) {
      GTEST_SKIP() << path << " not found";
    }
    EXPECT_GE(live_score(path), kDefaultLiveThreshold) << live;
  }
  std::vector<fs::path> attacks;
  for (const char* subject : {"0006", "0009"}) {
    for (const auto& e : fs::directory_iterator(data_ / "nuaa/ImposterRaw" / subject)) {
      attacks.push_back(e.path());
    }
  }
  std::sort(attacks.begin(), attacks.end());
  ASSERT_GE(attacks.size(), 20u);
  for (std::size_t i = 0; i < attacks.size(); i += attacks.size() / 20) {
    EXPECT_LT(live_score(attacks[i]), kDefaultLiveThreshold) << attacks[i];
  }
}

TEST_F(LivenessOnPhotos, SilentFaceSamples) {
  const fs::path dir = data_ / "media/silent_face";
  if (!fs::is_directory(dir)) {
    GTEST_SKIP() << dir << " not found";
  }
  EXPECT_GE(live_score(dir / "image_T1.jpg"), kDefaultLiveThreshold);  // live
  EXPECT_LT(live_score(dir / "image_F1.jpg"), kDefaultLiveThreshold);  // attack
  EXPECT_LT(live_score(dir / "image_F2.jpg"), kDefaultLiveThreshold);  // attack
}

TEST_F(LivenessOnPhotos, RefusesABoxOutsideTheFrame) {
  Image frame;
  frame.width = 64;
  frame.height = 48;
  frame.bgr.assign(64 * 48 * 3, 128);
  for (const Box& b : {Box{100, 10, 20, 20}, Box{10, 10, 0, 20}, Box{-40, -40, 20, 20}}) {
    auto score = scorer_->score(frame, b);
    ASSERT_FALSE(score.has_value());
    EXPECT_EQ(score.error().code(), ErrorCode::kInvalidArgument);
  }
  auto empty = scorer_->score(Image{}, Box{0, 0, 10, 10});
  ASSERT_FALSE(empty.has_value());
  EXPECT_EQ(empty.error().code(), ErrorCode::kInvalidArgument);
}

// ---------------------------------------------------------------------------------------------
// LivenessSession

using std::chrono::milliseconds;

// Gives each frame the score written in its first pixel (0-255 -> 0..1); counts its calls.
class FakeScorer final : public LivenessScorer {
 public:
  Result<LivenessScore> score(const Image& frame, const Box&) override {
    ++calls;
    const float s = static_cast<float>(frame.bgr[0]) / 255.f;
    return LivenessScore{s, {s, s}};
  }
  int calls = 0;
};

// A 32x24 frame: first pixel encodes the score, the rest a grey `level` (so frames differ).
Image frame_with(float score, int level) {
  Image f;
  f.width = 32;
  f.height = 24;
  f.bgr.assign(32 * 24 * 3, static_cast<std::uint8_t>(level));
  f.bgr[0] = static_cast<std::uint8_t>(score * 255.f);
  return f;
}

constexpr Box kFace{4, 4, 16, 16};

TEST(LivenessSessionTest, DecidesOnTheMeanOfTheNeededFrames) {
  FakeScorer scorer;
  LivenessSessionOptions o;
  o.frames_needed = 4;
  o.threshold = 0.5f;
  LivenessSession live(scorer, o);
  for (int i = 0; i < 4; ++i) {
    auto v = live.add_frame(frame_with(i == 0 ? 0.2f : 0.8f, 10 * i), kFace, milliseconds(33 * i));
    ASSERT_TRUE(v.has_value());
    EXPECT_EQ(*v, i < 3 ? LivenessVerdict::kPending : LivenessVerdict::kLive) << i;
  }
  EXPECT_NEAR(live.mean_score(), 0.65f, 0.01f);
  EXPECT_EQ(live.frames_counted(), 4);

  LivenessSession spoof(scorer, o);
  for (int i = 0; i < 4; ++i) {
    ASSERT_TRUE(spoof.add_frame(frame_with(0.3f, 10 * i), kFace, milliseconds(33 * i)).has_value());
  }
  EXPECT_EQ(spoof.verdict(), LivenessVerdict::kNotLive);
  // Final: a later good frame changes nothing and is not scored.
  const int calls = scorer.calls;
  EXPECT_EQ(*spoof.add_frame(frame_with(1.f, 200), kFace, milliseconds(200)),
            LivenessVerdict::kNotLive);
  EXPECT_EQ(scorer.calls, calls);
}

// The adaptive policy's "strong" evidence: a high mean and no frame under the threshold.
TEST(LivenessSessionTest, StrongEvidenceNeedsAHighMeanAndNoWeakFrame) {
  FakeScorer scorer;
  LivenessSessionOptions o;
  o.frames_needed = 4;
  o.threshold = 0.5f;
  o.strong_threshold = 0.9f;
  const auto run = [&](std::vector<float> scores) {
    auto s = std::make_unique<LivenessSession>(scorer, o);
    for (std::size_t i = 0; i < scores.size(); ++i) {
      EXPECT_TRUE(s->add_frame(frame_with(scores[i], 10 * static_cast<int>(i)), kFace,
                               milliseconds(33 * static_cast<int>(i)))
                      .has_value());
    }
    return s;
  };
  const auto strong = run({0.95f, 0.97f, 0.93f, 0.99f});
  EXPECT_EQ(strong->verdict(), LivenessVerdict::kLive);
  EXPECT_TRUE(strong->strong());
  EXPECT_NEAR(strong->min_score(), 0.93f, 0.01f);
  // Live, but a mean under the strong threshold: the attempt would step up.
  const auto middling = run({0.8f, 0.85f, 0.8f, 0.85f});
  EXPECT_EQ(middling->verdict(), LivenessVerdict::kLive);
  EXPECT_FALSE(middling->strong());
  // A high mean with one frame that scored as a screen (a replay flickers): not strong.
  const auto flicker = run({1.f, 1.f, 1.f, 0.4f});
  EXPECT_GE(flicker->mean_score(), 0.85f);
  EXPECT_EQ(flicker->verdict(), LivenessVerdict::kLive);
  EXPECT_FALSE(flicker->strong());
  // Not before the verdict, and never when refused.
  EXPECT_FALSE(run({0.99f, 0.99f})->strong());
  EXPECT_FALSE(run({0.1f, 0.1f, 0.1f, 0.1f})->strong());
}

TEST(LivenessSessionTest, ALiveVerdictStillWatchesForRepeatsAndPace) {
  // An attempt goes on after the passive window for an active challenge: the same picture sent
  // again answers nothing (last_frame_repeated) and, sent on and on, ends the attempt.
  FakeScorer scorer;
  LivenessSessionOptions o;
  o.frames_needed = 2;
  o.max_consecutive_repeats = 3;
  LivenessSession s(scorer, o);
  ASSERT_TRUE(s.add_frame(frame_with(0.9f, 10), kFace, milliseconds(0)).has_value());
  ASSERT_EQ(*s.add_frame(frame_with(0.9f, 20), kFace, milliseconds(100)), LivenessVerdict::kLive);
  const int calls = scorer.calls;
  EXPECT_EQ(*s.add_frame(frame_with(0.9f, 30), kFace, milliseconds(200)), LivenessVerdict::kLive);
  EXPECT_FALSE(s.last_frame_repeated());
  EXPECT_EQ(scorer.calls, calls);  // decided: not scored again
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(*s.add_frame(frame_with(0.9f, 30), kFace, milliseconds(300 + 100 * i)),
              LivenessVerdict::kLive);
    EXPECT_TRUE(s.last_frame_repeated());
  }
  EXPECT_EQ(*s.add_frame(frame_with(0.9f, 30), kFace, milliseconds(700)),
            LivenessVerdict::kStillImage);
  LivenessSession fast(scorer, o);
  ASSERT_TRUE(fast.add_frame(frame_with(0.9f, 10), kFace, milliseconds(0)).has_value());
  ASSERT_EQ(*fast.add_frame(frame_with(0.9f, 20), kFace, milliseconds(100)),
            LivenessVerdict::kLive);
  EXPECT_EQ(*fast.add_frame(frame_with(0.9f, 30), kFace, milliseconds(101)),
            LivenessVerdict::kBadTiming);
}

TEST(LivenessSessionTest, FramesWithoutAFaceAndRepeatsAreNotCounted) {
  FakeScorer scorer;
  LivenessSessionOptions o;
  o.frames_needed = 3;
  LivenessSession s(scorer, o);
  ASSERT_TRUE(s.add_frame(frame_with(0.9f, 10), std::nullopt, milliseconds(0)).has_value());
  ASSERT_TRUE(s.add_frame(frame_with(0.9f, 20), kFace, milliseconds(33)).has_value());
  ASSERT_TRUE(s.add_frame(frame_with(0.9f, 20), kFace, milliseconds(66)).has_value());  // repeat
  EXPECT_EQ(s.frames_counted(), 1);
  EXPECT_EQ(s.repeats(), 1);
  ASSERT_TRUE(s.add_frame(frame_with(0.9f, 30), kFace, milliseconds(99)).has_value());
  auto v = s.add_frame(frame_with(0.9f, 40), kFace, milliseconds(132));
  ASSERT_TRUE(v.has_value());
  EXPECT_EQ(*v, LivenessVerdict::kLive);
}

TEST(LivenessSessionTest, AStillImageIsRefused) {
  FakeScorer scorer;
  LivenessSessionOptions o;
  o.max_consecutive_repeats = 5;
  LivenessSession s(scorer, o);
  const Image still = frame_with(1.f, 100);
  LivenessVerdict v = LivenessVerdict::kPending;
  for (int i = 0; i < 7; ++i) {
    v = *s.add_frame(still, kFace, milliseconds(33 * i));
  }
  EXPECT_EQ(v, LivenessVerdict::kStillImage);
  EXPECT_EQ(s.frames_counted(), 1);  // only the first
}

TEST(LivenessSessionTest, RefusesFramesOutOfTimeOrTooFast) {
  FakeScorer scorer;
  LivenessSessionOptions o;
  {
    LivenessSession s(scorer, o);
    ASSERT_TRUE(s.add_frame(frame_with(0.9f, 1), kFace, milliseconds(100)).has_value());
    EXPECT_EQ(*s.add_frame(frame_with(0.9f, 2), kFace, milliseconds(50)),
              LivenessVerdict::kBadTiming);  // backwards
  }
  {
    LivenessSession s(scorer, o);
    ASSERT_TRUE(s.add_frame(frame_with(0.9f, 1), kFace, milliseconds(100)).has_value());
    EXPECT_EQ(*s.add_frame(frame_with(0.9f, 2), kFace, milliseconds(102)),
              LivenessVerdict::kBadTiming);  // 500 frames per second
  }
  {
    o.deadline = milliseconds(1000);
    LivenessSession s(scorer, o);
    ASSERT_TRUE(s.add_frame(frame_with(0.9f, 1), kFace, milliseconds(0)).has_value());
    EXPECT_EQ(*s.add_frame(frame_with(0.9f, 2), kFace, milliseconds(1001)),
              LivenessVerdict::kTimedOut);
  }
  LivenessSession s(scorer, o);
  EXPECT_FALSE(s.add_frame(Image{}, kFace, milliseconds(0)).has_value());
}

TEST(LivenessSessionTest, PolicyOffPassesWithoutScoring) {
  FakeScorer scorer;
  LivenessSessionOptions o;
  o.policy = LivenessPolicy::kOff;
  o.frames_needed = 2;
  LivenessSession s(scorer, o);
  ASSERT_TRUE(s.add_frame(frame_with(0.f, 10), kFace, milliseconds(0)).has_value());
  EXPECT_EQ(*s.add_frame(frame_with(0.f, 20), kFace, milliseconds(40)), LivenessVerdict::kLive);
  EXPECT_EQ(scorer.calls, 0);
}

TEST(LivenessSessionTest, VerdictsHaveNamesAndAdvice) {
  for (LivenessVerdict v : {LivenessVerdict::kNotLive, LivenessVerdict::kStillImage,
                            LivenessVerdict::kBadTiming, LivenessVerdict::kTimedOut}) {
    EXPECT_NE(liveness_verdict_name(v), "unknown");
    EXPECT_FALSE(liveness_verdict_advice(v).empty());
  }
  EXPECT_EQ(liveness_verdict_name(LivenessVerdict::kNotLive), "not_live");
}

// Whole NUAA recordings as a camera would send them (30 fps): the live one passes, the printed
// photo of the same person does not.
TEST_F(LivenessOnPhotos, SessionsOnWholeNuaaRecordings) {
  const auto run = [&](const fs::path& dir, const std::string& prefix) {
    const auto files = testing::recording_frames(dir, prefix);
    LivenessSession session(*scorer_);
    for (const auto& [number, path] : files) {
      auto image = load_image_file(path);
      EXPECT_TRUE(image.has_value()) << path;
      auto faces = worker_->detect(*image);
      EXPECT_TRUE(faces.has_value());
      std::optional<Box> face;
      if (faces && !faces->empty()) {
        face = faces->front().box;
      }
      auto v = session.add_frame(*image, face, milliseconds(number * 1000 / 30));
      EXPECT_TRUE(v.has_value());
      if (!v || *v != LivenessVerdict::kPending) {
        break;
      }
    }
    return session.verdict();
  };
  const fs::path live = data_ / "nuaa/ClientRaw/0001";
  const fs::path print = data_ / "nuaa/ImposterRaw/0005";
  if (!fs::is_directory(live) || !fs::is_directory(print)) {
    GTEST_SKIP() << "NUAA recordings not found";
  }
  EXPECT_EQ(run(live, "0001_00_00_01_"), LivenessVerdict::kLive);
  EXPECT_EQ(run(print, "0005_00_01_02_"), LivenessVerdict::kNotLive);
}

}  // namespace
}  // namespace facelogin
