#pragma once

// Force-included (fuzz/CMakeLists.txt) into src/matching/gallery.cpp when the compiler is clang
// older than 16, whose __builtin_cpu_supports does not know "f16c" ("invalid cpu feature string
// for builtin"): the fuzz build then asks CPUID itself. Same answer, so the fuzzed code takes
// the same paths as the product built with g++.

#include <cpuid.h>
#include <cstring>

namespace facelogin_fuzz_compat {

inline bool cpu_supports(const char* feature) {
  if (std::strcmp(feature, "f16c") == 0) {
    unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
    // F16C works only where the OS saves the AVX state, which "avx" checks.
    return __builtin_cpu_supports("avx") && __get_cpuid(1, &eax, &ebx, &ecx, &edx) != 0 &&
           (ecx & bit_F16C) != 0;
  }
  if (std::strcmp(feature, "avx2") == 0) {
    return __builtin_cpu_supports("avx2");
  }
  if (std::strcmp(feature, "fma") == 0) {
    return __builtin_cpu_supports("fma");
  }
  if (std::strcmp(feature, "avx") == 0) {
    return __builtin_cpu_supports("avx");
  }
  return false;  // a feature this shim does not know: the portable path
}

}  // namespace facelogin_fuzz_compat

// A function-like macro, so only calls are redirected; the shim above already holds the real
// builtin's calls.
#define __builtin_cpu_supports(feature) ::facelogin_fuzz_compat::cpu_supports(feature)
