#pragma once

// Face detection with YuNet through cv::FaceDetectorYN.

#include <filesystem>
#include <memory>
#include <vector>

#include <opencv2/core.hpp>
#include <opencv2/objdetect.hpp>

#include "facelogin/engine.h"
#include "facelogin/status.h"

namespace facelogin::vision {

// Not thread-safe (owns a network): one per worker.
class FaceDetector {
 public:
  // Errors: kModelError if the model cannot be loaded.
  [[nodiscard]] static Result<std::unique_ptr<FaceDetector>> create(
      const std::filesystem::path& model_path, float score_threshold, int max_side);

  // Every face in `frame` (BGR), best score first, in `frame`'s coordinates. Detection runs on a
  // copy shrunk to at most max_side pixels on its longer side; boxes and landmarks are scaled
  // back.
  [[nodiscard]] Result<std::vector<DetectedFace>> detect(const cv::Mat& frame);

 private:
  FaceDetector(cv::Ptr<cv::FaceDetectorYN> net, int max_side)
      : net_(std::move(net)), max_side_(max_side) {}

  cv::Ptr<cv::FaceDetectorYN> net_;
  int max_side_;
  cv::Size input_size_;
};

}  // namespace facelogin::vision
