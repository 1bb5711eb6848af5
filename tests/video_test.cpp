// VideoReader (src/vision/video.cpp): frames of a local video file, with the image limits.

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <opencv2/core.hpp>
#include <opencv2/videoio.hpp>
#include <string>

#include "facelogin/image.h"
#include "test_data.h"

namespace facelogin {
namespace {

namespace fs = std::filesystem;

class VideoReaderTest : public ::testing::Test {
 protected:
  void SetUp() override { dir_ = testing::make_temp_dir("facelogin-video"); }
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }

  // A 5-frame 64x48 MJPEG AVI, each frame a different grey.
  fs::path write_video() {
    const fs::path path = dir_ / "clip.avi";
    cv::VideoWriter writer(path.string(), cv::CAP_FFMPEG,
                           cv::VideoWriter::fourcc('M', 'J', 'P', 'G'), 10.0, cv::Size(64, 48));
    if (!writer.isOpened()) {
      return {};
    }
    for (int i = 0; i < 5; ++i) {
      writer.write(cv::Mat(48, 64, CV_8UC3, cv::Scalar::all(40 * i + 20)));
    }
    writer.release();
    return path;
  }

  fs::path dir_;
};

TEST_F(VideoReaderTest, ReadsEveryFrameInOrder) {
  const fs::path path = write_video();
  if (path.empty()) {
    GTEST_SKIP() << "this OpenCV cannot write MJPEG AVI";
  }
  auto video = VideoReader::open(path);
  ASSERT_TRUE(video.has_value()) << video.error().to_string();
  EXPECT_NEAR((*video)->fps(), 10.0, 0.01);
  int frames = 0;
  int last_grey = -1;
  while (true) {
    auto frame = (*video)->next();
    ASSERT_TRUE(frame.has_value()) << frame.error().to_string();
    if (!*frame) {
      break;
    }
    EXPECT_EQ((*frame)->width, 64);
    EXPECT_EQ((*frame)->height, 48);
    const int grey = (*frame)->bgr[(24 * 64 + 32) * 3];
    EXPECT_GT(grey, last_grey);  // the greys rise frame by frame
    last_grey = grey;
    ++frames;
  }
  EXPECT_EQ(frames, 5);
}

TEST_F(VideoReaderTest, RefusesFramesOverTheLimits) {
  const fs::path path = write_video();
  if (path.empty()) {
    GTEST_SKIP() << "this OpenCV cannot write MJPEG AVI";
  }
  DecodeLimits limits;
  limits.max_side = 32;
  auto video = VideoReader::open(path, limits);
  ASSERT_TRUE(video.has_value()) << video.error().to_string();
  auto frame = (*video)->next();
  ASSERT_FALSE(frame.has_value());
  EXPECT_EQ(frame.error().code(), ErrorCode::kImageTooLarge);
}

TEST_F(VideoReaderTest, ReportsAMissingFileAndAFileThatIsNoVideo) {
  auto missing = VideoReader::open(dir_ / "absent.webm");
  ASSERT_FALSE(missing.has_value());
  EXPECT_EQ(missing.error().code(), ErrorCode::kNotFound);
  const fs::path text = dir_ / "notes.webm";
  std::ofstream(text) << "not a video at all";
  auto bad = VideoReader::open(text);
  ASSERT_FALSE(bad.has_value());
  EXPECT_EQ(bad.error().code(), ErrorCode::kBadImage);
  auto directory = VideoReader::open(dir_);
  ASSERT_FALSE(directory.has_value());
  EXPECT_EQ(directory.error().code(), ErrorCode::kNotFound);
}

}  // namespace
}  // namespace facelogin
