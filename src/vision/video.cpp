// VideoReader over cv::VideoCapture (FFmpeg backend in Debian's OpenCV).

#include <fmt/format.h>

#include <opencv2/core.hpp>
#include <opencv2/videoio.hpp>

#include "facelogin/image.h"
#include "vision/cv_image.h"

namespace facelogin {
namespace {

class CvVideoReader final : public VideoReader {
 public:
  CvVideoReader(cv::VideoCapture capture, DecodeLimits limits, std::string name)
      : capture_(std::move(capture)), limits_(limits), name_(std::move(name)) {}

  double fps() const override { return capture_.get(cv::CAP_PROP_FPS); }

  Result<std::optional<Image>> next() override {
    cv::Mat frame;
    try {
      if (!capture_.read(frame) || frame.empty()) {
        return std::optional<Image>();
      }
    } catch (const cv::Exception& e) {
      return make_error(ErrorCode::kBadImage,
                        fmt::format("{}: cannot decode a frame: {}", name_, e.what()));
    }
    if (frame.cols > limits_.max_side || frame.rows > limits_.max_side ||
        static_cast<std::int64_t>(frame.cols) * frame.rows > limits_.max_pixels) {
      return make_error(
          ErrorCode::kImageTooLarge,
          fmt::format("{}: a {}x{} frame is over the limits", name_, frame.cols, frame.rows));
    }
    if (frame.type() != CV_8UC3) {
      return make_error(ErrorCode::kBadImage,
                        fmt::format("{}: frames are not 8-bit colour", name_));
    }
    return std::optional<Image>(vision::from_mat(frame));
  }

 private:
  cv::VideoCapture capture_;
  DecodeLimits limits_;
  std::string name_;
};

}  // namespace

Result<std::unique_ptr<VideoReader>> VideoReader::open(const std::filesystem::path& path,
                                                       const DecodeLimits& limits) {
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec)) {
    return make_error(ErrorCode::kNotFound, fmt::format("{}: no such file", path.string()));
  }
  cv::VideoCapture capture;
  try {
    capture.open(path.string(), cv::CAP_FFMPEG);
  } catch (const cv::Exception& e) {
    return make_error(ErrorCode::kBadImage,
                      fmt::format("{}: cannot open as a video: {}", path.string(), e.what()));
  }
  if (!capture.isOpened()) {
    return make_error(ErrorCode::kBadImage,
                      fmt::format("{}: not a video file OpenCV can read", path.string()));
  }
  return std::unique_ptr<VideoReader>(
      new CvVideoReader(std::move(capture), limits, path.filename().string()));
}

Result<std::unique_ptr<VideoReader>> VideoReader::open_camera(int index,
                                                              const DecodeLimits& limits) {
  cv::VideoCapture capture;
  try {
    capture.open(index, cv::CAP_ANY);
  } catch (const cv::Exception& e) {
    return make_error(ErrorCode::kNotFound,
                      fmt::format("camera {} cannot be opened: {}", index, e.what()));
  }
  if (!capture.isOpened()) {
    return make_error(ErrorCode::kNotFound, fmt::format("camera {} cannot be opened", index));
  }
  return std::unique_ptr<VideoReader>(
      new CvVideoReader(std::move(capture), limits, fmt::format("camera {}", index)));
}

}  // namespace facelogin
