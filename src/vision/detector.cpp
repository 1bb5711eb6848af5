#include "vision/detector.h"

#include <algorithm>
#include <cmath>

#include <fmt/format.h>
#include <opencv2/imgproc.hpp>

namespace facelogin::vision {

Result<std::unique_ptr<FaceDetector>> FaceDetector::create(const std::filesystem::path& model_path,
                                                           float score_threshold, int max_side) {
  try {
    // NMS 0.3 and top-k 5000 are YuNet's published defaults.
    auto net = cv::FaceDetectorYN::create(model_path.string(), "", cv::Size(320, 320),
                                          score_threshold, 0.3f, 5000);
    if (net.empty()) {
      return make_error(ErrorCode::kModelError,
                        fmt::format("cannot load the face detector {}", model_path.string()));
    }
    return std::unique_ptr<FaceDetector>(new FaceDetector(std::move(net), std::max(32, max_side)));
  } catch (const cv::Exception& e) {
    return make_error(ErrorCode::kModelError, fmt::format("cannot load the face detector {}: {}",
                                                          model_path.string(), e.what()));
  }
}

Result<std::vector<DetectedFace>> FaceDetector::detect(const cv::Mat& frame) {
  if (frame.empty() || frame.type() != CV_8UC3) {
    return make_error(ErrorCode::kInternal, "detector needs a non-empty 8-bit BGR image");
  }
  const double scale =
      std::min(1.0, static_cast<double>(max_side_) / std::max(frame.cols, frame.rows));
  cv::Mat small;
  if (scale < 1.0) {
    const int w = std::max(1, static_cast<int>(std::lround(frame.cols * scale)));
    const int h = std::max(1, static_cast<int>(std::lround(frame.rows * scale)));
    cv::resize(frame, small, cv::Size(w, h), 0, 0, cv::INTER_AREA);
  } else {
    small = frame;
  }
  const double back_x = static_cast<double>(frame.cols) / small.cols;
  const double back_y = static_cast<double>(frame.rows) / small.rows;

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
    faces.push_back(face);
  }
  std::sort(faces.begin(), faces.end(),
            [](const DetectedFace& a, const DetectedFace& b) { return a.score > b.score; });
  return faces;
}

}  // namespace facelogin::vision
