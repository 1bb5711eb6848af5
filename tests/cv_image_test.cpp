// Tests for the Image <-> cv::Mat conversions (src/vision/cv_image.h).

#include <gtest/gtest.h>

#include <cstdint>

#include <opencv2/core.hpp>
#include <opencv2/imgproc.hpp>

#include "facelogin/image.h"
#include "vision/cv_image.h"

namespace facelogin::vision {
namespace {

Image make_image(int width, int height) {
  Image image;
  image.width = width;
  image.height = height;
  image.bgr.resize(static_cast<std::size_t>(width * height * 3));
  for (std::size_t i = 0; i < image.bgr.size(); ++i) {
    image.bgr[i] = static_cast<std::uint8_t>(i * 7);
  }
  return image;
}

TEST(ImageConversion, AsMatIsABgrViewOfTheSamePixels) {
  const Image image = make_image(5, 3);
  const cv::Mat mat = as_mat(image);
  EXPECT_EQ(mat.type(), CV_8UC3);
  EXPECT_EQ(mat.cols, 5);
  EXPECT_EQ(mat.rows, 3);
  EXPECT_EQ(mat.data, image.bgr.data()) << "as_mat must not copy";
  // Pixel (x=4, y=2), channel 1 (green) is bgr[(2 * 5 + 4) * 3 + 1].
  EXPECT_EQ(mat.at<cv::Vec3b>(2, 4)[1], image.bgr[(2 * 5 + 4) * 3 + 1]);
}

TEST(ImageConversion, AsMatOfAMutableImageWritesThrough) {
  Image image = make_image(4, 4);
  as_mat(image).setTo(cv::Scalar(1, 2, 3));
  EXPECT_EQ(image.bgr[0], 1);
  EXPECT_EQ(image.bgr[1], 2);
  EXPECT_EQ(image.bgr[2], 3);
}

TEST(ImageConversion, AsMatOfAnEmptyOrInconsistentImageIsEmpty) {
  EXPECT_TRUE(as_mat(Image{}).empty());
  Image short_buffer = make_image(4, 4);
  short_buffer.bgr.pop_back();
  EXPECT_TRUE(as_mat(short_buffer).empty());
}

TEST(ImageConversion, FromMatCopiesABgrMat) {
  cv::Mat mat(3, 5, CV_8UC3);
  cv::randu(mat, 0, 256);
  const Image image = from_mat(mat);
  ASSERT_EQ(image.width, 5);
  ASSERT_EQ(image.height, 3);
  EXPECT_NE(image.bgr.data(), mat.data) << "from_mat must copy";
  EXPECT_EQ(cv::norm(as_mat(image), mat, cv::NORM_INF), 0.0);
}

TEST(ImageConversion, FromMatConvertsGreyAndBgraToBgr) {
  cv::Mat grey(4, 6, CV_8UC1);
  cv::randu(grey, 0, 256);
  cv::Mat expected;
  cv::cvtColor(grey, expected, cv::COLOR_GRAY2BGR);
  EXPECT_EQ(cv::norm(as_mat(from_mat(grey)), expected, cv::NORM_INF), 0.0);

  cv::Mat bgra(4, 6, CV_8UC4);
  cv::randu(bgra, 0, 256);
  cv::cvtColor(bgra, expected, cv::COLOR_BGRA2BGR);
  EXPECT_EQ(cv::norm(as_mat(from_mat(bgra)), expected, cv::NORM_INF), 0.0);
}

TEST(ImageConversion, FromMatCopiesANonContinuousRegion) {
  cv::Mat big(10, 10, CV_8UC3);
  cv::randu(big, 0, 256);
  const cv::Mat roi = big(cv::Rect(2, 3, 4, 5));
  ASSERT_FALSE(roi.isContinuous());
  const Image image = from_mat(roi);
  ASSERT_EQ(image.width, 4);
  ASSERT_EQ(image.height, 5);
  EXPECT_EQ(cv::norm(as_mat(image), roi, cv::NORM_INF), 0.0);
}

TEST(ImageConversion, FromMatGivesAnEmptyImageForUnsupportedTypes) {
  EXPECT_TRUE(from_mat(cv::Mat()).empty());
  EXPECT_TRUE(from_mat(cv::Mat(4, 4, CV_32FC3, cv::Scalar::all(0.5))).empty());
  EXPECT_TRUE(from_mat(cv::Mat(4, 4, CV_16UC3, cv::Scalar::all(1))).empty());
  EXPECT_TRUE(from_mat(cv::Mat(4, 4, CV_8UC2, cv::Scalar::all(1))).empty());
}

}  // namespace
}  // namespace facelogin::vision
