// libFuzzer target for the model catalog's readers: the bytes of a model file as found on disk
// (sha256_file, verify_model_file, read_model_file) and the names a configuration or the command
// line gives (find_model, find_recognizer, parse_liveness_policy, parse_gallery_precision). The
// catalog itself is compiled in; what comes from outside is the files and the names.
//
// Input: byte 0 picks a catalog model; the rest is the file's content (written to /dev/shm) and,
// when shorter than 100 bytes, also the name given to the lookups.
//
// Contracts (include/facelogin/models.h, liveness.h, gallery.h):
// - sha256_file is the lower-case hex SHA-256 of the bytes (checked against OpenSSL's one-shot
//   digest), kNotFound for an absent file.
// - verify_model_file: ok exactly when the digest is the spec's; otherwise kModelError naming the
//   file. read_model_file then returns exactly the bytes, or verify_model_file's error.
// - find_model / find_recognizer: null, or the entry with exactly that id.
// - parse_liveness_policy / parse_gallery_precision: exactly the documented names, which
//   round-trip through their *_name functions; anything else kInvalidArgument.
//
// Run: build-fuzz/fuzz/model_files_fuzzer CORPUS

#include <openssl/sha.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <string>

#include "facelogin/gallery.h"
#include "facelogin/liveness.h"
#include "facelogin/models.h"
#include "fuzz_util.h"

namespace {

namespace fz = facelogin::fuzz;
using facelogin::ErrorCode;

std::string sha256_hex(std::string_view bytes) {
  unsigned char digest[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(bytes.data()), bytes.size(), digest);
  std::string hex;
  for (unsigned char b : digest) {
    char two[3];
    std::snprintf(two, sizeof two, "%02x", b);
    hex += two;
  }
  return hex;
}

void check_names(const std::string& name) {
  const facelogin::ModelSpec* model = facelogin::find_model(name);
  FUZZ_REQUIRE(model == nullptr || model->id == name, name);
  const facelogin::RecognizerSpec* recognizer = facelogin::find_recognizer(name);
  FUZZ_REQUIRE(recognizer == nullptr || recognizer->id == name, name);

  auto policy = facelogin::parse_liveness_policy(name);
  const bool policy_name =
      name == "off" || name == "passive" || name == "active" || name == "adaptive";
  FUZZ_REQUIRE(policy.has_value() == policy_name, name);
  if (policy) {
    FUZZ_REQUIRE(facelogin::liveness_policy_name(*policy) == name, name);
  } else {
    FUZZ_REQUIRE(policy.error().code() == ErrorCode::kInvalidArgument, name);
  }
  auto precision = facelogin::parse_gallery_precision(name);
  FUZZ_REQUIRE(precision.has_value() == (name == "fp32" || name == "fp16"), name);
  if (precision) {
    FUZZ_REQUIRE(facelogin::gallery_precision_name(*precision) == name, name);
  } else {
    FUZZ_REQUIRE(precision.error().code() == ErrorCode::kInvalidArgument, name);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 1) {
    return 0;
  }
  const auto& catalog = facelogin::model_catalog();
  facelogin::ModelSpec spec = catalog[data[0] % catalog.size()];
  FUZZ_REQUIRE(facelogin::find_model(spec.id) == &catalog[data[0] % catalog.size()], spec.id);
  const std::string_view bytes = fz::as_text(data + 1, size - 1);
  if (bytes.size() < 100) {
    check_names(std::string(bytes));
  }

  const std::filesystem::path dir = fz::scratch_dir() / "models";
  std::filesystem::create_directories(dir);
  spec.file = "model.onnx";
  fz::write_file(dir / spec.file, bytes);

  const std::string expected = sha256_hex(bytes);
  auto digest = facelogin::sha256_file(dir / spec.file);
  FUZZ_REQUIRE(digest.has_value() && *digest == expected, expected);

  // The catalog's digest: only the real file has it.
  const facelogin::Status verified = facelogin::verify_model_file(dir, spec);
  FUZZ_REQUIRE(verified.ok() == (expected == spec.sha256), verified.to_string());
  if (!verified.ok()) {
    FUZZ_REQUIRE(verified.code() == ErrorCode::kModelError &&
                     verified.message().find(spec.file) != std::string::npos,
                 verified.to_string());
    auto refused = facelogin::read_model_file(dir, spec);
    FUZZ_REQUIRE(!refused && refused.error().code() == ErrorCode::kModelError, "read_model_file");
  }
  // A spec with this file's digest: the bytes come back unchanged.
  spec.sha256 = expected;
  FUZZ_REQUIRE(facelogin::verify_model_file(dir, spec).ok(), expected);
  auto read = facelogin::read_model_file(dir, spec);
  FUZZ_REQUIRE(read.has_value() && read->size() == bytes.size() &&
                   std::equal(read->begin(), read->end(), bytes.begin(),
                              [](unsigned char a, char b) { return a == static_cast<unsigned char>(b); }),
               "read_model_file changed the bytes");

  spec.file = "absent.onnx";
  FUZZ_REQUIRE(facelogin::verify_model_file(dir, spec).code() == ErrorCode::kModelError, "absent");
  auto absent = facelogin::sha256_file(dir / spec.file);
  FUZZ_REQUIRE(!absent && absent.error().code() == ErrorCode::kNotFound, "absent");
  return 0;
}
