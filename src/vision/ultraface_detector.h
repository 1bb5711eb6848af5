#pragma once

// The fallback detector for machines that can reach only the npm registry: UltraFace RFB-320
// (boxes) followed by a 68-point landmark network on each box, reduced to the five points that
// alignment needs. Both networks ship in npm faceplugin-face-recognition-js 0.0.1.

#include <filesystem>
#include <memory>

#include <opencv2/dnn.hpp>

#include "facelogin/models.h"
#include "vision/detector.h"

namespace facelogin::vision {

// The 68-point landmark network (runtime "landmark68") on a square around a face box, reduced to
// the five points alignment needs. Also used after YuNet: its own five points align less well
// (docs/models.md). Not thread-safe (owns a network): one per worker.
class Landmark68 {
 public:
  // Errors: kModelError.
  [[nodiscard]] static Result<Landmark68> load(const ModelSpec& spec,
                                               const std::filesystem::path& model_dir);

  // Eye centres, nose tip and mouth corners of the face in `box` (frame pixels). May throw
  // cv::Exception or std::bad_alloc.
  Landmarks5 locate(const cv::Mat& frame, const cv::Rect2d& box);

 private:
  Landmark68(const ModelSpec& spec, cv::dnn::Net net);

  cv::Size input_;
  double mean_ = 0;
  double scale_ = 1;
  cv::dnn::Net net_;
};

// `detector` (runtime "ultraface") and `landmarks` (runtime "landmark68") are read from
// `model_dir`. Errors: kModelError.
[[nodiscard]] Result<std::unique_ptr<FaceDetector>> create_ultraface_detector(
    const ModelSpec& detector, const ModelSpec& landmarks, const std::filesystem::path& model_dir,
    const DetectorOptions& options);

}  // namespace facelogin::vision
