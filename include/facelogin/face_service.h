#pragma once

// Enrolment, verification and identification: the engine and the store together, as the CLI and
// the server use them. Nothing here prints or logs templates.

#include <functional>
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "facelogin/engine.h"
#include "facelogin/gallery.h"
#include "facelogin/image.h"
#include "facelogin/matching.h"
#include "facelogin/store.h"

namespace facelogin {

// One input image and what the engine made of it.
struct ImageReport {
  std::string source;  // file name or frame label, for messages
  FrameOutcome outcome = FrameOutcome::kNoFace;
  std::string message;
  QualityReport quality;
  std::optional<Box> box;
  std::optional<Landmarks5> landmarks;  // of the subject, with box
  StageTimings timings;  // of the engine's stages on this image (for metrics)
  // Decided on the first-pass template (ServiceOptions::early_decision): the score is within
  // the recogniser's first_pass_margin of the full template's, the decision the same.
  bool first_pass = false;
};

// What a person in front of the camera should do about this frame ("Only one face, please.");
// empty when the face is usable.
[[nodiscard]] std::string frame_advice(const ImageReport& report);

// The recogniser for a caller that did not choose one, given the store it will match against:
// the default while the store has templates of it or none at all; otherwise the catalog's
// recogniser that made the most templates, so that a store enrolled before the default changed
// keeps working (its users would all fail with kModelMismatch under the new default). Errors:
// the store's, from counting.
[[nodiscard]] Result<std::string> store_recognizer(const Store& store);

struct EnrollResult {
  UserInfo user;
  std::vector<ImageReport> images;
};

struct VerifyResult {
  ImageReport image;
  VerifyDecision decision;
};

struct IdentifyMatch {
  std::string user;
  float score = 0.f;
};

struct IdentifyResult {
  ImageReport image;
  std::vector<IdentifyMatch> candidates;  // best first
  bool match = false;                     // the best candidate reaches the threshold
  float threshold = 0.f;
};

// One frame checked for enrolment: the report, and the template if the face is usable.
struct FrameCheck {
  ImageReport image;
  std::optional<FaceTemplate> face;
};

struct LabeledImage {
  std::string source;
  Image image;
};

struct ServiceOptions {
  AnalyzeOptions analyze;  // quality gate etc. for every image
  // Override of the recogniser's calibrated threshold (cosine); NaN keeps the default.
  float threshold_override = std::numeric_limits<float>::quiet_NaN();
  // The in-memory 1:N gallery, shared by the services of one process (a server's workers);
  // null: the service makes its own.
  std::shared_ptr<GalleryCache> gallery;
  // verify, verify_frame and identify_frame decide on the first-pass template when its score is
  // at least RecognizerSpec::first_pass_margin from the threshold, skipping the mirror-image
  // passes (about half the embedding time); the decision is the full template's (docs/models.md,
  // "Early decision"). identify (top-k for people to read) and enrolment always use full
  // templates.
  bool early_decision = true;
  // Decide at the threshold the enrolled population needs (issue 15): the base threshold
  // (calibrated or overridden) raised, never lowered, to the one that holds the gallery's
  // PopulationOptions::target_fmr on the impostor claims among the enrolled users, once there
  // are PopulationOptions::min_users of them. Off: the base threshold alone.
  bool population_threshold = true;
};

// What the enrolled population says about the threshold now.
struct PopulationStatus {
  bool enabled = false;       // ServiceOptions::population_threshold
  float base_threshold = 0;   // calibrated on LFW, or the override
  float operating_threshold = 0;  // what decisions use
  PopulationEstimate estimate;    // for the gallery's target FMR
  // The estimated per-claim false-match rate at the base threshold on this population.
  std::optional<double> fmr_at_base;
  // ... and at the operating threshold.
  std::optional<double> fmr_at_operating;
};

// Not thread-safe (owns one Worker); the Store may be shared.
class FaceService {
 public:
  FaceService(std::shared_ptr<const Engine> engine, std::unique_ptr<Worker> worker, Store& store,
              ServiceOptions options = {});

  // The base threshold: the recogniser's calibrated one, or the override.
  float threshold() const;
  // The threshold 1:1 and 1:N decisions and the duplicate check use: threshold(), raised to the
  // population's (ServiceOptions::population_threshold). Errors: those of the store.
  [[nodiscard]] Result<float> decision_threshold();
  // The population's estimate and both thresholds. Unlike the rest of this class it may be
  // called from any thread beside the worker's own use: it reads only the shared gallery and
  // store. `refresh` false: from the gallery built last, without waiting for a rebuild (the
  // store is read only when there is none yet). Errors: those of the store.
  [[nodiscard]] Result<PopulationStatus> population_status(bool refresh = true);
  // The score any two faces of one enrolment must reach: the recogniser's same_person_threshold,
  // or threshold() if that is lower (an override).
  float same_person_threshold() const;

  // Enrols `images` as templates of `name`: a new user, or (add = true) more faces of an
  // existing one. All or nothing: an image without exactly one usable face fails the whole call
  // (kNoFace, kSeveralFaces, kPoorQuality naming the image and what to do), and so does a face
  // that already matches another user (kDuplicateFace), and images that do not show one person
  // (kDifferentPeople: any two new faces, or a new face and the user's existing ones, below
  // same_person_threshold()); the store is then unchanged.
  [[nodiscard]] Result<EnrollResult> enroll(std::string_view name,
                                            const std::vector<LabeledImage>& images, bool add);

  // Enrols templates already made from usable faces (by check_frame), with the same checks and
  // errors as enroll(); `sources` name each face in messages. For streams: an enrolment keeps
  // templates, not images.
  [[nodiscard]] Result<UserInfo> enroll_templates(std::string_view name,
                                                  const std::vector<FaceTemplate>& templates,
                                                  const std::vector<std::string>& sources,
                                                  bool add);

  // Analyses one frame for enrolment: a frame without exactly one usable face is a result
  // (no template; the report says why), not an error. Errors: internal faults.
  [[nodiscard]] Result<FrameCheck> check_frame(const LabeledImage& image);

  // Analyses one frame as verify_frame does when the score is far from the threshold (with
  // early decision on, the first pass only), and matches nobody: for attempts on accounts that
  // do not exist, which must look and cost the same as attempts on accounts that do. The report
  // only; no template is returned. Errors: internal faults.
  [[nodiscard]] Result<ImageReport> probe_frame(const LabeledImage& image,
                                                float extra_yaw_degrees = 0.f);

  // 1:1. Errors: kNotFound (unknown user), kModelMismatch (enrolled with another recogniser),
  // image problems as in enroll.
  [[nodiscard]] Result<VerifyResult> verify(std::string_view name, const LabeledImage& image);

  // 1:1 on a camera frame, for streams: like verify, but a frame without exactly one usable face
  // is a result (decision.match false, image.outcome and image.message say why), not an error.
  // Errors: kNotFound, kModelMismatch, internal faults.
  // `extra_yaw_degrees`: see AnalyzeOptions (login frames under an active challenge).
  [[nodiscard]] Result<VerifyResult> verify_frame(std::string_view name, const LabeledImage& image,
                                                  float extra_yaw_degrees = 0.f);

  // 1:N, the k best users.
  [[nodiscard]] Result<IdentifyResult> identify(const LabeledImage& image, std::size_t k);
  // 1:N on a camera frame: like identify, but a frame without exactly one usable face is a
  // result (no candidates; image.outcome and image.message say why), not an error.
  [[nodiscard]] Result<IdentifyResult> identify_frame(const LabeledImage& image, std::size_t k,
                                                      float extra_yaw_degrees = 0.f);

 private:
  // Analyses one image and returns its template, or the error that makes it unusable.
  // `decided`: AnalyzeOptions::decided_by_first_pass.
  Result<FaceTemplate> usable_face(const LabeledImage& image, ImageReport* report,
                                   float extra_yaw_degrees = 0.f,
                                   std::function<bool(const FaceTemplate&)> decided = {});
  // The margin of an early decision, 0 when there is none.
  float early_margin() const;
  // kDifferentPeople unless the new faces (and, when adding, the user's existing ones) look like
  // one person.
  // Fills result->candidates (best first) and result->match for `probe` against the gallery.
  Status search_gallery(const FaceTemplate& probe, std::size_t k, IdentifyResult* result);
  Status check_same_person(std::string_view name, const std::vector<std::string>& sources,
                           const std::vector<FaceTemplate>& templates, bool add);

  std::shared_ptr<const Engine> engine_;
  std::unique_ptr<Worker> worker_;
  Store& store_;
  ServiceOptions options_;
  std::shared_ptr<GalleryCache> gallery_;
};

}  // namespace facelogin
