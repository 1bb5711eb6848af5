#pragma once

// Synthetic templates for tests of population statistics (issue 15): people as unit vectors
// around a centre, strangers or look-alikes by how much of a shared direction the centre holds.

#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "facelogin/face_template.h"

namespace facelogin::testing {

inline std::vector<float> normalized(std::vector<float> v) {
  double n = 0;
  for (float x : v) n += static_cast<double>(x) * x;
  for (float& x : v) x = static_cast<float>(x / std::sqrt(n));
  return v;
}

inline std::vector<float> random_direction(std::size_t dim, std::mt19937& rng) {
  std::normal_distribution<float> g(0.f, 1.f);
  std::vector<float> v(dim);
  for (float& x : v) x = g(rng);
  return normalized(v);
}

// `count` templates of one person whose centre holds `likeness` of `shared` (0: a stranger to
// everyone; 0.92: people whose templates score about 0.85 against each other's).
inline std::vector<FaceTemplate> synthetic_person(const std::string& model_id,
                                                  const std::vector<float>& shared,
                                                  float likeness, int count, std::mt19937& rng) {
  const std::size_t dim = shared.size();
  const auto own = random_direction(dim, rng);
  std::vector<float> centre(dim);
  for (std::size_t i = 0; i < dim; ++i) {
    centre[i] = likeness * shared[i] + std::sqrt(1 - likeness * likeness) * own[i];
  }
  std::normal_distribution<float> g(0.f, 0.15f / std::sqrt(static_cast<float>(dim)));
  std::vector<FaceTemplate> templates;
  for (int k = 0; k < count; ++k) {
    FaceTemplate t;
    t.model_id = model_id;
    t.quality = 0.9f;
    t.embedding = centre;
    for (float& x : t.embedding) x += g(rng);
    t.embedding = normalized(t.embedding);
    templates.push_back(std::move(t));
  }
  return templates;
}

}  // namespace facelogin::testing
