// libFuzzer target for the evaluation embedding cache reader (load_embedding_cache), a binary
// file that may be truncated, damaged or written by another version.
//
// Input: byte 0 is a flag; the rest is the file. With flag bit 0 set the harness appends the
// FNV-1a trailer the format ends with (src/eval/embedding_cache.cpp), so that the fuzzer gets
// past the checksum into the header and entries instead of only ever meeting "checksum
// mismatch". The file is read as recogniser "rec" with fingerprint "fp".
//
// Contract (include/facelogin/eval.h): never a crash or an unbounded allocation; errors are
// kNotFound, kModelMismatch, kCorrupt or kIoError; a loaded cache has the asked id and
// fingerprint, a dimension of at most 65536, and every embedding has that many values. Saving
// it again and loading that gives the same cache.
//
// Run: build-fuzz/fuzz/embedding_cache_fuzzer CORPUS

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>

#include "facelogin/eval.h"
#include "fuzz_util.h"

namespace {

namespace fz = facelogin::fuzz;
using facelogin::ErrorCode;

std::uint64_t fnv1a(std::string_view bytes) {
  std::uint64_t h = 0xcbf29ce484222325ull;
  for (char c : bytes) {
    h ^= static_cast<unsigned char>(c);
    h *= 0x100000001b3ull;
  }
  return h;
}

bool same(const facelogin::eval::EmbeddingCache& a, const facelogin::eval::EmbeddingCache& b) {
  if (a.recognizer_id != b.recognizer_id || a.fingerprint != b.fingerprint || a.dim != b.dim ||
      a.entries.size() != b.entries.size()) {
    return false;
  }
  for (const auto& [key, embedding] : a.entries) {
    const auto it = b.entries.find(key);
    if (it == b.entries.end() || embedding.has_value() != it->second.has_value()) {
      return false;
    }
    // Bitwise, so NaN payloads read from the file compare equal to themselves.
    if (embedding && !embedding->empty() && std::memcmp(embedding->data(), it->second->data(),
                                 embedding->size() * sizeof(float)) != 0) {
      return false;
    }
  }
  return true;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 1) {
    return 0;
  }
  std::string file(fz::as_text(data + 1, size - 1));
  if (data[0] & 1) {
    const std::uint64_t h = fnv1a(file);
    for (int i = 0; i < 8; ++i) {
      file += static_cast<char>(h >> (8 * i));
    }
  }
  const std::filesystem::path path = fz::scratch_dir() / "cache.bin";
  fz::write_file(path, file);
  auto cache = facelogin::eval::load_embedding_cache(path, "rec", "fp");
  if (!cache) {
    const ErrorCode code = cache.error().code();
    FUZZ_REQUIRE(code == ErrorCode::kNotFound || code == ErrorCode::kModelMismatch ||
                     code == ErrorCode::kCorrupt || code == ErrorCode::kIoError,
                 cache.error().to_string());
    return 0;
  }
  FUZZ_REQUIRE(cache->recognizer_id == "rec" && cache->fingerprint == "fp", "id");
  FUZZ_REQUIRE(cache->dim <= (1u << 16), "dim");
  for (const auto& [key, embedding] : cache->entries) {
    FUZZ_REQUIRE(!key.empty(), "an empty key");
    FUZZ_REQUIRE(!embedding || embedding->size() == cache->dim, key);
  }
  const std::filesystem::path again = fz::scratch_dir() / "cache-again.bin";
  const facelogin::Status saved = facelogin::eval::save_embedding_cache(again, *cache);
  FUZZ_REQUIRE(saved.ok(), saved.to_string());
  auto reloaded = facelogin::eval::load_embedding_cache(again, "rec", "fp");
  FUZZ_REQUIRE(reloaded.has_value() && same(*cache, *reloaded), "save then load differs");
  return 0;
}
