#pragma once

// The quality gate: is this face usable, and if not, what should the person do?

#include <opencv2/core.hpp>

#include "facelogin/engine.h"

namespace facelogin::vision {

// Head pose from the five landmarks, by fitting a generic 3-D face (solvePnP) with a pinhole
// camera whose focal length is the image width. Accurate to a few degrees near frontal, enough
// to tell "turned away" and, later, which way a head turned.
[[nodiscard]] HeadPose estimate_head_pose(const Landmarks5& landmarks, cv::Size image_size);

// Measures the subject's face in `frame` (BGR) and lists the issues against `options`.
[[nodiscard]] QualityReport assess_quality(const cv::Mat& frame, const DetectedFace& face,
                                           const QualityOptions& options);

}  // namespace facelogin::vision
