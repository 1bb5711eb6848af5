#include "vision/cv_image.h"

#include <cstddef>

#include <opencv2/imgproc.hpp>

namespace facelogin::vision {
namespace {

bool has_consistent_buffer(const Image& image) {
  if (image.empty()) {
    return false;
  }
  // Compare in size_t: width * height * 3 can exceed int for a large (but valid) image.
  const auto expected = static_cast<std::size_t>(image.width) *
                        static_cast<std::size_t>(image.height) * std::size_t{3};
  return image.bgr.size() == expected;
}

}  // namespace

cv::Mat as_mat(const Image& image) {
  if (!has_consistent_buffer(image)) {
    return {};
  }
  // cv::Mat only takes a mutable pointer; the contract above makes the const view read-only.
  return cv::Mat(image.height, image.width, CV_8UC3, const_cast<std::uint8_t*>(image.bgr.data()));
}

cv::Mat as_mat(Image& image) {
  if (!has_consistent_buffer(image)) {
    return {};
  }
  return cv::Mat(image.height, image.width, CV_8UC3, image.bgr.data());
}

Image from_mat(const cv::Mat& mat) {
  if (mat.empty() || mat.dims != 2) {
    return {};
  }
  const int type = mat.type();
  if (type != CV_8UC1 && type != CV_8UC3 && type != CV_8UC4) {
    return {};
  }
  Image image;
  image.width = mat.cols;
  image.height = mat.rows;
  image.bgr.resize(static_cast<std::size_t>(mat.cols) * static_cast<std::size_t>(mat.rows) * 3);
  // Write straight into the Image's buffer: with a destination of the right size and type,
  // copyTo and cvtColor fill it in place instead of allocating.
  cv::Mat dst = as_mat(image);
  switch (type) {
    case CV_8UC1:
      cv::cvtColor(mat, dst, cv::COLOR_GRAY2BGR);
      break;
    case CV_8UC4:
      cv::cvtColor(mat, dst, cv::COLOR_BGRA2BGR);
      break;
    default:
      mat.copyTo(dst);
      break;
  }
  if (dst.data != image.bgr.data()) {
    // Not expected, but never hand back a buffer that was not written.
    return {};
  }
  return image;
}

}  // namespace facelogin::vision
