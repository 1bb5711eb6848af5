#pragma once

// Templates and keys for the store tests (shared by the SQLite-only and the shared suites).

#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "facelogin/face_template.h"

namespace facelogin::testing {

inline constexpr std::int64_t kNow = 1'700'000'000;

inline std::string key_of(char fill) { return std::string(32, fill); }

// A unit-length embedding that differs with `seed`.
inline FaceTemplate make_template(const std::string& model_id, float seed, float quality = 0.8f) {
  FaceTemplate t;
  t.model_id = model_id;
  t.quality = quality;
  t.embedding.resize(128);
  float norm = 0.f;
  for (std::size_t i = 0; i < t.embedding.size(); ++i) {
    t.embedding[i] = std::sin(seed * 1.7f + 0.31f * static_cast<float>(i));
    norm += t.embedding[i] * t.embedding[i];
  }
  for (float& v : t.embedding) {
    v /= std::sqrt(norm);
  }
  return t;
}

inline bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

}  // namespace facelogin::testing
