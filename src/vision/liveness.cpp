#include "facelogin/liveness.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <opencv2/dnn.hpp>
#include <opencv2/imgproc.hpp>

#include "facelogin/models.h"
#include "vision/cv_image.h"

namespace facelogin {

Box liveness_crop_box(const Box& face, float scale, int frame_width, int frame_height) {
  const double w = face.width;
  const double h = face.height;
  const double max_x = frame_width - 1;
  const double max_y = frame_height - 1;
  // The Silent-Face recipe: lower the enlargement until the crop fits, then shift it inside.
  const double s = std::min({static_cast<double>(scale), max_x / w, max_y / h});
  const double cx = face.x + w / 2;
  const double cy = face.y + h / 2;
  double left = cx - w * s / 2;
  double right = cx + w * s / 2;
  double top = cy - h * s / 2;
  double bottom = cy + h * s / 2;
  if (left < 0) {
    right -= left;
    left = 0;
  }
  if (top < 0) {
    bottom -= top;
    top = 0;
  }
  if (right > max_x) {
    left -= right - max_x;
    right = max_x;
  }
  if (bottom > max_y) {
    top -= bottom - max_y;
    bottom = max_y;
  }
  const auto clamp_int = [](double v, double hi) {
    return static_cast<int>(std::clamp(v, 0.0, hi));  // truncates, as the recipe does
  };
  const int x0 = clamp_int(left, max_x);
  const int y0 = clamp_int(top, max_y);
  const int x1 = std::max(x0, clamp_int(right, max_x));
  const int y1 = std::max(y0, clamp_int(bottom, max_y));
  return Box{static_cast<float>(x0), static_cast<float>(y0), static_cast<float>(x1 - x0 + 1),
             static_cast<float>(y1 - y0 + 1)};
}

namespace {

struct LoadedModel {
  const ModelSpec* spec;
  std::vector<unsigned char> bytes;  // shared read-only by all scorers
};

class LivenessModelsImpl;

class LivenessScorerImpl final : public LivenessScorer {
 public:
  LivenessScorerImpl(std::shared_ptr<const LivenessModelsImpl> models,
                     std::vector<cv::dnn::Net> nets)
      : models_(std::move(models)), nets_(std::move(nets)) {}

  Result<LivenessScore> score(const Image& frame, const Box& box) override;

 private:
  std::shared_ptr<const LivenessModelsImpl> models_;
  std::vector<cv::dnn::Net> nets_;
};

class LivenessModelsImpl final : public LivenessModels,
                                 public std::enable_shared_from_this<LivenessModelsImpl> {
 public:
  explicit LivenessModelsImpl(std::vector<LoadedModel> models) : models_(std::move(models)) {
    for (const auto& m : models_) {
      ids_.push_back(m.spec->id);
    }
  }

  const std::vector<std::string>& model_ids() const override { return ids_; }

  Result<std::unique_ptr<LivenessScorer>> make_scorer() const override {
    std::vector<cv::dnn::Net> nets;
    for (const auto& m : models_) {
      try {
        cv::dnn::Net net = cv::dnn::readNetFromONNX(m.bytes);
        if (net.empty()) {
          return make_error(ErrorCode::kModelError,
                            fmt::format("cannot build model {}", m.spec->id));
        }
        net.setPreferableBackend(cv::dnn::DNN_BACKEND_OPENCV);
        net.setPreferableTarget(cv::dnn::DNN_TARGET_CPU);
        nets.push_back(std::move(net));
      } catch (const cv::Exception& e) {
        return make_error(ErrorCode::kModelError,
                          fmt::format("cannot build model {}: {}", m.spec->id, e.what()));
      }
    }
    return std::unique_ptr<LivenessScorer>(
        new LivenessScorerImpl(shared_from_this(), std::move(nets)));
  }

  const std::vector<LoadedModel>& models() const { return models_; }

 private:
  std::vector<LoadedModel> models_;
  std::vector<std::string> ids_;
};

Result<LivenessScore> LivenessScorerImpl::score(const Image& frame, const Box& box) {
  if (frame.width < 2 || frame.height < 2 ||
      frame.bgr.size() != static_cast<std::size_t>(frame.width) * frame.height * 3) {
    return make_error(ErrorCode::kInvalidArgument, "liveness needs a BGR frame of at least 2x2");
  }
  if (!(box.width > 0.f) || !(box.height > 0.f) || !std::isfinite(box.x) || !std::isfinite(box.y) ||
      box.x + box.width <= 0.f || box.y + box.height <= 0.f ||
      box.x >= static_cast<float>(frame.width) || box.y >= static_cast<float>(frame.height)) {
    return make_error(ErrorCode::kInvalidArgument, "the face box does not overlap the frame");
  }
  const cv::Mat mat = vision::as_mat(frame);
  LivenessScore result;
  double sum = 0;
  const auto& models = models_->models();
  for (std::size_t i = 0; i < models.size(); ++i) {
    const ModelSpec& spec = *models[i].spec;
    const Box c = liveness_crop_box(box, spec.crop_scale, frame.width, frame.height);
    const cv::Rect rect(static_cast<int>(c.x), static_cast<int>(c.y), static_cast<int>(c.width),
                        static_cast<int>(c.height));
    cv::Mat crop;
    cv::resize(mat(rect), crop, cv::Size(spec.input_width, spec.input_height), 0, 0,
               cv::INTER_LINEAR);
    cv::Mat out;
    try {
      // Raw 0-255 BGR, no normalisation (the models were trained so).
      cv::Mat blob =
          cv::dnn::blobFromImage(crop, 1.0, cv::Size(), cv::Scalar(), false, false, CV_32F);
      nets_[i].setInput(blob);
      out = nets_[i].forward();
    } catch (const cv::Exception& e) {
      return make_error(ErrorCode::kInternal,
                        fmt::format("model {} failed to run: {}", spec.id, e.what()));
    }
    if (out.type() != CV_32F || !out.isContinuous() || out.total() != 3) {
      return make_error(
          ErrorCode::kModelError,
          fmt::format("model {} produced {} values, expected 3 logits", spec.id, out.total()));
    }
    const float* logits = out.ptr<float>();
    const float top = std::max({logits[0], logits[1], logits[2]});
    double denom = 0;
    for (int k = 0; k < 3; ++k) {
      denom += std::exp(static_cast<double>(logits[k] - top));
    }
    const double real = std::exp(static_cast<double>(logits[1] - top)) / denom;
    if (!std::isfinite(real)) {
      return make_error(ErrorCode::kInternal,
                        fmt::format("model {} produced a non-finite score", spec.id));
    }
    result.per_model.push_back(static_cast<float>(real));
    sum += real;
  }
  result.live = static_cast<float>(sum / static_cast<double>(models.size()));
  return result;
}

}  // namespace

Result<std::shared_ptr<const LivenessModels>> LivenessModels::load(
    const std::filesystem::path& model_dir) {
  const std::filesystem::path dir = model_dir.empty() ? default_model_dir() : model_dir;
  std::vector<LoadedModel> loaded;
  for (const auto& spec : model_catalog()) {
    if (spec.kind != ModelKind::kLiveness) {
      continue;
    }
    auto bytes = read_model_file(dir, spec);
    if (!bytes) {
      return make_error(bytes.error());
    }
    loaded.push_back({&spec, std::move(*bytes)});
  }
  if (loaded.empty()) {
    return make_error(ErrorCode::kInternal, "the model catalog has no liveness model");
  }
  return std::shared_ptr<const LivenessModels>(
      std::make_shared<LivenessModelsImpl>(std::move(loaded)));
}

}  // namespace facelogin
