#pragma once

// Face alignment: the similarity transform that takes detected landmarks onto a model's template.

#include <opencv2/core.hpp>

#include "facelogin/geometry.h"

namespace facelogin::vision {

// The similarity transform (rotation, uniform scale, translation; no reflection) that maps `from`
// onto `to` with the least total squared error over all five points (Umeyama, 1991), as a 2x3
// CV_64F matrix for cv::warpAffine. All five points count: cv::estimateAffinePartial2D's default
// RANSAC drops the nose and mouth as outliers and costs recognition accuracy.
[[nodiscard]] cv::Mat fit_similarity(const Landmarks5& from, const Landmarks5& to);

// Warps the region of `frame` around `landmarks` onto a width x height crop in which the
// landmarks land on `templ`. Pixels outside the frame are black, as in dlib's and InsightFace's
// chips. The frame is not modified.
[[nodiscard]] cv::Mat align_face(const cv::Mat& frame, const Landmarks5& landmarks,
                                 const Landmarks5& templ, int width, int height);

}  // namespace facelogin::vision
