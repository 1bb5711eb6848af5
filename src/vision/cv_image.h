#pragma once

// Conversions between the engine's Image and cv::Mat. Internal to the engine: only .cpp files
// include this header, so public headers never show OpenCV types.

#include <opencv2/core/mat.hpp>

#include "facelogin/image.h"

namespace facelogin::vision {

// A CV_8UC3 (BGR) header over image.bgr, without copying. The Mat borrows the pixels: it is valid
// while `image` lives and its buffer is not resized, and it must not outlive either. The view of
// a const Image must be treated as read-only (cv::Mat has no const-pixel form): pass it on as
// cv::InputArray or clone() it before writing. Returns an empty Mat if the image is empty or its
// buffer does not hold exactly width * height * 3 bytes. Thread-compatible.
[[nodiscard]] cv::Mat as_mat(const Image& image);
// The same view over a mutable Image: writing through it changes image.bgr.
[[nodiscard]] cv::Mat as_mat(Image& image);

// A copy of `mat` as an Image. Accepts CV_8UC3 (taken as BGR), CV_8UC1 (grey) and CV_8UC4 (BGRA;
// alpha is dropped); the two latter are converted to BGR. Any other type, or an empty Mat, gives
// an empty Image. `mat` need not be continuous (a ROI is fine). Thread-compatible.
[[nodiscard]] Image from_mat(const cv::Mat& mat);

}  // namespace facelogin::vision
