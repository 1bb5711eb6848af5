#pragma once

// Model descriptions. A model is described once, here, and the vision code is generic over the
// description: adding a model means adding a ModelSpec (and, for recognition, a RecognizerSpec),
// not a code path. The catalog itself lives in src/vision/model_catalog.cpp.

#include <array>
#include <filesystem>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "facelogin/face_template.h"
#include "facelogin/geometry.h"
#include "facelogin/status.h"

namespace facelogin {

enum class ModelKind { kDetector, kLandmarks, kEmbedder, kLiveness };
enum class ColorOrder { kRgb, kBgr };
enum class Metric { kCosine, kEuclidean };

struct ModelSpec {
  std::string id;  // stable identifier, e.g. "dlib-resnet-v1"
  ModelKind kind = ModelKind::kEmbedder;
  std::string file;    // file name inside the model directory
  std::string sha256;  // lower-case hex of the file's bytes
  // Which decoder runs the network, for kinds whose outputs need model-specific decoding
  // (detectors: "yunet", "ultraface"; landmark models: "landmark68"). Embedders need none.
  std::string runtime;
  // Another model this one needs, by id (a box-only detector names its landmark model).
  std::string companion_model;
  int input_width = 0;
  int input_height = 0;
  ColorOrder color = ColorOrder::kRgb;
  // Input normalisation, per channel in the model's colour order: (pixel - mean) * scale.
  std::array<float, 3> mean{0.f, 0.f, 0.f};
  float scale = 1.f;
  // Embedders: where the five landmarks (Landmarks5 order) go in the input, in input pixels.
  Landmarks5 alignment{};
  int embedding_size = 0;
  // Liveness models: the face box is enlarged by this factor around its centre to make the crop
  // (see liveness_crop_box in facelogin/liveness.h).
  float crop_scale = 0.f;
  std::string licence;
  // Where the weights come from and how they become this file.
  std::string source;
  // Upstream URL for a direct download, empty where the file is made by tools/ from a registry
  // package.
  std::string url;
  std::string notes;
  // A recogniser's network that was measured and not chosen (docs/models.md): its file is made
  // only by `facelogin models fetch --candidates`.
  bool candidate = false;
};

// One member of a recogniser: a model's L2-normalised embedding, optionally averaged with the
// embedding of the horizontally flipped crop, scaled by sqrt(weight) before concatenation so
// that the dot product of two templates is sum(weight_i * cosine_i).
struct RecognizerComponent {
  std::string model_id;
  float weight = 1.f;
  bool flip = false;
};

// What makes a template: one model or a weighted fusion of several. Template model ids are
// recogniser ids.
struct RecognizerSpec {
  std::string id;
  std::string description;
  std::vector<RecognizerComponent> components;
  // The metric the threshold is expressed in. Templates are unit vectors, so both metrics order
  // pairs identically; scores inside facelogin are always cosine similarity (higher = closer),
  // and a Euclidean threshold d corresponds to a cosine of 1 - d*d/2.
  Metric metric = Metric::kCosine;
  // Default decision threshold in the metric's unit, calibrated for a false match rate of at most
  // 1e-5 per comparison (see threshold_source).
  float threshold = 0.f;
  std::string threshold_source;
  // Cosine that two images of one enrolment must reach with each other (and new faces added to
  // a user with that user's faces): the FMR 1e-3 point of the same calibration. Lower than the
  // decision threshold, so that one person's varied photos pass while a mix-up does not.
  float same_person_threshold = 0.f;
  // The false match rate per comparison the default threshold was calibrated for. 1:N search
  // over G templates falsely matches someone with probability up to about G times this.
  double threshold_fmr = 1e-5;
  // Early decision: a frame's first-pass template (compose_first_pass_template: the crop alone,
  // no mirror image, so one network pass per model instead of two) scored within this much of
  // its full template against every enrolled template of the calibration set, so a decision
  // whose first-pass score is at least this far from the threshold is taken as the full
  // template's decision. An empirical bound, not a guarantee: 1.3 x the largest difference over
  // every ordered pair of the calibration images, rounded up to 0.005 (`facelogin eval lfw`
  // prints that difference; docs/models.md has a held-out check). 0: no early decision (nothing
  // is flipped).
  float first_pass_margin = 0.f;

  // The threshold as a cosine similarity.
  float cosine_threshold() const;
};

// What one embedding model made of one face: the unit-length embedding of the aligned crop and,
// when computed, of its mirror image.
struct ModelViews {
  std::vector<float> original;
  std::vector<float> mirrored;  // empty when not computed
};
using FaceViews = std::map<std::string, ModelViews, std::less<>>;  // by ModelSpec::id

// A recogniser's template from per-model views: per component, the original view (or the
// normalised mean of both views when the component flips), scaled by sqrt(weight), concatenated
// and normalised. This is the only place templates are put together, for the engine and for
// evaluation alike. Errors: kInvalidArgument naming a missing model or mirrored view.
[[nodiscard]] Result<FaceTemplate> compose_template(const RecognizerSpec& spec,
                                                    const FaceViews& views);

// The same from the original views alone, as if no component flipped: the first-pass template
// that an early decision compares (RecognizerSpec::first_pass_margin). Carries spec.id, so it
// compares with stored templates, but it is never stored: enrolment always composes the full
// template. Errors: as compose_template.
[[nodiscard]] Result<FaceTemplate> compose_first_pass_template(const RecognizerSpec& spec,
                                                               const FaceViews& views);

[[nodiscard]] const std::vector<ModelSpec>& model_catalog();
[[nodiscard]] const std::vector<RecognizerSpec>& recognizer_catalog();
[[nodiscard]] const ModelSpec* find_model(std::string_view id);
[[nodiscard]] const RecognizerSpec* find_recognizer(std::string_view id);
[[nodiscard]] std::string_view default_recognizer_id();

// Sum of the components' embedding sizes. Requires every component to be in the catalog.
[[nodiscard]] int recognizer_embedding_size(const RecognizerSpec& spec);

// The model directory: FACELOGIN_MODEL_DIR if set, else the "models" folder next to the
// current directory's project checkout (./models), else ../shared/models.
[[nodiscard]] std::filesystem::path default_model_dir();

// Checks that `dir/spec.file` exists and has spec.sha256. Errors: kModelError naming the file,
// what was expected and how to obtain it.
[[nodiscard]] Status verify_model_file(const std::filesystem::path& dir, const ModelSpec& spec);

// The bytes of `dir/spec.file` once verify_model_file has passed. Errors: those of
// verify_model_file, and kIoError if the file cannot be read.
[[nodiscard]] Result<std::vector<unsigned char>> read_model_file(const std::filesystem::path& dir,
                                                                 const ModelSpec& spec);

// SHA-256 of a file, lower-case hex. Errors: kNotFound, kIoError.
[[nodiscard]] Result<std::string> sha256_file(const std::filesystem::path& path);

}  // namespace facelogin
