#pragma once

// Comparing templates and deciding. Scores are cosine similarities of unit vectors (higher is
// closer); thresholds come from the recogniser's calibration (RecognizerSpec::cosine_threshold).

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "facelogin/face_template.h"
#include "facelogin/status.h"
#include "facelogin/store.h"

namespace facelogin {

// Cosine similarity of two templates of the same recogniser.
// Errors: kModelMismatch (different recognisers: the user must re-enrol), kInvalidArgument
// (different lengths or empty).
[[nodiscard]] Result<float> similarity(const FaceTemplate& a, const FaceTemplate& b);

// Ok when a probe of recogniser `model_id` can be compared with every template of `enrolled`.
// Errors: kNotFound (no templates), kModelMismatch (a template of another recogniser: the user
// must re-enrol). verify() checks this first; callers may check it before making a probe.
[[nodiscard]] Status check_comparable(std::string_view model_id,
                                      std::span<const StoredTemplate> enrolled);

struct VerifyDecision {
  bool match = false;
  float score = 0.f;  // best similarity over the user's templates
  float threshold = 0.f;
  int templates_compared = 0;
};

// 1:1: the probe against every template of one user; a match when the best score reaches the
// threshold. The false match rate per decision is at most (number of templates) x the per-
// comparison rate the threshold was calibrated for. Templates of another recogniser are an error
// (kModelMismatch), never silently skipped; an empty list is kNotFound.
[[nodiscard]] Result<VerifyDecision> verify(const FaceTemplate& probe,
                                            std::span<const StoredTemplate> enrolled,
                                            float threshold);

struct Candidate {
  std::int64_t user_id = 0;
  float score = 0.f;  // the user's best template
};

// 1:N: the k users whose best template is closest to the probe, best first, ties by user id.
// Templates of other recognisers are skipped (all_templates() already filters by model).
[[nodiscard]] std::vector<Candidate> search(const FaceTemplate& probe,
                                            std::span<const StoredTemplate> gallery, std::size_t k);

}  // namespace facelogin
