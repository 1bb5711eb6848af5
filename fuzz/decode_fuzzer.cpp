// libFuzzer target for facelogin::decode_image, the first code to see untrusted image bytes.
//
// Build (needs clang and libFuzzer; on Debian: apt-get install -y clang libclang-rt-14-dev):
//   cmake -S . -B build-fuzz -DCMAKE_CXX_COMPILER=clang++ -DFACELOGIN_BUILD_FUZZERS=ON \
//         -DFACELOGIN_BUILD_TESTS=OFF
//   cmake --build build-fuzz -j2 --target decode_fuzzer decode_fuzz_seeds
// Seed a corpus with small JPEGs and PNGs of every kind the decoder handles, then run:
//   build-fuzz/fuzz/decode_fuzz_seeds /tmp/decode-corpus
//   build-fuzz/fuzz/decode_fuzzer /tmp/decode-corpus -dict=fuzz/image.dict -max_len=65536 \
//         -max_total_time=120
// A crash leaves crash-<sha1> in the working directory; replay it with
//   build-fuzz/fuzz/decode_fuzzer crash-<sha1>
//
// facelogin_core is built with coverage and ASan/UBSan instrumentation (fuzz/CMakeLists.txt);
// OpenCV, libjpeg and libpng come from Debian uninstrumented, so the fuzzer finds crashes and
// hangs there but not silent out-of-bounds reads.
//
// Besides "does not crash", the target checks the contract of image.h: a success is a
// well-formed image within the limits, a failure is kBadImage or kImageTooLarge, nothing else.

#include <cstddef>
#include <cstdint>
#include <span>

#include "facelogin/image.h"

namespace {

// Smaller than the defaults, so that a fuzzed header claiming a legal but large size costs
// milliseconds, not the ~300 MB and a second that a 50 MP decode takes. The code paths are the
// same.
facelogin::DecodeLimits fuzz_limits() {
  facelogin::DecodeLimits limits;
  limits.max_bytes = 1u << 20;
  limits.max_pixels = 4'000'000;
  limits.max_side = 4096;
  return limits;
}

void require(bool condition) {
  if (!condition) {
    __builtin_trap();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const facelogin::DecodeLimits limits = fuzz_limits();
  const std::span<const std::uint8_t> bytes(data, size);
  const facelogin::ImageFormat format = facelogin::sniff_image_format(bytes);
  const facelogin::Result<facelogin::Image> image = facelogin::decode_image(bytes, limits);
  if (image) {
    require(format != facelogin::ImageFormat::kUnknown);
    require(image->width > 0 && image->height > 0);
    require(image->width <= limits.max_side && image->height <= limits.max_side);
    require(static_cast<std::int64_t>(image->width) * image->height <= limits.max_pixels);
    require(image->bgr.size() ==
            static_cast<std::size_t>(image->width) * static_cast<std::size_t>(image->height) * 3);
  } else {
    const facelogin::ErrorCode code = image.error().code();
    require(code == facelogin::ErrorCode::kBadImage ||
            code == facelogin::ErrorCode::kImageTooLarge);
    require(!image.error().message().empty());
  }
  return 0;
}
