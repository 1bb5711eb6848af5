#pragma once

// Face embedding with any ModelSpec of kind kEmbedder: align to the model's template, normalise
// as the model expects, run the network, L2-normalise.

#include <memory>
#include <vector>

#include <opencv2/core.hpp>
#include <opencv2/dnn.hpp>

#include "facelogin/models.h"
#include "facelogin/status.h"

namespace facelogin::vision {

// Not thread-safe (owns a network): one per worker. The model bytes may be shared.
class Embedder {
 public:
  // Builds the network from ONNX bytes already checked against spec.sha256.
  // Errors: kModelError.
  [[nodiscard]] static Result<std::unique_ptr<Embedder>> create(
      const ModelSpec& spec, const std::vector<unsigned char>& onnx_bytes);

  const ModelSpec& spec() const { return spec_; }

  // The aligned input crop (BGR, input_width x input_height) for `landmarks` in `frame`.
  [[nodiscard]] cv::Mat crop(const cv::Mat& frame, const Landmarks5& landmarks) const;

  // The unit-length embeddings of an aligned crop and, with `mirrored`, of its mirror image
  // (one forward pass each).
  [[nodiscard]] Result<ModelViews> embed_crop(const cv::Mat& crop, bool mirrored);

  // Adds the mirror image's embedding to views of `crop` made without it (one forward pass).
  [[nodiscard]] Status add_mirrored(const cv::Mat& crop, ModelViews& views);

 private:
  // The unit-length embedding of one crop of the model's input size.
  [[nodiscard]] Result<std::vector<float>> embed_one(const cv::Mat& image);

  Embedder(const ModelSpec& spec, cv::dnn::Net net) : spec_(spec), net_(std::move(net)) {}

  const ModelSpec& spec_;
  cv::dnn::Net net_;
};

}  // namespace facelogin::vision
