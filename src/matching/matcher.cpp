#include "facelogin/matching.h"

#include <algorithm>
#include <string_view>
#include <utility>
#include <unordered_map>

#include <fmt/format.h>

namespace facelogin {
namespace {

float dot(const std::vector<float>& a, const std::vector<float>& b) {
  float s = 0.f;
  for (std::size_t i = 0; i < a.size(); ++i) {
    s += a[i] * b[i];
  }
  return s;
}

Status model_mismatch(std::string_view enrolled, std::string_view probe) {
  return Status(ErrorCode::kModelMismatch,
                fmt::format("template made by '{}' cannot be compared with one made by '{}': "
                            "re-enrol the user with the current recogniser",
                            enrolled, probe));
}

}  // namespace

Result<float> similarity(const FaceTemplate& a, const FaceTemplate& b) {
  if (a.model_id != b.model_id) {
    return make_error(model_mismatch(b.model_id, a.model_id));
  }
  if (a.embedding.empty() || a.embedding.size() != b.embedding.size()) {
    return make_error(ErrorCode::kInvalidArgument,
                      fmt::format("templates of {} and {} values cannot be compared",
                                  a.embedding.size(), b.embedding.size()));
  }
  return dot(a.embedding, b.embedding);
}

Status check_comparable(std::string_view model_id, std::span<const StoredTemplate> enrolled) {
  if (enrolled.empty()) {
    return Status(ErrorCode::kNotFound, "the user has no enrolled face");
  }
  for (const auto& t : enrolled) {
    if (t.face.model_id != model_id) {
      return model_mismatch(t.face.model_id, model_id);
    }
  }
  return Status::Ok();
}

Result<VerifyDecision> verify(const FaceTemplate& probe, std::span<const StoredTemplate> enrolled,
                              float threshold) {
  if (Status s = check_comparable(probe.model_id, enrolled); !s.ok()) {
    return make_error(std::move(s));
  }
  VerifyDecision d;
  d.threshold = threshold;
  d.score = -1.f;
  for (const auto& t : enrolled) {
    auto s = similarity(probe, t.face);
    if (!s) {
      return make_error(s.error());
    }
    d.score = std::max(d.score, *s);
    ++d.templates_compared;
  }
  d.match = d.score >= threshold;
  return d;
}

std::vector<Candidate> search(const FaceTemplate& probe, std::span<const StoredTemplate> gallery,
                              std::size_t k) {
  std::unordered_map<std::int64_t, float> best;
  for (const auto& t : gallery) {
    if (t.face.model_id != probe.model_id || t.face.embedding.size() != probe.embedding.size()) {
      continue;
    }
    const float s = dot(probe.embedding, t.face.embedding);
    auto [it, inserted] = best.try_emplace(t.user_id, s);
    if (!inserted) {
      it->second = std::max(it->second, s);
    }
  }
  std::vector<Candidate> out;
  out.reserve(best.size());
  for (const auto& [user, score] : best) {
    out.push_back({user, score});
  }
  const auto better = [](const Candidate& a, const Candidate& b) {
    return a.score != b.score ? a.score > b.score : a.user_id < b.user_id;
  };
  k = std::min(k, out.size());
  std::partial_sort(out.begin(), out.begin() + static_cast<std::ptrdiff_t>(k), out.end(), better);
  out.resize(k);
  return out;
}

}  // namespace facelogin
