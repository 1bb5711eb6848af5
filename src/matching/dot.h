#pragma once

// The dot-product kernels of the 1:N search, shared by the exact gallery and the approximate
// index: AVX2 + FMA where the CPU has them (chosen at run time), portable code elsewhere.

#include <cstddef>

namespace facelogin::detail {

using DotFn = float (*)(const float* a, const float* b, std::size_t n);

// The fastest fp32 kernel this CPU runs.
DotFn best_dot_f32();
bool cpu_has_avx2();

}  // namespace facelogin::detail
