#pragma once

// Passive (single-frame) liveness: is this face in front of the camera, or a photo of one?
// The Silent-Face MiniFASNet pair (Apache-2.0, ../shared/models, docs/models.md): each network
// sees the raw BGR frame cropped around the face box enlarged by its own factor (2.7 and 4.0, so
// that the edges of a print or a screen are in view), resized to 80x80; the score is the mean of
// the two networks' softmax probability of the "real face" class.
//
// This is one signal of several (issue 4): it stops small printed photos (NUAA) well, and is
// known to pass some screen replays and masks. It never decides alone in the product.
//
// Same shape as Engine: LivenessModels is immutable and shared; each thread makes its own
// LivenessScorer.

#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "facelogin/geometry.h"
#include "facelogin/image.h"
#include "facelogin/status.h"

namespace facelogin {

// The crop a liveness network of enlargement `scale` sees: the face box scaled around its centre,
// the scale lowered where needed so that the crop fits in the frame, then shifted (never padded)
// to lie inside it. Integer pixel bounds, inclusive of x and y, of width/height >= 1.
// Precondition: frame_width, frame_height >= 2 and a box of positive size.
[[nodiscard]] Box liveness_crop_box(const Box& face, float scale, int frame_width,
                                    int frame_height);

// The default decision threshold on LivenessScore::live (accept as live at or above it), for the
// mean score of an attempt's frames. How it was chosen: docs/liveness.md.
inline constexpr float kDefaultLiveThreshold = 0.46f;

struct LivenessScore {
  float live = 0.f;                // 0..1: mean of the models' real-class probabilities
  std::vector<float> per_model;    // each model's real-class probability, catalog order
};

class LivenessScorer;

class LivenessModels {
 public:
  virtual ~LivenessModels() = default;

  // Loads and checks (sha256) every liveness model of the catalog from `model_dir` (empty:
  // default_model_dir()). Errors: kModelError naming the missing or corrupt file and how to
  // get it.
  [[nodiscard]] static Result<std::shared_ptr<const LivenessModels>> load(
      const std::filesystem::path& model_dir);

  // The catalog ids of the models, in scoring order.
  virtual const std::vector<std::string>& model_ids() const = 0;
  // A scorer with its own inference state. Errors: kModelError if a network fails to build.
  [[nodiscard]] virtual Result<std::unique_ptr<LivenessScorer>> make_scorer() const = 0;
};

// Not thread-safe: one per thread. Keeps its LivenessModels alive.
class LivenessScorer {
 public:
  virtual ~LivenessScorer() = default;

  // Scores the face `box` (in `frame` pixels, as the detector gives it) of a camera frame.
  // Errors: kInvalidArgument for an empty frame or a box that does not overlap it; kInternal
  // if a network fails.
  [[nodiscard]] virtual Result<LivenessScore> score(const Image& frame, const Box& box) = 0;
};

}  // namespace facelogin
