// Tests for face alignment (src/vision/align.h): the least-squares similarity transform and the
// warp that puts detected landmarks on a model's template.

#include "vision/align.h"

#include <gtest/gtest.h>

#include <cmath>
#include <opencv2/core.hpp>
#include <opencv2/imgproc.hpp>

#include "facelogin/geometry.h"

namespace facelogin::vision {
namespace {

// ArcFace's 112x112 template (the one in src/vision/model_catalog.cpp), a realistic target.
constexpr Landmarks5 kTemplate = {{{38.2946f, 51.6963f},
                                   {73.5318f, 51.5014f},
                                   {56.0252f, 71.7366f},
                                   {41.5493f, 92.3655f},
                                   {70.7299f, 92.2041f}}};

// Landmarks of a face roughly as YuNet reports them in a 640x480 frame.
constexpr Landmarks5 kDetected = {
    {{281.f, 212.f}, {352.f, 208.f}, {318.f, 251.f}, {290.f, 290.f}, {347.f, 287.f}}};

Point2 apply(const cv::Mat& m, Point2 p) {
  return {
      static_cast<float>(m.at<double>(0, 0) * p.x + m.at<double>(0, 1) * p.y + m.at<double>(0, 2)),
      static_cast<float>(m.at<double>(1, 0) * p.x + m.at<double>(1, 1) * p.y + m.at<double>(1, 2))};
}

// The similarity with the given rotation (radians, counter-clockwise in x-right/y-up terms,
// i.e. x -> y), scale and translation.
Landmarks5 transform(const Landmarks5& points, double angle, double scale, double tx, double ty) {
  Landmarks5 out{};
  const double c = scale * std::cos(angle);
  const double s = scale * std::sin(angle);
  for (std::size_t i = 0; i < points.size(); ++i) {
    out[i] = {static_cast<float>(c * points[i].x - s * points[i].y + tx),
              static_cast<float>(s * points[i].x + c * points[i].y + ty)};
  }
  return out;
}

TEST(FitSimilarity, RecoversAKnownRotationScaleAndTranslationExactly) {
  const double angle = 0.35;  // about 20 degrees
  const double scale = 1.7;
  const double tx = -40.5, ty = 12.25;
  const Landmarks5 moved = transform(kDetected, angle, scale, tx, ty);

  const cv::Mat m = fit_similarity(kDetected, moved);
  ASSERT_EQ(m.rows, 2);
  ASSERT_EQ(m.cols, 3);
  ASSERT_EQ(m.type(), CV_64F);
  // The inputs are floats, so "exactly" means to float precision of ~600-pixel coordinates.
  EXPECT_NEAR(m.at<double>(0, 0), scale * std::cos(angle), 1e-5);
  EXPECT_NEAR(m.at<double>(0, 1), -scale * std::sin(angle), 1e-5);
  EXPECT_NEAR(m.at<double>(1, 0), scale * std::sin(angle), 1e-5);
  EXPECT_NEAR(m.at<double>(1, 1), scale * std::cos(angle), 1e-5);
  EXPECT_NEAR(m.at<double>(0, 2), tx, 2e-3);
  EXPECT_NEAR(m.at<double>(1, 2), ty, 2e-3);
  for (std::size_t i = 0; i < moved.size(); ++i) {
    const Point2 p = apply(m, kDetected[i]);
    EXPECT_NEAR(p.x, moved[i].x, 1e-3) << "landmark " << i;
    EXPECT_NEAR(p.y, moved[i].y, 1e-3) << "landmark " << i;
  }
}

TEST(FitSimilarity, IsTheIdentityForIdenticalPoints) {
  const cv::Mat m = fit_similarity(kTemplate, kTemplate);
  const cv::Mat identity = (cv::Mat_<double>(2, 3) << 1, 0, 0, 0, 1, 0);
  EXPECT_LT(cv::norm(m, identity, cv::NORM_INF), 1e-6);
}

TEST(FitSimilarity, NeverReflectsAMirroredFace) {
  // Mirroring the landmarks (x -> -x) can only be matched exactly by a reflection; a similarity
  // must stay a proper rotation with a positive determinant.
  Landmarks5 mirrored = kDetected;
  for (auto& p : mirrored) {
    p.x = 640.f - p.x;
  }
  const cv::Mat m = fit_similarity(mirrored, kTemplate);
  const double a = m.at<double>(0, 0), b = m.at<double>(1, 0);
  EXPECT_DOUBLE_EQ(m.at<double>(1, 1), a) << "not of the form [a -b; b a]";
  EXPECT_DOUBLE_EQ(m.at<double>(0, 1), -b) << "not of the form [a -b; b a]";
  const double det =
      m.at<double>(0, 0) * m.at<double>(1, 1) - m.at<double>(0, 1) * m.at<double>(1, 0);
  EXPECT_GT(det, 0.0);
}

TEST(FitSimilarity, GivesAZeroMatrixForDegeneratePoints) {
  Landmarks5 same{};
  for (auto& p : same) {
    p = {100.f, 120.f};
  }
  const cv::Mat m = fit_similarity(same, kTemplate);
  ASSERT_EQ(m.rows, 2);
  ASSERT_EQ(m.cols, 3);
  EXPECT_EQ(cv::countNonZero(m), 0);
}

TEST(FitSimilarity, MinimisesTheErrorOverAllFivePointsWhenNoExactFitExists) {
  // Move one point: the best fit spreads the error over all points instead of ignoring the
  // outlier (as RANSAC would), so no small perturbation of the result does better.
  Landmarks5 noisy = transform(kDetected, -0.2, 0.4, 10.0, 5.0);
  noisy[2].x += 6.f;
  const cv::Mat m = fit_similarity(kDetected, noisy);
  const auto error = [&](const cv::Mat& mm) {
    double e = 0;
    for (std::size_t i = 0; i < noisy.size(); ++i) {
      const Point2 p = apply(mm, kDetected[i]);
      e += (p.x - noisy[i].x) * (p.x - noisy[i].x) + (p.y - noisy[i].y) * (p.y - noisy[i].y);
    }
    return e;
  };
  const double best = error(m);
  EXPECT_GT(best, 1.0) << "the perturbed point cannot be fitted exactly";
  for (int k = 0; k < 4; ++k) {
    for (double step : {-1e-3, 1e-3}) {
      cv::Mat other = m.clone();
      // Perturb a, b, tx or ty while keeping the similarity form.
      if (k == 0) {
        other.at<double>(0, 0) += step;
        other.at<double>(1, 1) += step;
      } else if (k == 1) {
        other.at<double>(1, 0) += step;
        other.at<double>(0, 1) -= step;
      } else {
        other.at<double>(k - 2, 2) += step * 100;
      }
      EXPECT_GE(error(other), best) << "parameter " << k << " step " << step;
    }
  }
}

TEST(AlignFace, PutsTheLandmarksOnTheTemplate) {
  // A face whose landmarks have the template's shape, rotated, enlarged and moved into a
  // 640x480 frame, so that one similarity maps all five exactly and alignment has real work to do.
  cv::Mat frame(480, 640, CV_8UC3);
  cv::randu(frame, cv::Scalar::all(0), cv::Scalar::all(255));
  const Landmarks5 landmarks = transform(kTemplate, 0.25, 2.3, 180.0, 120.0);

  const cv::Mat crop = align_face(frame, landmarks, kTemplate, 112, 112);
  ASSERT_EQ(crop.cols, 112);
  ASSERT_EQ(crop.rows, 112);
  ASSERT_EQ(crop.type(), CV_8UC3);

  // The matrix align_face warps with takes each landmark to its template point.
  const cv::Mat m = fit_similarity(landmarks, kTemplate);
  for (std::size_t i = 0; i < landmarks.size(); ++i) {
    const Point2 p = apply(m, landmarks[i]);
    EXPECT_NEAR(p.x, kTemplate[i].x, 1e-3) << "landmark " << i;
    EXPECT_NEAR(p.y, kTemplate[i].y, 1e-3) << "landmark " << i;
  }
  // And the crop holds the frame's pixels there: the crop pixel at the template point shows
  // what the frame shows at the landmark (nearest-pixel check on a smooth image).
  cv::Mat smooth;
  cv::GaussianBlur(frame, smooth, cv::Size(0, 0), 6.0);
  const cv::Mat smooth_crop = align_face(smooth, landmarks, kTemplate, 112, 112);
  for (std::size_t i = 0; i < landmarks.size(); ++i) {
    const cv::Vec3b in_frame = smooth.at<cv::Vec3b>(static_cast<int>(std::lround(landmarks[i].y)),
                                                    static_cast<int>(std::lround(landmarks[i].x)));
    const cv::Vec3b in_crop =
        smooth_crop.at<cv::Vec3b>(static_cast<int>(std::lround(kTemplate[i].y)),
                                  static_cast<int>(std::lround(kTemplate[i].x)));
    for (int c = 0; c < 3; ++c) {
      EXPECT_NEAR(in_crop[c], in_frame[c], 4) << "landmark " << i << " channel " << c;
    }
  }
}

TEST(AlignFace, FillsPixelsFromOutsideTheFrameWithBlack) {
  cv::Mat frame(100, 100, CV_8UC3, cv::Scalar(200, 200, 200));
  // Landmarks at the frame's top-left corner, so the crop's top-left comes from outside.
  const Landmarks5 corner = transform(kTemplate, 0.0, 0.5, -15.0, -20.0);
  const cv::Mat crop = align_face(frame, corner, kTemplate, 112, 112);
  EXPECT_EQ(crop.at<cv::Vec3b>(0, 0), cv::Vec3b(0, 0, 0));
  EXPECT_EQ(crop.at<cv::Vec3b>(111, 111), cv::Vec3b(200, 200, 200));
  EXPECT_EQ(frame.at<cv::Vec3b>(0, 0), cv::Vec3b(200, 200, 200)) << "the frame was modified";
}

}  // namespace
}  // namespace facelogin::vision
