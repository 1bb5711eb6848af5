#pragma once

// The recognition engine: a camera frame in, a typed outcome out ("this face, this template",
// "no face", "several faces", "poor quality: too dark").
//
// Engine holds what is immutable and shared (model descriptions, model bytes, options); each
// thread that analyses frames makes its own Worker, which owns the mutable inference state
// (cv::dnn::Net::forward is not safe to call concurrently on one network).

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "facelogin/face_template.h"
#include "facelogin/geometry.h"
#include "facelogin/image.h"
#include "facelogin/models.h"
#include "facelogin/status.h"

namespace facelogin {

struct DetectedFace {
  Box box;  // in the analysed image's pixels; may extend past its edges
  Landmarks5 landmarks;
  float score = 0.f;  // detector confidence, 0..1
};

enum class QualityIssue {
  kTooSmall,  // move closer
  kTooClose,  // move back
  kCutOff,    // part of the face is outside the frame
  kTooDark,
  kOverexposed,
  kBlurred,     // hold still / clean the lens
  kTurnedAway,  // look at the camera
};

// "too_dark"
[[nodiscard]] std::string_view quality_issue_name(QualityIssue issue);
// Advice a person can act on: "Move closer to the camera."
[[nodiscard]] std::string_view quality_issue_advice(QualityIssue issue);

// Head pose in degrees, estimated from the five landmarks with a generic 3-D face model.
// yaw > 0: the subject turned to their left (face points to the image's right);
// pitch > 0: the subject looks up; roll > 0: the head tilts clockwise in the image.
struct HeadPose {
  float yaw = 0.f;
  float pitch = 0.f;
  float roll = 0.f;
};

struct QualityOptions {
  float min_face_px = 80.f;           // face box width below this: too small
  float max_face_fraction = 0.85f;    // face box wider than this share of the frame: too close
  float max_outside_fraction = 0.1f;  // share of the box outside the frame before "cut off"
  float min_brightness = 40.f;        // mean luma of the face, 0..255
  float max_brightness = 215.f;
  float max_saturated_fraction = 0.40f;  // share of face pixels at >= 250 luma
  float min_sharpness = 30.f;            // variance of the Laplacian on the face scaled to 128 px
  float max_yaw = 30.f;
  float max_pitch = 32.f;  // 25 refused many good NUAA webcam frames (see docs/models.md)
  float max_roll = 30.f;
};

struct QualityReport {
  std::vector<QualityIssue> issues;  // empty when the face is usable
  float face_width_px = 0.f;
  float brightness = 0.f;
  float saturated_fraction = 0.f;
  float sharpness = 0.f;
  HeadPose pose;
  // 0..1, higher is better; used to prefer frames, never as a security decision.
  float score = 0.f;

  bool ok() const { return issues.empty(); }
};

enum class FrameOutcome { kOk, kNoFace, kSeveralFaces, kPoorQuality };
[[nodiscard]] std::string_view frame_outcome_name(FrameOutcome outcome);

// How the subject is chosen when there are several faces. kLargest suits a camera in front of
// one person; kCentral (largest after weighting by distance from the image centre) suits
// portrait crops such as LFW, where the subject is centred and others may be larger.
enum class SubjectPolicy { kLargest, kCentral };

struct AnalyzeOptions {
  bool embed = true;            // compute the template (only when the outcome is kOk)
  bool enforce_quality = true;  // a quality issue makes the outcome kPoorQuality
  bool refuse_several_faces = true;
  SubjectPolicy subject = SubjectPolicy::kLargest;
  // Added to the quality gate's max_yaw: login frames under an active challenge, which asks
  // people to turn their head, may be turned further than enrolment frames.
  float extra_yaw_degrees = 0.f;
  // Early decision, for comparisons only (never for enrolment). When set, and the recogniser
  // averages mirror images (RecognizerSpec::first_pass_margin > 0), the engine first embeds the
  // crop alone, composes the first-pass template (compose_first_pass_template) and calls this
  // with it; if it returns true the analysis ends with that template (FaceTemplate::first_pass)
  // and the mirror-image passes are skipped, otherwise they run and the full template is
  // returned. The caller returns true only when its decision on the first-pass template is at
  // least first_pass_margin from its threshold.
  std::function<bool(const FaceTemplate&)> decided_by_first_pass;
};

// Wall time of each stage of one analyse call, in milliseconds.
struct StageTimings {
  double detect_ms = 0;
  double quality_ms = 0;
  double align_ms = 0;
  double embed_ms = 0;
};

struct FrameAnalysis {
  FrameOutcome outcome = FrameOutcome::kNoFace;
  std::vector<DetectedFace> faces;     // every face found, best first
  std::optional<std::size_t> subject;  // index into faces
  QualityReport quality;               // of the subject
  // Set when embed was asked and the outcome is kOk. face->first_pass: the first-pass template
  // (AnalyzeOptions::decided_by_first_pass returned true), good for the decision it was checked
  // against, not for storing.
  std::optional<FaceTemplate> face;
  StageTimings timings;
  // Why the outcome is not kOk, in plain language.
  std::string message;
};

struct EngineOptions {
  std::filesystem::path model_dir;  // empty: default_model_dir()
  std::string recognizer_id;        // empty: default_recognizer_id()
  // Empty: the first detector of the catalog whose files are present (YuNet, else the npm
  // fallback), so that a machine without YuNet still runs.
  std::string detector_id;
  // Frames are shrunk to at most this many pixels on their longer side for detection; crops are
  // then cut from the full-resolution frame. YuNet boxes only part of the face on 12 MP photos
  // and is 4x slower at 640x480 than at 320x240.
  int detect_max_side = 320;
  float detect_score_threshold = 0.6f;
  // A second face counts as "several faces" when its box area is at least this share of the
  // subject's. Background faces in webcam frames are typically 6-11% of the subject's area.
  float second_face_area_ratio = 0.25f;
  QualityOptions quality;
  // OpenCV inference threads (process-wide, set when the engine loads); 1 suits one worker per
  // core.
  int threads_per_worker = 1;
};

class Worker;

// Immutable after load; thread-safe.
class Engine {
 public:
  virtual ~Engine() = default;

  // Loads and checks (sha256) the detector and every model of the recogniser.
  // Errors: kModelError with what is missing and how to get it; kInvalidArgument for an unknown
  // recogniser or detector id.
  [[nodiscard]] static Result<std::shared_ptr<const Engine>> load(const EngineOptions& options);

  virtual const RecognizerSpec& recognizer() const = 0;
  virtual const EngineOptions& options() const = 0;
  // A new worker with its own inference state. Errors: kModelError if a network fails to build.
  [[nodiscard]] virtual Result<std::unique_ptr<Worker>> make_worker() const = 0;
};

// Not thread-safe: one per thread. Keeps its Engine alive.
class Worker {
 public:
  virtual ~Worker() = default;

  // Detects, picks the subject, checks quality and (if asked) embeds. Never fails for a bad
  // frame: the outcome says what is wrong. Errors only for internal faults (kInternal,
  // kModelError).
  [[nodiscard]] virtual Result<FrameAnalysis> analyze(const Image& frame,
                                                      const AnalyzeOptions& options = {}) = 0;

  // Faces only (for overlays and tests).
  [[nodiscard]] virtual Result<std::vector<DetectedFace>> detect(const Image& frame) = 0;

  // Embeds a given face of the frame, skipping detection and the quality gate.
  [[nodiscard]] virtual Result<FaceTemplate> embed(const Image& frame,
                                                   const DetectedFace& face) = 0;

  // Both views (crop and mirror image) of the face by every model of the recogniser, from which
  // compose_template() makes the template of this or any recogniser built from the same models.
  // For evaluation: one pass serves several recognisers.
  [[nodiscard]] virtual Result<FaceViews> embed_views(const Image& frame,
                                                      const DetectedFace& face) = 0;
};

}  // namespace facelogin
