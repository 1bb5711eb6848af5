#pragma once

// Face detectors. Every detector returns boxes with the five landmarks that alignment needs, in
// the coordinates of the frame it was given, best score first.

#include <filesystem>
#include <memory>
#include <vector>

#include <opencv2/core.hpp>

#include "facelogin/engine.h"
#include "facelogin/models.h"
#include "facelogin/status.h"

namespace facelogin::vision {

struct DetectorOptions {
  float score_threshold = 0.6f;
  // Detection runs on a copy shrunk to at most this many pixels on its longer side; boxes and
  // landmarks are scaled back to the full frame.
  int max_side = 320;
};

// Not thread-safe (owns networks): one per worker.
class FaceDetector {
 public:
  virtual ~FaceDetector() = default;

  // Every face in `frame` (8-bit BGR), best score first, in `frame`'s coordinates.
  // Errors: kInternal if inference fails.
  [[nodiscard]] virtual Result<std::vector<DetectedFace>> detect(const cv::Mat& frame) = 0;
};

// Builds the detector that `spec` describes (spec.kind == kDetector), reading its files (and those
// of spec.companion_model, for detectors that need a landmark model) from `model_dir`; the files
// must already have been checked against their sha256. Errors: kModelError.
[[nodiscard]] Result<std::unique_ptr<FaceDetector>> create_detector(
    const ModelSpec& spec, const std::filesystem::path& model_dir, const DetectorOptions& options);

// Shrinks `frame` so that its longer side is at most max_side (never enlarges); `scale` receives
// the factor from the small image's coordinates back to the frame's.
[[nodiscard]] cv::Mat shrink_for_detection(const cv::Mat& frame, int max_side, double* scale);

}  // namespace facelogin::vision
