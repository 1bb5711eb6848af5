// Tests for the quality gate (src/vision/quality.h): head pose from five landmarks on synthetic
// projections of a 3-D face, and each quality issue provoked on a real webcam frame.

#include "vision/quality.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <opencv2/core.hpp>
#include <opencv2/imgproc.hpp>
#include <string>
#include <vector>

#include "facelogin/engine.h"
#include "test_data.h"
#include "test_engine.h"
#include "vision/cv_image.h"

namespace facelogin::vision {
namespace {

namespace fs = std::filesystem;

constexpr double kPi = 3.14159265358979323846;
constexpr double kDeg = kPi / 180.0;

// The generic face of src/vision/quality.cpp, in millimetres, camera convention (x right, y down,
// z away from the camera), nose tip at the origin, in Landmarks5 order.
const std::array<cv::Vec3d, 5> kFace3d = {{{-32.0, -35.0, 30.0},
                                           {32.0, -35.0, 30.0},
                                           {0.0, 0.0, 0.0},
                                           {-25.0, 30.0, 20.0},
                                           {25.0, 30.0, 20.0}}};

// Rotations defined by what the head does, not by the implementation's formulae:
// turned to the subject's left = the face's forward vector (0, 0, -1) swings towards +x (the
// image's right); looking up = it swings towards -y (up in the image); clockwise roll = the
// image x axis turns towards +y (down), which is clockwise on a screen.
cv::Matx33d turn_left(double degrees) {
  const double a = -degrees * kDeg;  // a rotation about y by a moves (0,0,-1) to (-sin a, 0, ..)
  return {std::cos(a), 0, std::sin(a), 0, 1, 0, -std::sin(a), 0, std::cos(a)};
}
cv::Matx33d look_up(double degrees) {
  const double a = -degrees * kDeg;  // about x by a moves (0,0,-1) to (0, sin a, ..)
  return {1, 0, 0, 0, std::cos(a), -std::sin(a), 0, std::sin(a), std::cos(a)};
}
cv::Matx33d tilt_clockwise(double degrees) {
  const double a = degrees * kDeg;
  return {std::cos(a), -std::sin(a), 0, std::sin(a), std::cos(a), 0, 0, 0, 1};
}

struct Camera {
  cv::Size size{640, 480};
  // The focal length the estimator assumes (the longer side): a webcam's ~60 degree field.
  double focal() const { return std::max(size.width, size.height); }
};

// The landmarks of the generic face, posed (roll after yaw after pitch, the usual head Euler
// order) and placed `distance` mm in front of a pinhole camera, `offset` mm off its axis.
Landmarks5 project(double yaw, double pitch, double roll, const Camera& camera = {},
                   double distance = 600.0, cv::Vec2d offset = {0.0, 0.0}) {
  const cv::Matx33d r = tilt_clockwise(roll) * turn_left(yaw) * look_up(pitch);
  Landmarks5 out{};
  for (std::size_t i = 0; i < kFace3d.size(); ++i) {
    const cv::Vec3d p = r * kFace3d[i] + cv::Vec3d(offset[0], offset[1], distance);
    out[i] = {static_cast<float>(camera.focal() * p[0] / p[2] + camera.size.width / 2.0),
              static_cast<float>(camera.focal() * p[1] / p[2] + camera.size.height / 2.0)};
  }
  return out;
}

constexpr double kPoseTolerance = 3.0;  // degrees

TEST(HeadPose, IsNearZeroForAFrontalFace) {
  const HeadPose pose = estimate_head_pose(project(0, 0, 0), {640, 480});
  EXPECT_NEAR(pose.yaw, 0.0, kPoseTolerance);
  EXPECT_NEAR(pose.pitch, 0.0, kPoseTolerance);
  EXPECT_NEAR(pose.roll, 0.0, kPoseTolerance);
}

TEST(HeadPose, YawIsPositiveWhenTheSubjectTurnsToTheirLeft) {
  for (double yaw : {-25.0, -12.0, 12.0, 25.0}) {
    const Landmarks5 lm = project(yaw, 0, 0);
    // The synthetic head does what the documentation says: turning to the subject's left moves
    // the nose towards the image's right, relative to the eyes.
    const float eyes_mid_x = (lm[0].x + lm[1].x) / 2.f;
    ASSERT_EQ(lm[2].x > eyes_mid_x, yaw > 0) << "test geometry, yaw " << yaw;

    const HeadPose pose = estimate_head_pose(lm, {640, 480});
    EXPECT_NEAR(pose.yaw, yaw, kPoseTolerance) << "yaw " << yaw;
    EXPECT_NEAR(pose.pitch, 0.0, kPoseTolerance) << "yaw " << yaw;
    EXPECT_NEAR(pose.roll, 0.0, kPoseTolerance) << "yaw " << yaw;
  }
}

TEST(HeadPose, PitchIsPositiveWhenTheSubjectLooksUp) {
  for (double pitch : {-20.0, -10.0, 10.0, 20.0}) {
    const Landmarks5 lm = project(0, pitch, 0);
    // Looking up moves the nose tip up (smaller y) relative to the middle of eyes and mouth.
    const float face_mid_y = (lm[0].y + lm[1].y + lm[3].y + lm[4].y) / 4.f;
    const Landmarks5 frontal = project(0, 0, 0);
    const float frontal_mid_y = (frontal[0].y + frontal[1].y + frontal[3].y + frontal[4].y) / 4.f;
    ASSERT_EQ(lm[2].y - face_mid_y<frontal[2].y - frontal_mid_y, pitch> 0)
        << "test geometry, pitch " << pitch;

    const HeadPose pose = estimate_head_pose(lm, {640, 480});
    EXPECT_NEAR(pose.pitch, pitch, kPoseTolerance) << "pitch " << pitch;
    EXPECT_NEAR(pose.yaw, 0.0, kPoseTolerance) << "pitch " << pitch;
    EXPECT_NEAR(pose.roll, 0.0, kPoseTolerance) << "pitch " << pitch;
  }
}

TEST(HeadPose, RollIsPositiveWhenTheHeadTiltsClockwiseInTheImage) {
  for (double roll : {-25.0, -10.0, 10.0, 25.0}) {
    const Landmarks5 lm = project(0, 0, roll);
    // Clockwise on screen: the eye on the image's right (the subject's left) drops lower.
    ASSERT_EQ(lm[1].y > lm[0].y, roll > 0) << "test geometry, roll " << roll;

    const HeadPose pose = estimate_head_pose(lm, {640, 480});
    EXPECT_NEAR(pose.roll, roll, kPoseTolerance) << "roll " << roll;
    EXPECT_NEAR(pose.yaw, 0.0, kPoseTolerance) << "roll " << roll;
    EXPECT_NEAR(pose.pitch, 0.0, kPoseTolerance) << "roll " << roll;
  }
}

TEST(HeadPose, RecoversCombinedAnglesOffTheCameraAxis) {
  struct Case {
    double yaw, pitch, roll;
    cv::Vec2d offset;
  };
  const std::vector<Case> cases = {{15, -10, 8, {0, 0}},
                                   {-20, 12, -15, {120, -60}},
                                   {25, 8, 20, {-150, 80}},
                                   {-10, -15, 5, {60, 100}}};
  for (const auto& c : cases) {
    const HeadPose pose =
        estimate_head_pose(project(c.yaw, c.pitch, c.roll, {}, 650.0, c.offset), {640, 480});
    EXPECT_NEAR(pose.yaw, c.yaw, kPoseTolerance) << c.yaw << "/" << c.pitch << "/" << c.roll;
    EXPECT_NEAR(pose.pitch, c.pitch, kPoseTolerance) << c.yaw << "/" << c.pitch << "/" << c.roll;
    EXPECT_NEAR(pose.roll, c.roll, kPoseTolerance) << c.yaw << "/" << c.pitch << "/" << c.roll;
  }
}

TEST(HeadPose, DoesNotDependOnTheImageSizeOrFaceDistance) {
  const Camera hd{cv::Size(1280, 720)};
  for (double distance : {400.0, 1200.0}) {
    const HeadPose pose = estimate_head_pose(project(18, -8, 6, hd, distance), hd.size);
    EXPECT_NEAR(pose.yaw, 18, kPoseTolerance) << distance;
    EXPECT_NEAR(pose.pitch, -8, kPoseTolerance) << distance;
    EXPECT_NEAR(pose.roll, 6, kPoseTolerance) << distance;
  }
}

TEST(HeadPose, GivesFiniteAnglesForDegenerateLandmarks) {
  Landmarks5 same{};
  for (auto& p : same) {
    p = {320.f, 240.f};
  }
  const HeadPose pose = estimate_head_pose(same, {640, 480});
  EXPECT_TRUE(std::isfinite(pose.yaw) && std::isfinite(pose.pitch) && std::isfinite(pose.roll));
}

// ---------------------------------------------------------------------------------------------
// assess_quality on a real webcam frame

bool has(const QualityReport& report, QualityIssue issue) {
  return std::find(report.issues.begin(), report.issues.end(), issue) != report.issues.end();
}

std::string issues_of(const QualityReport& report) {
  std::string s;
  for (QualityIssue issue : report.issues) {
    s += std::string(quality_issue_name(issue)) + " ";
  }
  return s.empty() ? "none" : s;
}

// A live NUAA frame, the face the detector finds in it, and the default options.
class QualityOnRealFrame : public ::testing::Test {
 protected:
  void SetUp() override {
    FACELOGIN_REQUIRE_DATA(data);
    FACELOGIN_REQUIRE_ENGINE(engine);
    const fs::path path = data / "nuaa/ClientRaw/0001/0001_00_00_01_0.jpg";
    Image image = testing::read_test_image(path);
    if (image.empty()) {
      GTEST_SKIP() << path << " not found: skipping real-face test";
    }
    auto worker = engine->make_worker();
    ASSERT_TRUE(worker.has_value()) << worker.error().to_string();
    auto faces = (*worker)->detect(image);
    ASSERT_TRUE(faces.has_value()) << faces.error().to_string();
    ASSERT_EQ(faces->size(), 1u) << path;
    face_ = faces->front();
    frame_ = as_mat(image).clone();
    options_ = engine->options().quality;
  }

  QualityReport assess(const cv::Mat& frame, const DetectedFace& face) const {
    return assess_quality(frame, face, options_);
  }

  cv::Mat frame_;
  DetectedFace face_;
  QualityOptions options_;
};

DetectedFace scaled(const DetectedFace& face, float s, Point2 shift = {0.f, 0.f}) {
  DetectedFace out = face;
  out.box = {face.box.x * s + shift.x, face.box.y * s + shift.y, face.box.width * s,
             face.box.height * s};
  for (auto& p : out.landmarks) {
    p = {p.x * s + shift.x, p.y * s + shift.y};
  }
  return out;
}

TEST_F(QualityOnRealFrame, AGoodLiveFrameHasNoIssue) {
  const QualityReport report = assess(frame_, face_);
  EXPECT_TRUE(report.ok()) << issues_of(report);
  EXPECT_GT(report.face_width_px, options_.min_face_px);
  EXPECT_GT(report.brightness, options_.min_brightness);
  EXPECT_LT(report.brightness, options_.max_brightness);
  EXPECT_GT(report.sharpness, options_.min_sharpness);
  EXPECT_LT(std::abs(report.pose.yaw), options_.max_yaw);
  EXPECT_GT(report.score, 0.f);
  EXPECT_LE(report.score, 1.f);
}

TEST_F(QualityOnRealFrame, FlagsADarkenedFrameAsTooDark) {
  cv::Mat dark;
  frame_.convertTo(dark, -1, 0.15, 0.0);
  const QualityReport report = assess(dark, face_);
  EXPECT_TRUE(has(report, QualityIssue::kTooDark)) << issues_of(report);
  EXPECT_FALSE(has(report, QualityIssue::kOverexposed));
  EXPECT_LT(report.brightness, options_.min_brightness);
}

TEST_F(QualityOnRealFrame, FlagsABurntOutFrameAsOverexposed) {
  cv::Mat bright;
  frame_.convertTo(bright, -1, 2.5, 60.0);
  const QualityReport report = assess(bright, face_);
  EXPECT_TRUE(has(report, QualityIssue::kOverexposed)) << issues_of(report);
  EXPECT_FALSE(has(report, QualityIssue::kTooDark));
}

TEST_F(QualityOnRealFrame, FlagsABlurredFrame) {
  cv::Mat blurred;
  cv::GaussianBlur(frame_, blurred, cv::Size(0, 0), 4.0);
  const QualityReport sharp = assess(frame_, face_);
  const QualityReport report = assess(blurred, face_);
  EXPECT_TRUE(has(report, QualityIssue::kBlurred)) << issues_of(report);
  EXPECT_LT(report.sharpness, sharp.sharpness / 4.f);
  EXPECT_LT(report.score, sharp.score);
  // Blur changes nothing else about the face.
  EXPECT_FALSE(has(report, QualityIssue::kTooDark) || has(report, QualityIssue::kOverexposed));
}

TEST_F(QualityOnRealFrame, FlagsASmallFaceAsTooSmall) {
  const float s = 0.6f * options_.min_face_px / face_.box.width;  // face ~0.6 x the minimum
  cv::Mat small;
  cv::resize(frame_, small, cv::Size(), s, s, cv::INTER_AREA);
  const QualityReport report = assess(small, scaled(face_, s));
  EXPECT_TRUE(has(report, QualityIssue::kTooSmall)) << issues_of(report);
  EXPECT_LT(report.face_width_px, options_.min_face_px);
}

TEST_F(QualityOnRealFrame, FlagsAFaceFillingTheFrameAsTooClose) {
  // A crop just around the face box: the face is nearly as wide as the frame.
  const cv::Rect box(static_cast<int>(face_.box.x) - 4, static_cast<int>(face_.box.y) - 4,
                     static_cast<int>(face_.box.width) + 8, static_cast<int>(face_.box.height) + 8);
  const cv::Rect inside = box & cv::Rect(0, 0, frame_.cols, frame_.rows);
  const cv::Mat tight = frame_(inside).clone();
  const QualityReport report = assess(
      tight, scaled(face_, 1.f, {-static_cast<float>(inside.x), -static_cast<float>(inside.y)}));
  EXPECT_TRUE(has(report, QualityIssue::kTooClose)) << issues_of(report);
}

TEST_F(QualityOnRealFrame, FlagsAFacePartlyOutsideTheFrameAsCutOff) {
  // Cut the frame at the middle of the face: the left half of the box is outside.
  const int cut = static_cast<int>(face_.box.x + face_.box.width / 2.f);
  const cv::Mat right = frame_(cv::Rect(cut, 0, frame_.cols - cut, frame_.rows)).clone();
  const QualityReport report = assess(right, scaled(face_, 1.f, {-static_cast<float>(cut), 0.f}));
  EXPECT_TRUE(has(report, QualityIssue::kCutOff)) << issues_of(report);
}

TEST_F(QualityOnRealFrame, FlagsAFaceTurnedFarAwayAsTurnedAway) {
  // The same pixels with the landmarks of a head turned 50 degrees, placed on the face.
  const Camera camera{frame_.size()};
  const Landmarks5 turned = project(50, 0, 0, camera, 600.0);
  const Landmarks5 frontal = project(0, 0, 0, camera, 600.0);
  DetectedFace face = face_;
  const Point2 c = face_.landmarks[2];
  for (std::size_t i = 0; i < 5; ++i) {
    face.landmarks[i] = {c.x + turned[i].x - frontal[2].x, c.y + turned[i].y - frontal[2].y};
  }
  const QualityReport report = assess(frame_, face);
  EXPECT_TRUE(has(report, QualityIssue::kTurnedAway)) << issues_of(report);
  EXPECT_GT(report.pose.yaw, options_.max_yaw);
}

TEST_F(QualityOnRealFrame, NamesEveryIssueWithAdvice) {
  for (QualityIssue issue :
       {QualityIssue::kTooSmall, QualityIssue::kTooClose, QualityIssue::kCutOff,
        QualityIssue::kTooDark, QualityIssue::kOverexposed, QualityIssue::kBlurred,
        QualityIssue::kTurnedAway}) {
    EXPECT_NE(quality_issue_name(issue), "unknown");
    EXPECT_FALSE(quality_issue_advice(issue).empty());
  }
}

}  // namespace
}  // namespace facelogin::vision
