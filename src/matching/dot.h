#pragma once

// Shared by the exact gallery and the approximate index: the dot-product kernels (AVX2 + FMA
// where the CPU has them, chosen at run time; portable code elsewhere) and the ranking of users
// by their best template.

#include <cstddef>
#include <cstdint>
#include <unordered_map>
#include <vector>

#include "facelogin/matching.h"

namespace facelogin::detail {

using DotFn = float (*)(const float* a, const float* b, std::size_t n);

// The fastest fp32 kernel this CPU runs.
DotFn best_dot_f32();
bool cpu_has_avx2();

// Each user's best score so far: keep_best() offers one, top_users() returns the k best users,
// best first, ties by user id (the order of facelogin::search()).
using BestScores = std::unordered_map<std::int64_t, float>;
void keep_best(BestScores& best, std::int64_t user, float score);
std::vector<Candidate> top_users(const BestScores& best, std::size_t k);

}  // namespace facelogin::detail
