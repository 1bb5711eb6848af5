#pragma once

// The fallback detector for machines that can reach only the npm registry: UltraFace RFB-320
// (boxes) followed by a 68-point landmark network on each box, reduced to the five points that
// alignment needs. Both networks ship in npm faceplugin-face-recognition-js 0.0.1.

#include <filesystem>
#include <memory>

#include "facelogin/models.h"
#include "vision/detector.h"

namespace facelogin::vision {

// `detector` (runtime "ultraface") and `landmarks` (runtime "landmark68") are read from
// `model_dir`. Errors: kModelError.
[[nodiscard]] Result<std::unique_ptr<FaceDetector>> create_ultraface_detector(
    const ModelSpec& detector, const ModelSpec& landmarks, const std::filesystem::path& model_dir,
    const DetectorOptions& options);

}  // namespace facelogin::vision
