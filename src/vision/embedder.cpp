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

Result<ModelViews> Embedder::embed_crop(const cv::Mat& crop, bool mirrored) {
  if (crop.empty() || crop.type() != CV_8UC3 || crop.cols != spec_.input_width ||
      crop.rows != spec_.input_height) {
    return make_error(ErrorCode::kInternal,
                      fmt::format("model {} needs a {}x{} BGR crop", spec_.id, spec_.input_width,
                                  spec_.input_height));
  }
  ModelViews views;
  auto original = embed_one(crop);
  if (!original) {
    return make_error(original.error());
  }
  views.original = std::move(*original);
  if (mirrored) {
    if (Status s = add_mirrored(crop, views); !s.ok()) {
      return make_error(std::move(s));
    }
  }
  return views;
}

Status Embedder::add_mirrored(const cv::Mat& crop, ModelViews& views) {
  // A second batch-1 pass rather than one batch of two: with OpenCV 4.6 on one core a batch of
  // two costs 2.2x one image for both recognition networks (docs/models.md, Speed).
  cv::Mat flipped;
  cv::flip(crop, flipped, 1);
  auto mirror = embed_one(flipped);
  if (!mirror) {
    return mirror.error();
  }
  views.mirrored = std::move(*mirror);
  return Status::Ok();
}

Result<std::vector<float>> Embedder::embed_one(const cv::Mat& image) {
  const bool swap_rb = spec_.color == ColorOrder::kRgb;
  // blobFromImage computes (pixel - mean) * scale after the optional channel swap, so mean is
  // given in the model's colour order, as ModelSpec stores it.
  const cv::Scalar mean(spec_.mean[0], spec_.mean[1], spec_.mean[2]);
  cv::Mat out;
  try {
    cv::Mat blob =
        cv::dnn::blobFromImage(image, spec_.scale, cv::Size(), mean, swap_rb, false, CV_32F);
    net_.setInput(blob);
    out = net_.forward();
  } catch (const cv::Exception& e) {
    return make_error(ErrorCode::kInternal,
                      fmt::format("model {} failed to run: {}", spec_.id, e.what()));
  }
  const auto expected = static_cast<std::size_t>(spec_.embedding_size);
  if (out.type() != CV_32F || !out.isContinuous() || out.total() != expected) {
    return make_error(ErrorCode::kModelError,
                      fmt::format("model {} produced {} values for a face, its description "
                                  "says {}",
                                  spec_.id, out.total(), spec_.embedding_size));
  }
  const float* row = out.ptr<float>();
  std::vector<float> v(row, row + spec_.embedding_size);
  double norm = 0;
  for (float x : v) {
    norm += static_cast<double>(x) * x;
  }
  if (!(norm > 0) || !std::isfinite(norm)) {
    return make_error(ErrorCode::kInternal,
                      fmt::format("model {} produced a zero or non-finite embedding", spec_.id));
  }
  const float inv = static_cast<float>(1.0 / std::sqrt(norm));
  for (float& x : v) {
    x *= inv;
  }
  return v;
}

}  // namespace facelogin::vision
