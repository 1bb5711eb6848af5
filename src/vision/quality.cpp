#include "vision/quality.h"

#include <algorithm>
#include <array>
#include <cmath>

#include <opencv2/calib3d.hpp>
#include <opencv2/imgproc.hpp>

namespace facelogin::vision {
namespace {

constexpr double kPi = 3.14159265358979323846;

// A generic adult face in millimetres, camera convention (x right in the image, y down, z away
// from the camera), nose tip at the origin, in Landmarks5 order. The subject's right eye is on
// the image's left. Depths follow anthropometric averages: eyes ~30 mm and mouth corners ~20 mm
// behind the nose tip.
const std::array<cv::Point3d, 5> kFace3d = {{{-32.0, -35.0, 30.0},
                                             {32.0, -35.0, 30.0},
                                             {0.0, 0.0, 0.0},
                                             {-25.0, 30.0, 20.0},
                                             {25.0, 30.0, 20.0}}};

}  // namespace

HeadPose estimate_head_pose(const Landmarks5& landmarks, cv::Size image_size) {
  std::vector<cv::Point3d> object(kFace3d.begin(), kFace3d.end());
  std::vector<cv::Point2d> image;
  image.reserve(5);
  for (const auto& p : landmarks) {
    image.emplace_back(p.x, p.y);
  }
  const double f = std::max(image_size.width, image_size.height);
  const cv::Matx33d camera(f, 0, image_size.width / 2.0, 0, f, image_size.height / 2.0, 0, 0, 1);
  cv::Vec3d rvec, tvec;
  HeadPose pose;
  try {
    // A frontal initial guess keeps the iterative solver from the mirrored solution that five
    // nearly coplanar points allow.
    const cv::Point2d eyes_mid((image[0].x + image[1].x) / 2, (image[0].y + image[1].y) / 2);
    const double eye_px = std::hypot(image[1].x - image[0].x, image[1].y - image[0].y);
    const double distance = eye_px > 1e-3 ? f * 64.0 / eye_px : 600.0;
    rvec = cv::Vec3d(0, 0, 0);
    tvec = cv::Vec3d((eyes_mid.x - image_size.width / 2.0) * distance / f,
                     (eyes_mid.y + 35.0 * f / distance - image_size.height / 2.0) * distance / f,
                     distance);
    if (!cv::solvePnP(object, image, camera, cv::noArray(), rvec, tvec, true,
                      cv::SOLVEPNP_ITERATIVE)) {
      return pose;
    }
  } catch (const cv::Exception&) {
    return pose;
  }
  cv::Matx33d r;
  cv::Rodrigues(rvec, r);
  // Rotation of the face in camera coordinates, decomposed as R = Rz(roll) * Ry(yaw) * Rx(pitch).
  const double yaw = std::asin(std::clamp(-r(2, 0), -1.0, 1.0));
  const double pitch = std::atan2(r(2, 1), r(2, 2));
  const double roll = std::atan2(r(1, 0), r(0, 0));
  // Sign conventions of HeadPose: yaw > 0 when the face points to the image's right (the subject
  // turned to their left), pitch > 0 when looking up, roll > 0 clockwise in the image.
  pose.yaw = static_cast<float>(-yaw * 180.0 / kPi);
  pose.pitch = static_cast<float>(-pitch * 180.0 / kPi);
  pose.roll = static_cast<float>(roll * 180.0 / kPi);
  return pose;
}

QualityReport assess_quality(const cv::Mat& frame, const DetectedFace& face,
                             const QualityOptions& options) {
  QualityReport report;
  const Box& box = face.box;
  report.face_width_px = box.width;

  const cv::Rect2f full(box.x, box.y, box.width, box.height);
  const cv::Rect2f frame_rect(0.f, 0.f, static_cast<float>(frame.cols),
                              static_cast<float>(frame.rows));
  const cv::Rect2f inside = full & frame_rect;
  const float outside_fraction = full.area() > 0.f ? 1.f - inside.area() / full.area() : 1.f;

  if (box.width < options.min_face_px) {
    report.issues.push_back(QualityIssue::kTooSmall);
  }
  if (box.width > options.max_face_fraction * static_cast<float>(frame.cols) ||
      box.height > options.max_face_fraction * static_cast<float>(frame.rows)) {
    report.issues.push_back(QualityIssue::kTooClose);
  }
  bool landmark_outside = false;
  for (const auto& p : face.landmarks) {
    landmark_outside |= p.x < 0.f || p.y < 0.f || p.x >= static_cast<float>(frame.cols) ||
                        p.y >= static_cast<float>(frame.rows);
  }
  if (outside_fraction > options.max_outside_fraction || landmark_outside) {
    report.issues.push_back(QualityIssue::kCutOff);
  }

  const cv::Rect roi(cv::Point(static_cast<int>(std::ceil(inside.x)),
                               static_cast<int>(std::ceil(inside.y))),
                     cv::Point(static_cast<int>(std::floor(inside.x + inside.width)),
                               static_cast<int>(std::floor(inside.y + inside.height))));
  if (roi.width >= 8 && roi.height >= 8) {
    cv::Mat grey;
    cv::cvtColor(frame(roi), grey, cv::COLOR_BGR2GRAY);
    report.brightness = static_cast<float>(cv::mean(grey)[0]);
    report.saturated_fraction =
        static_cast<float>(cv::countNonZero(grey >= 250)) / static_cast<float>(grey.total());
    // Sharpness on a fixed-size face, so that it does not depend on how large the face is.
    cv::Mat scaled, lap;
    cv::resize(grey, scaled, cv::Size(128, 128), 0, 0, cv::INTER_AREA);
    cv::Laplacian(scaled, lap, CV_32F);
    cv::Scalar mean, stddev;
    cv::meanStdDev(lap, mean, stddev);
    report.sharpness = static_cast<float>(stddev[0] * stddev[0]);
  }
  if (report.brightness < options.min_brightness) {
    report.issues.push_back(QualityIssue::kTooDark);
  } else if (report.brightness > options.max_brightness ||
             report.saturated_fraction > options.max_saturated_fraction) {
    report.issues.push_back(QualityIssue::kOverexposed);
  }
  if (report.sharpness < options.min_sharpness) {
    report.issues.push_back(QualityIssue::kBlurred);
  }

  report.pose = estimate_head_pose(face.landmarks, frame.size());
  if (std::abs(report.pose.yaw) > options.max_yaw ||
      std::abs(report.pose.pitch) > options.max_pitch ||
      std::abs(report.pose.roll) > options.max_roll) {
    report.issues.push_back(QualityIssue::kTurnedAway);
  }

  // A soft score for choosing the best frames: each factor is 1 when comfortably good.
  const auto ramp = [](float v, float lo, float hi) {
    return std::clamp((v - lo) / std::max(hi - lo, 1e-6f), 0.f, 1.f);
  };
  const float size_s = ramp(box.width, options.min_face_px, options.min_face_px * 2.f);
  const float sharp_s = ramp(report.sharpness, options.min_sharpness, options.min_sharpness * 4.f);
  const float light_s = std::min(ramp(report.brightness, options.min_brightness, 90.f),
                                 1.f - ramp(report.brightness, 170.f, options.max_brightness));
  const float pose_s = 1.f - ramp(std::max(std::abs(report.pose.yaw), std::abs(report.pose.pitch)),
                                  5.f, options.max_yaw);
  report.score = size_s * sharp_s * light_s * pose_s;
  return report;
}

}  // namespace facelogin::vision
