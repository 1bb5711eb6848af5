// The fallback face detector, following faceplugin-face-recognition-js 0.0.1 (lib/fr_detect.js
// and lib/fr_landmark.js) where that is sound and saying where it departs:
//  - boxes: the frame fitted into UltraFace's 320x240 input, RGB, (pixel - 127) / 128; the
//    network's outputs are already decoded corners; cv::dnn::NMSBoxes, then nested boxes dropped;
//  - landmarks: a square as tall as the box, centred on it, grey, 64x64, pixel / 256; the 68
//    points come out as fractions of that square and are reduced to Landmarks5.
// The network input is fixed, so DetectorOptions::max_side does not apply; the score threshold
// is DetectorOptions::score_threshold (the engine's default is 0.6; the JS uses 0.65).

#include "vision/ultraface_detector.h"

#include <algorithm>
#include <cmath>
#include <exception>
#include <string>
#include <utility>
#include <vector>

#include <fmt/format.h>
#include <opencv2/dnn.hpp>
#include <opencv2/imgproc.hpp>

namespace facelogin::vision {
namespace {

// What faceplugin's lib/fr_detect.js keeps before non-maximum suppression.
constexpr int kTopK = 750;
// Intersection over union above which the lower-scoring of two boxes is dropped.
constexpr float kNmsIou = 0.3f;
// A box lying this much (a share of its own area) inside a better box is dropped too.
constexpr float kMaxContained = 0.5f;
constexpr int kLandmarkCount = 68;

// A box found by UltraFace before its landmarks are known, in frame pixels.
struct Candidate {
  cv::Rect2d box;
  float score = 0.f;
};

// UltraFace RFB-320 for boxes, then the 68-point network on a square crop around each box.
// Not thread-safe (owns both networks and a scratch image): one per worker.
class UltrafaceDetector final : public FaceDetector {
 public:
  UltrafaceDetector(const ModelSpec& detector, cv::dnn::Net box_net, Landmark68 landmarks,
                    float score_threshold)
      : box_input_(detector.input_width, detector.input_height),
        box_mean_(detector.mean[0], detector.mean[1], detector.mean[2]),
        box_scale_(detector.scale),
        box_swap_rb_(detector.color == ColorOrder::kRgb),
        box_padding_(box_swap_rb_ ? cv::Scalar(box_mean_[2], box_mean_[1], box_mean_[0])
                                  : box_mean_),
        box_net_(std::move(box_net)),
        landmarks_(std::move(landmarks)),
        score_threshold_(score_threshold) {}

  Result<std::vector<DetectedFace>> detect(const cv::Mat& frame) override;

 private:
  // Both may throw (cv::Exception, std::bad_alloc); detect() catches it.
  std::vector<Candidate> find_boxes(const cv::Mat& frame);

  const cv::Size box_input_;
  const cv::Scalar box_mean_;  // in the network's colour order, as blobFromImage takes it
  const double box_scale_;
  const bool box_swap_rb_;
  const cv::Scalar box_padding_;  // the mean in the frame's BGR order
  cv::dnn::Net box_net_;
  Landmark68 landmarks_;
  const float score_threshold_;
  // Reused between frames: fresh buffers of this size cost page faults on every call.
  cv::Mat canvas_;      // the frame fitted into the input, 8-bit BGR
  cv::Mat normalised_;  // canvas_ normalised, 32-bit, 3 channels
  cv::Mat blob_;        // 1 x 3 x height x width, planar, in the network's colour order
};

Result<std::vector<DetectedFace>> UltrafaceDetector::detect(const cv::Mat& frame) {
  if (frame.empty() || frame.type() != CV_8UC3) {
    return make_error(ErrorCode::kInternal, "detector needs a non-empty 8-bit BGR image");
  }
  std::vector<DetectedFace> faces;
  try {
    const std::vector<Candidate> found = find_boxes(frame);
    for (const Candidate& c : found) {
      DetectedFace face;
      // UltraFace's own box, not the square faceplugin's JS reports: it overlaps YuNet's boxes
      // better (mean IoU 0.87 against 0.69 on LFW), and the quality gate measures face width.
      face.box = {static_cast<float>(c.box.x), static_cast<float>(c.box.y),
                  static_cast<float>(c.box.width), static_cast<float>(c.box.height)};
      face.landmarks = landmarks_.locate(frame, c.box);
      face.score = c.score;
      faces.push_back(face);
    }
  } catch (const std::exception& e) {
    return make_error(ErrorCode::kInternal, fmt::format("face detection failed: {}", e.what()));
  }
  return faces;
}

std::vector<Candidate> UltrafaceDetector::find_boxes(const cv::Mat& frame) {
  // Fit the frame into the network's fixed input, keeping its aspect ratio; the rest of the input
  // is the mean grey, which normalises to zero. faceplugin's JS stretches the frame to 320x240
  // instead; the two agree on 4:3 frames, and stretching squashes faces in portrait photos.
  const double fit = std::min(static_cast<double>(box_input_.width) / frame.cols,
                              static_cast<double>(box_input_.height) / frame.rows);
  const cv::Size fitted(
      std::clamp(static_cast<int>(std::lround(frame.cols * fit)), 1, box_input_.width),
      std::clamp(static_cast<int>(std::lround(frame.rows * fit)), 1, box_input_.height));
  canvas_.create(box_input_, CV_8UC3);
  canvas_.setTo(box_padding_);
  cv::Mat fitted_view = canvas_(cv::Rect(cv::Point(0, 0), fitted));
  // INTER_AREA when shrinking: bilinear sampling of a 12 MP photo at 320x240 aliases badly.
  cv::resize(frame, fitted_view, fitted, 0, 0, fit < 1.0 ? cv::INTER_AREA : cv::INTER_LINEAR);
  // The map back from input pixels to frame pixels, per axis (exact after the rounding above).
  const double back_x = static_cast<double>(frame.cols) / fitted.width;
  const double back_y = static_cast<double>(frame.rows) / fitted.height;

  // (pixel - 127) / 128 in RGB, as UltraFace was trained upstream. faceplugin's JS applies
  // COLOR_BGR2RGB to the RGBA image cv.imread gives it, so in the browser the network sees BGR;
  // both orders find the same faces (checked on 328 photos), and RGB is the upstream convention.
  // What cv::dnn::blobFromImage does, into buffers kept between calls.
  const cv::Scalar padding_shift = -box_padding_ * box_scale_;
  canvas_.convertTo(normalised_, CV_32F, box_scale_);
  cv::add(normalised_, padding_shift, normalised_);
  const int blob_shape[] = {1, 3, box_input_.height, box_input_.width};
  blob_.create(4, blob_shape, CV_32F);
  std::vector<cv::Mat> planes;
  for (int c = 0; c < 3; ++c) {
    // Plane c of the blob takes channel c of the frame, or channel 2 - c when swapping to RGB.
    const int plane = box_swap_rb_ ? 2 - c : c;
    planes.emplace_back(box_input_, CV_32F, blob_.ptr<float>(0, plane));
  }
  cv::split(normalised_, planes);
  box_net_.setInput(blob_);
  std::vector<cv::Mat> outputs;
  box_net_.forward(outputs, std::vector<cv::String>{"scores", "boxes"});
  const cv::Mat& scores = outputs.at(0);
  const cv::Mat& boxes = outputs.at(1);
  const int anchors = static_cast<int>(scores.total() / 2);
  if (scores.total() != static_cast<std::size_t>(anchors) * 2 ||
      boxes.total() != static_cast<std::size_t>(anchors) * 4) {
    throw cv::Exception(cv::Error::StsBadSize, "unexpected UltraFace output shapes", __func__,
                        __FILE__, __LINE__);
  }
  const float* score = scores.ptr<float>();
  const float* corner = boxes.ptr<float>();

  // Boxes come out decoded (the priors are baked into the graph): x1, y1, x2, y2 as fractions of
  // the network input. faceplugin's decodeBBox() computes a second decoding from priors whose
  // result it never uses.
  std::vector<cv::Rect2d> rects;
  std::vector<float> confidences;
  const double in_w = box_input_.width * back_x;
  const double in_h = box_input_.height * back_y;
  for (int i = 0; i < anchors; ++i) {
    const float face_score = score[2 * i + 1];  // [background, face], already softmaxed
    if (!(face_score >= score_threshold_)) {
      continue;
    }
    const float* c = corner + 4 * i;
    const double x1 = c[0] * in_w;
    const double y1 = c[1] * in_h;
    const double x2 = c[2] * in_w;
    const double y2 = c[3] * in_h;
    if (!(x2 - x1 > 1.0) || !(y2 - y1 > 1.0) || !std::isfinite(x1) || !std::isfinite(y1)) {
      continue;
    }
    rects.emplace_back(x1, y1, x2 - x1, y2 - y1);
    confidences.push_back(face_score);
  }
  // The JS suppresses a box when the intersection covers 40% of that box's own area, which also
  // removes boxes nested in a better one; IoU alone keeps those (a 44x63 box inside an 83x133
  // one has an IoU of 0.2), hence the second pass.
  std::vector<int> keep;
  cv::dnn::NMSBoxes(rects, confidences, score_threshold_, kNmsIou, keep, 1.f, kTopK);
  // NMSBoxes returns the kept indices best score first.
  std::vector<Candidate> found;
  found.reserve(keep.size());
  for (int k : keep) {
    const cv::Rect2d& r = rects[k];
    const bool nested = std::any_of(found.begin(), found.end(), [&](const Candidate& better) {
      return (better.box & r).area() > kMaxContained * r.area();
    });
    if (!nested) {
      found.push_back({r, confidences[k]});
    }
  }
  return found;
}

}  // namespace

Landmark68::Landmark68(const ModelSpec& spec, cv::dnn::Net net)
    : input_(spec.input_width, spec.input_height),
      mean_(spec.mean[0]),
      scale_(spec.scale),
      net_(std::move(net)) {}

Result<Landmark68> Landmark68::load(const ModelSpec& spec, const std::filesystem::path& model_dir) {
  if (spec.runtime != "landmark68" || spec.input_width <= 0 || spec.input_height <= 0) {
    return make_error(ErrorCode::kModelError,
                      fmt::format("model {} is not a 68-point landmark model", spec.id));
  }
  const auto path = model_dir / spec.file;
  try {
    cv::dnn::Net net = cv::dnn::readNetFromONNX(path.string());
    if (net.empty()) {
      return make_error(ErrorCode::kModelError, fmt::format("cannot load {}", path.string()));
    }
    return Landmark68(spec, std::move(net));
  } catch (const std::exception& e) {
    return make_error(ErrorCode::kModelError,
                      fmt::format("cannot load the landmark model {}: {}", path.string(), e.what()));
  }
}

Landmarks5 Landmark68::locate(const cv::Mat& frame, const cv::Rect2d& box) {
  // As faceplugin's scaleResult() and alignLandmarkImage(): a square as tall as the box, centred
  // on it. The JS clips that square to the image and stretches what is left; here the part
  // outside the image is padded instead, so the face keeps its proportions at the edges.
  const double side = std::max(2.0, box.height);
  const double cx = box.x + box.width / 2;
  const double cy = box.y + box.height / 2;
  const cv::Rect square(static_cast<int>(std::lround(cx - side / 2)),
                        static_cast<int>(std::lround(cy - side / 2)),
                        static_cast<int>(std::lround(side)), static_cast<int>(std::lround(side)));
  const cv::Rect inside = square & cv::Rect(0, 0, frame.cols, frame.rows);
  cv::Mat grey;
  if (inside.area() > 0) {
    cv::cvtColor(frame(inside), grey, cv::COLOR_BGR2GRAY);
  } else {
    grey = cv::Mat(1, 1, CV_8UC1, cv::Scalar(0));
  }
  if (inside != square) {
    const int top = inside.area() > 0 ? inside.y - square.y : 0;
    const int left = inside.area() > 0 ? inside.x - square.x : 0;
    const int bottom = square.height - top - grey.rows;
    const int right = square.width - left - grey.cols;
    cv::Mat padded;
    cv::copyMakeBorder(grey, padded, top, std::max(0, bottom), left, std::max(0, right),
                       cv::BORDER_CONSTANT, cv::Scalar(0));
    grey = padded;
  }
  cv::Mat small;
  cv::resize(grey, small, input_, 0, 0, grey.cols > input_.width ? cv::INTER_AREA : cv::INTER_LINEAR);
  // pixel / 256, as preprocessLandmark() in the JS.
  const cv::Mat blob = cv::dnn::blobFromImage(small, scale_, cv::Size(), cv::Scalar(mean_), false,
                                              false, CV_32F);
  net_.setInput(blob);
  const cv::Mat out = net_.forward();
  if (out.total() != 2 * kLandmarkCount) {
    throw cv::Exception(cv::Error::StsBadSize, "unexpected landmark output shape", __func__,
                        __FILE__, __LINE__);
  }
  const float* p = out.ptr<float>();
  // Point i is (p[2i], p[2i+1]) in fractions of the crop, as predictLandmarkImage() maps it.
  auto point = [&](int i) {
    return cv::Point2d(square.x + p[2 * i] * square.width, square.y + p[2 * i + 1] * square.height);
  };
  auto mean_of = [&](int first, int last) {
    cv::Point2d sum(0, 0);
    for (int i = first; i <= last; ++i) {
      sum += point(i);
    }
    return sum / static_cast<double>(last - first + 1);
  };
  auto to_point = [](const cv::Point2d& q) {
    return Point2{static_cast<float>(q.x), static_cast<float>(q.y)};
  };
  // iBUG 68-point order: 36-41 outline the image-left eye (the subject's right), 42-47 the other,
  // 30 is the nose tip, 48 and 54 the image-left and image-right mouth corners.
  return {to_point(mean_of(36, 41)), to_point(mean_of(42, 47)), to_point(point(30)),
          to_point(point(48)), to_point(point(54))};
}

Result<std::unique_ptr<FaceDetector>> create_ultraface_detector(
    const ModelSpec& detector, const ModelSpec& landmarks, const std::filesystem::path& model_dir,
    const DetectorOptions& options) {
  if (detector.runtime != "ultraface" || detector.input_width <= 0 || detector.input_height <= 0) {
    return make_error(ErrorCode::kModelError,
                      fmt::format("model {} is not an UltraFace detector", detector.id));
  }
  auto landmark_model = Landmark68::load(landmarks, model_dir);
  if (!landmark_model) {
    return make_error(landmark_model.error());
  }
  const auto box_path = model_dir / detector.file;
  try {
    cv::dnn::Net box_net = cv::dnn::readNetFromONNX(box_path.string());
    if (box_net.empty()) {
      return make_error(ErrorCode::kModelError, fmt::format("cannot load {}", box_path.string()));
    }
    const auto outputs = box_net.getUnconnectedOutLayersNames();
    for (const char* name : {"scores", "boxes"}) {
      if (std::find(outputs.begin(), outputs.end(), name) == outputs.end()) {
        return make_error(ErrorCode::kModelError,
                          fmt::format("{} has no output '{}': not the UltraFace export expected",
                                      box_path.string(), name));
      }
    }
    return std::unique_ptr<FaceDetector>(new UltrafaceDetector(
        detector, std::move(box_net), std::move(*landmark_model), options.score_threshold));
  } catch (const std::exception& e) {
    return make_error(ErrorCode::kModelError, fmt::format("cannot load the face detector {}: {}",
                                                          box_path.string(), e.what()));
  }
}

}  // namespace facelogin::vision
