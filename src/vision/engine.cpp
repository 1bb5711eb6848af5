#include "facelogin/engine.h"

#include <chrono>
#include <cmath>
#include <functional>

#include <fmt/format.h>
#include <opencv2/core.hpp>

#include "vision/cv_image.h"
#include "vision/detector.h"
#include "vision/embedder.h"
#include "vision/quality.h"
#include "vision/subject.h"

namespace facelogin {

std::string_view quality_issue_name(QualityIssue issue) {
  switch (issue) {
    case QualityIssue::kTooSmall: return "too_small";
    case QualityIssue::kTooClose: return "too_close";
    case QualityIssue::kCutOff: return "cut_off";
    case QualityIssue::kTooDark: return "too_dark";
    case QualityIssue::kOverexposed: return "overexposed";
    case QualityIssue::kBlurred: return "blurred";
    case QualityIssue::kTurnedAway: return "turned_away";
  }
  return "unknown";
}

std::string_view quality_issue_advice(QualityIssue issue) {
  switch (issue) {
    case QualityIssue::kTooSmall: return "Move closer to the camera.";
    case QualityIssue::kTooClose: return "Move back a little from the camera.";
    case QualityIssue::kCutOff: return "Centre your face in the frame.";
    case QualityIssue::kTooDark: return "Your face is too dark: add light in front of you.";
    case QualityIssue::kOverexposed: return "Too much light on your face: avoid direct light.";
    case QualityIssue::kBlurred: return "The image is blurred: hold still.";
    case QualityIssue::kTurnedAway: return "Look straight at the camera.";
  }
  return "";
}

std::string_view frame_outcome_name(FrameOutcome outcome) {
  switch (outcome) {
    case FrameOutcome::kOk: return "ok";
    case FrameOutcome::kNoFace: return "no_face";
    case FrameOutcome::kSeveralFaces: return "several_faces";
    case FrameOutcome::kPoorQuality: return "poor_quality";
  }
  return "unknown";
}

namespace {

using Clock = std::chrono::steady_clock;

double ms_since(Clock::time_point start) {
  return std::chrono::duration<double, std::milli>(Clock::now() - start).count();
}

struct LoadedComponent {
  const ModelSpec* spec;
  RecognizerComponent component;
  std::vector<unsigned char> bytes;  // shared read-only by all workers
};

class EngineImpl;

// Which mirror images views_mat embeds: none, those the recogniser averages, or every model's.
enum class Mirrors { kNone, kAsRecognizer, kAll };

class WorkerImpl final : public Worker {
 public:
  WorkerImpl(std::shared_ptr<const EngineImpl> engine,
             std::unique_ptr<vision::FaceDetector> detector,
             std::vector<std::unique_ptr<vision::Embedder>> embedders)
      : engine_(std::move(engine)),
        detector_(std::move(detector)),
        embedders_(std::move(embedders)) {}

  Result<FrameAnalysis> analyze(const Image& frame, const AnalyzeOptions& options) override;
  Result<std::vector<DetectedFace>> detect(const Image& frame) override;
  Result<FaceTemplate> embed(const Image& frame, const DetectedFace& face) override;
  Result<FaceViews> embed_views(const Image& frame, const DetectedFace& face) override;

 private:
  // `crops`, when given, receives each model's aligned crop (for add_mirrors).
  Result<FaceViews> views_mat(const cv::Mat& frame, const DetectedFace& face, Mirrors mirrors,
                              StageTimings* timings, std::vector<cv::Mat>* crops = nullptr);
  // Adds the mirror images the recogniser averages to views made with Mirrors::kNone.
  Status add_mirrors(const std::vector<cv::Mat>& crops, FaceViews& views, StageTimings* timings);
  // The recogniser's template; with `decided` (AnalyzeOptions::decided_by_first_pass) the
  // first-pass template when that settles it.
  Result<FaceTemplate> embed_mat(const cv::Mat& frame, const DetectedFace& face,
                                 StageTimings* timings,
                                 const std::function<bool(const FaceTemplate&)>& decided = {});

  std::shared_ptr<const EngineImpl> engine_;
  std::unique_ptr<vision::FaceDetector> detector_;
  std::vector<std::unique_ptr<vision::Embedder>> embedders_;
};

class EngineImpl final : public Engine, public std::enable_shared_from_this<EngineImpl> {
 public:
  EngineImpl(EngineOptions options, const RecognizerSpec& recognizer,
             const ModelSpec& detector, std::vector<LoadedComponent> components)
      : options_(std::move(options)),
        recognizer_(recognizer),
        detector_(detector),
        components_(std::move(components)) {}

  const RecognizerSpec& recognizer() const override { return recognizer_; }
  const EngineOptions& options() const override { return options_; }
  const std::vector<LoadedComponent>& components() const { return components_; }

  Result<std::unique_ptr<Worker>> make_worker() const override {
    vision::DetectorOptions detector_options;
    detector_options.score_threshold = options_.detect_score_threshold;
    detector_options.max_side = options_.detect_max_side;
    auto detector = vision::create_detector(detector_, options_.model_dir, detector_options);
    if (!detector) {
      return make_error(detector.error());
    }
    std::vector<std::unique_ptr<vision::Embedder>> embedders;
    for (const auto& c : components_) {
      auto e = vision::Embedder::create(*c.spec, c.bytes);
      if (!e) {
        return make_error(e.error());
      }
      embedders.push_back(std::move(*e));
    }
    return std::unique_ptr<Worker>(
        new WorkerImpl(shared_from_this(), std::move(*detector), std::move(embedders)));
  }

 private:
  EngineOptions options_;
  const RecognizerSpec& recognizer_;
  const ModelSpec& detector_;
  std::vector<LoadedComponent> components_;
};

Result<std::vector<DetectedFace>> WorkerImpl::detect(const Image& frame) {
  if (frame.empty()) {
    return make_error(ErrorCode::kBadImage, "empty image");
  }
  return detector_->detect(vision::as_mat(frame));
}

Result<FaceTemplate> WorkerImpl::embed(const Image& frame, const DetectedFace& face) {
  if (frame.empty()) {
    return make_error(ErrorCode::kBadImage, "empty image");
  }
  return embed_mat(vision::as_mat(frame), face, nullptr);
}

Result<FaceViews> WorkerImpl::views_mat(const cv::Mat& frame, const DetectedFace& face,
                                        Mirrors mirrors, StageTimings* timings,
                                        std::vector<cv::Mat>* crops) {
  const auto& components = engine_->components();
  FaceViews views;
  for (std::size_t i = 0; i < embedders_.size(); ++i) {
    auto start = Clock::now();
    cv::Mat crop = embedders_[i]->crop(frame, face.landmarks);
    if (timings != nullptr) {
      timings->align_ms += ms_since(start);
    }
    start = Clock::now();
    const bool mirrored = mirrors == Mirrors::kAll ||
                          (mirrors == Mirrors::kAsRecognizer && components[i].component.flip);
    auto v = embedders_[i]->embed_crop(crop, mirrored);
    if (timings != nullptr) {
      timings->embed_ms += ms_since(start);
    }
    if (!v) {
      return make_error(v.error());
    }
    views[components[i].spec->id] = std::move(*v);
    if (crops != nullptr) {
      crops->push_back(std::move(crop));
    }
  }
  return views;
}

Status WorkerImpl::add_mirrors(const std::vector<cv::Mat>& crops, FaceViews& views,
                               StageTimings* timings) {
  const auto& components = engine_->components();
  for (std::size_t i = 0; i < embedders_.size() && i < crops.size(); ++i) {
    if (!components[i].component.flip) {
      continue;
    }
    const auto start = Clock::now();
    Status s = embedders_[i]->add_mirrored(crops[i], views[components[i].spec->id]);
    if (timings != nullptr) {
      timings->embed_ms += ms_since(start);
    }
    if (!s.ok()) {
      return s;
    }
  }
  return Status::Ok();
}

Result<FaceTemplate> WorkerImpl::embed_mat(const cv::Mat& frame, const DetectedFace& face,
                                           StageTimings* timings,
                                           const std::function<bool(const FaceTemplate&)>& decided) {
  const RecognizerSpec& spec = engine_->recognizer();
  const bool early = decided && spec.first_pass_margin > 0.f;
  std::vector<cv::Mat> crops;
  auto views =
      views_mat(frame, face, early ? Mirrors::kNone : Mirrors::kAsRecognizer, timings, &crops);
  if (!views) {
    return make_error(views.error());
  }
  if (early) {
    auto quick = compose_first_pass_template(spec, *views);
    if (!quick) {
      return make_error(quick.error());
    }
    if (decided(*quick)) {
      return quick;
    }
    if (Status s = add_mirrors(crops, *views, timings); !s.ok()) {
      return make_error(std::move(s));
    }
  }
  return compose_template(spec, *views);
}

Result<FaceViews> WorkerImpl::embed_views(const Image& frame, const DetectedFace& face) {
  if (frame.empty()) {
    return make_error(ErrorCode::kBadImage, "empty image");
  }
  return views_mat(vision::as_mat(frame), face, Mirrors::kAll, nullptr);
}

Result<FrameAnalysis> WorkerImpl::analyze(const Image& frame, const AnalyzeOptions& options) {
  if (frame.empty()) {
    return make_error(ErrorCode::kBadImage, "empty image");
  }
  const EngineOptions& eo = engine_->options();
  const cv::Mat mat = vision::as_mat(frame);
  FrameAnalysis result;

  auto start = Clock::now();
  auto faces = detector_->detect(mat);
  result.timings.detect_ms = ms_since(start);
  if (!faces) {
    return make_error(faces.error());
  }
  result.faces = std::move(*faces);
  const auto choice = vision::choose_subject(result.faces, options.subject, frame.width,
                                             frame.height, eo.second_face_area_ratio);
  if (!choice) {
    result.outcome = FrameOutcome::kNoFace;
    result.message = "No face found: face the camera in good light.";
    return result;
  }
  result.subject = choice->subject;
  const DetectedFace& subject = result.faces[choice->subject];

  start = Clock::now();
  QualityOptions quality = eo.quality;
  quality.max_yaw += std::max(0.f, options.extra_yaw_degrees);
  result.quality = vision::assess_quality(mat, subject, quality);
  result.timings.quality_ms = ms_since(start);

  if (options.refuse_several_faces && choice->rival) {
    result.outcome = FrameOutcome::kSeveralFaces;
    result.message = "Several faces in the frame: only one person may be in view.";
    return result;
  }
  if (options.enforce_quality && !result.quality.ok()) {
    result.outcome = FrameOutcome::kPoorQuality;
    std::string advice;
    for (QualityIssue issue : result.quality.issues) {
      if (!advice.empty()) {
        advice += ' ';
      }
      advice += quality_issue_advice(issue);
    }
    result.message = advice;
    return result;
  }
  result.outcome = FrameOutcome::kOk;
  if (options.embed) {
    auto tmpl = embed_mat(mat, subject, &result.timings, options.decided_by_first_pass);
    if (!tmpl) {
      return make_error(tmpl.error());
    }
    tmpl->quality = result.quality.score;
    result.face = std::move(*tmpl);
  }
  return result;
}

// The detector to run: the one asked for, or else the first of the catalog's detectors, in order
// of preference, whose files are present and intact (so that a machine without YuNet, which only
// upstream hosts, still runs on the npm-obtainable detector). Errors: kInvalidArgument for an
// unknown id, kModelError when nothing usable is present.
Result<const ModelSpec*> choose_detector(const std::filesystem::path& model_dir,
                                         const std::string& requested) {
  std::vector<const ModelSpec*> candidates;
  if (!requested.empty()) {
    const ModelSpec* spec = find_model(requested);
    if (spec == nullptr || spec->kind != ModelKind::kDetector) {
      return make_error(ErrorCode::kInvalidArgument,
                        fmt::format("unknown detector '{}'", requested));
    }
    candidates.push_back(spec);
  } else {
    for (const auto& m : model_catalog()) {
      if (m.kind == ModelKind::kDetector) {
        candidates.push_back(&m);
      }
    }
  }
  Status first_error;
  for (const ModelSpec* spec : candidates) {
    Status s = verify_model_file(model_dir, *spec);
    if (s.ok() && !spec->companion_model.empty()) {
      const ModelSpec* companion = find_model(spec->companion_model);
      s = companion != nullptr ? verify_model_file(model_dir, *companion)
                               : Status(ErrorCode::kInternal, "unknown companion model");
    }
    if (s.ok()) {
      return spec;
    }
    if (first_error.ok()) {
      first_error = s;
    }
  }
  return make_error(first_error);
}

}  // namespace

Result<std::shared_ptr<const Engine>> Engine::load(const EngineOptions& options) {
  EngineOptions opts = options;
  if (opts.model_dir.empty()) {
    opts.model_dir = default_model_dir();
  }
  if (opts.recognizer_id.empty()) {
    opts.recognizer_id = std::string(default_recognizer_id());
  }
  const RecognizerSpec* recognizer = find_recognizer(opts.recognizer_id);
  if (recognizer == nullptr) {
    return make_error(ErrorCode::kInvalidArgument,
                      fmt::format("unknown recogniser '{}': `facelogin models list` shows the "
                                  "available ones",
                                  opts.recognizer_id));
  }
  auto detector = choose_detector(opts.model_dir, opts.detector_id);
  if (!detector) {
    return make_error(detector.error());
  }
  opts.detector_id = (*detector)->id;
  // OpenCV's thread pool is process-wide, so it is sized here, before any worker runs: changing it
  // while another thread is inside a network is not safe. One thread per worker suits one worker
  // per core.
  cv::setNumThreads(std::max(1, opts.threads_per_worker));
  std::vector<LoadedComponent> components;
  for (const auto& c : recognizer->components) {
    const ModelSpec* spec = find_model(c.model_id);
    if (spec == nullptr || spec->kind != ModelKind::kEmbedder) {
      return make_error(ErrorCode::kInternal,
                        fmt::format("recogniser {} names unknown embedder {}", recognizer->id,
                                    c.model_id));
    }
    auto bytes = read_model_file(opts.model_dir, *spec);
    if (!bytes) {
      return make_error(bytes.error());
    }
    components.push_back({spec, c, std::move(*bytes)});
  }
  auto engine = std::make_shared<EngineImpl>(std::move(opts), *recognizer, **detector,
                                             std::move(components));
  // Building one worker up front proves that every network loads, so a broken model is reported
  // at start-up rather than on the first frame.
  if (auto probe = engine->make_worker(); !probe) {
    return make_error(probe.error());
  }
  return std::shared_ptr<const Engine>(std::move(engine));
}

}  // namespace facelogin
