#include "vision/embedder.h"

#include <cmath>

#include <fmt/format.h>
#include <opencv2/imgproc.hpp>

#include "vision/align.h"

namespace facelogin::vision {

Result<std::unique_ptr<Embedder>> Embedder::create(const ModelSpec& spec,
                                                   const std::vector<unsigned char>& onnx_bytes) {
  try {
    cv::dnn::Net net = cv::dnn::readNetFromONNX(onnx_bytes);
    if (net.empty()) {
      return make_error(ErrorCode::kModelError, fmt::format("cannot build model {}", spec.id));
    }
    net.setPreferableBackend(cv::dnn::DNN_BACKEND_OPENCV);
    net.setPreferableTarget(cv::dnn::DNN_TARGET_CPU);
    return std::unique_ptr<Embedder>(new Embedder(spec, std::move(net)));
  } catch (const cv::Exception& e) {
    return make_error(ErrorCode::kModelError,
                      fmt::format("cannot build model {}: {}", spec.id, e.what()));
  }
}

cv::Mat Embedder::crop(const cv::Mat& frame, const Landmarks5& landmarks) const {
  return align_face(frame, landmarks, spec_.alignment, spec_.input_width, spec_.input_height);
}

Result<std::vector<float>> Embedder::embed_crop(const cv::Mat& crop, bool flip) {
  if (crop.empty() || crop.type() != CV_8UC3 || crop.cols != spec_.input_width ||
      crop.rows != spec_.input_height) {
    return make_error(ErrorCode::kInternal,
                      fmt::format("model {} needs a {}x{} BGR crop", spec_.id, spec_.input_width,
                                  spec_.input_height));
  }
  std::vector<cv::Mat> batch{crop};
  if (flip) {
    cv::Mat mirrored;
    cv::flip(crop, mirrored, 1);
    batch.push_back(mirrored);
  }
  const bool swap_rb = spec_.color == ColorOrder::kRgb;
  // blobFromImages computes (pixel - mean) * scale after the optional channel swap, so mean is
  // given in the model's colour order, as ModelSpec stores it.
  const cv::Scalar mean(spec_.mean[0], spec_.mean[1], spec_.mean[2]);
  cv::Mat out;
  try {
    cv::Mat blob = cv::dnn::blobFromImages(batch, spec_.scale, cv::Size(), mean, swap_rb, false,
                                           CV_32F);
    net_.setInput(blob);
    out = net_.forward();
  } catch (const cv::Exception& e) {
    return make_error(ErrorCode::kInternal,
                      fmt::format("model {} failed to run: {}", spec_.id, e.what()));
  }
  out = out.reshape(1, static_cast<int>(batch.size()));
  if (out.cols != spec_.embedding_size || out.type() != CV_32F) {
    return make_error(ErrorCode::kModelError,
                      fmt::format("model {} produced {} values, its description says {}", spec_.id,
                                  out.cols, spec_.embedding_size));
  }
  std::vector<float> embedding(static_cast<std::size_t>(spec_.embedding_size), 0.f);
  for (int b = 0; b < out.rows; ++b) {
    // Each view is normalised before averaging so that neither dominates.
    const float* row = out.ptr<float>(b);
    double norm = 0;
    for (int i = 0; i < out.cols; ++i) {
      norm += static_cast<double>(row[i]) * row[i];
    }
    const float inv = norm > 0 ? static_cast<float>(1.0 / std::sqrt(norm)) : 0.f;
    for (int i = 0; i < out.cols; ++i) {
      embedding[static_cast<std::size_t>(i)] += row[i] * inv;
    }
  }
  double norm = 0;
  for (float v : embedding) {
    norm += static_cast<double>(v) * v;
  }
  if (!(norm > 0) || !std::isfinite(norm)) {
    return make_error(ErrorCode::kInternal, fmt::format("model {} produced a zero or non-finite "
                                                        "embedding",
                                                        spec_.id));
  }
  const float inv = static_cast<float>(1.0 / std::sqrt(norm));
  for (float& v : embedding) {
    v *= inv;
  }
  return embedding;
}

}  // namespace facelogin::vision
