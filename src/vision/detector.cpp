#include "vision/detector.h"

#include <algorithm>
#include <cmath>
#include <exception>
#include <optional>

#include <fmt/format.h>
#include <opencv2/imgproc.hpp>
#include <opencv2/objdetect.hpp>

#include "vision/ultraface_detector.h"

namespace facelogin::vision {
namespace {

// YuNet through cv::FaceDetectorYN: boxes, five landmarks and a score in one network. With a
// landmark model, the five points are located again by it on the full-resolution frame.
class YunetDetector final : public FaceDetector {
 public:
  YunetDetector(cv::Ptr<cv::FaceDetectorYN> net, int max_side, std::optional<Landmark68> refine)
      : net_(std::move(net)), max_side_(max_side), refine_(std::move(refine)) {}

  Result<std::vector<DetectedFace>> detect(const cv::Mat& frame) override;

 private:
  cv::Ptr<cv::FaceDetectorYN> net_;
  int max_side_;
  std::optional<Landmark68> refine_;
  cv::Size input_size_;
};

Result<std::vector<DetectedFace>> YunetDetector::detect(const cv::Mat& frame) {
  if (frame.empty() || frame.type() != CV_8UC3) {
    return make_error(ErrorCode::kInternal, "detector needs a non-empty 8-bit BGR image");
  }
  double back = 1.0;
  cv::Mat small = shrink_for_detection(frame, max_side_, &back);
  const double back_x = static_cast<double>(frame.cols) / small.cols;
  const double back_y = static_cast<double>(frame.rows) / small.rows;
  // YuNet pools its input down by 32 and more: a side under 64 px makes OpenCV's shape check
  // throw (a 16x16 frame was a 500, issue 17). Padding at the right and bottom keeps every
  // coordinate; a face that small is not found anyway.
  constexpr int kMinSide = 64;
  if (small.cols < kMinSide || small.rows < kMinSide) {
    cv::Mat padded;
    cv::copyMakeBorder(small, padded, 0, std::max(0, kMinSide - small.rows), 0,
                       std::max(0, kMinSide - small.cols), cv::BORDER_CONSTANT, cv::Scalar::all(0));
    small = std::move(padded);
  }

  cv::Mat raw;
  try {
    if (small.size() != input_size_) {
      net_->setInputSize(small.size());
      input_size_ = small.size();
    }
    net_->detect(small, raw);
  } catch (const cv::Exception& e) {
    return make_error(ErrorCode::kInternal, fmt::format("face detection failed: {}", e.what()));
  }

  std::vector<DetectedFace> faces;
  for (int r = 0; r < raw.rows; ++r) {
    const float* row = raw.ptr<float>(r);
    DetectedFace face;
    face.box = {static_cast<float>(row[0] * back_x), static_cast<float>(row[1] * back_y),
                static_cast<float>(row[2] * back_x), static_cast<float>(row[3] * back_y)};
    for (int i = 0; i < 5; ++i) {
      face.landmarks[i] = {static_cast<float>(row[4 + 2 * i] * back_x),
                           static_cast<float>(row[5 + 2 * i] * back_y)};
    }
    face.score = row[14];
    if (face.box.width <= 1.f || face.box.height <= 1.f || !std::isfinite(face.score)) {
      continue;
    }
    if (refine_) {
      try {
        face.landmarks = refine_->locate(
            frame, cv::Rect2d(face.box.x, face.box.y, face.box.width, face.box.height));
      } catch (const std::exception& e) {
        return make_error(ErrorCode::kInternal,
                          fmt::format("landmark detection failed: {}", e.what()));
      }
    }
    faces.push_back(face);
  }
  std::sort(faces.begin(), faces.end(),
            [](const DetectedFace& a, const DetectedFace& b) { return a.score > b.score; });
  return faces;
}

}  // namespace

cv::Mat shrink_for_detection(const cv::Mat& frame, int max_side, double* scale) {
  const double s = std::min(1.0, static_cast<double>(std::max(32, max_side)) /
                                     std::max(frame.cols, frame.rows));
  if (s >= 1.0) {
    *scale = 1.0;
    return frame;
  }
  const int w = std::max(1, static_cast<int>(std::lround(frame.cols * s)));
  const int h = std::max(1, static_cast<int>(std::lround(frame.rows * s)));
  cv::Mat small;
  cv::resize(frame, small, cv::Size(w, h), 0, 0, cv::INTER_AREA);
  *scale = 1.0 / s;
  return small;
}

Result<std::unique_ptr<FaceDetector>> create_detector(const ModelSpec& spec,
                                                      const std::filesystem::path& model_dir,
                                                      const DetectorOptions& options) {
  const auto path = model_dir / spec.file;
  try {
    if (spec.runtime == "yunet") {
      std::optional<Landmark68> refine;
      if (!spec.companion_model.empty()) {
        const ModelSpec* landmarks = find_model(spec.companion_model);
        if (landmarks == nullptr) {
          return make_error(ErrorCode::kInternal,
                            fmt::format("detector {} names unknown landmark model {}", spec.id,
                                        spec.companion_model));
        }
        auto loaded = Landmark68::load(*landmarks, model_dir);
        if (!loaded) {
          return make_error(loaded.error());
        }
        refine = std::move(*loaded);
      }
      // NMS 0.3 and top-k 5000 are YuNet's published defaults.
      auto net = cv::FaceDetectorYN::create(path.string(), "", cv::Size(320, 320),
                                            options.score_threshold, 0.3f, 5000);
      if (net.empty()) {
        return make_error(ErrorCode::kModelError,
                          fmt::format("cannot load the face detector {}", path.string()));
      }
      return std::unique_ptr<FaceDetector>(
          new YunetDetector(std::move(net), options.max_side, std::move(refine)));
    }
    if (spec.runtime == "ultraface") {
      const ModelSpec* landmarks = find_model(spec.companion_model);
      if (landmarks == nullptr) {
        return make_error(ErrorCode::kInternal,
                          fmt::format("detector {} names unknown landmark model {}", spec.id,
                                      spec.companion_model));
      }
      return create_ultraface_detector(spec, *landmarks, model_dir, options);
    }
  } catch (const cv::Exception& e) {
    return make_error(ErrorCode::kModelError,
                      fmt::format("cannot load the face detector {}: {}", path.string(), e.what()));
  }
  return make_error(ErrorCode::kInternal,
                    fmt::format("detector {} has unknown runtime '{}'", spec.id, spec.runtime));
}

}  // namespace facelogin::vision
