#pragma once

// Expected failures are values, not exceptions. Every fallible public function returns a
// Status or a Result<T>; the code says what kind of failure it was (and so which exit code or
// HTTP status it maps to), the message says what a person can do about it.

#include <string>
#include <string_view>
#include <tl/expected.hpp>
#include <utility>

namespace facelogin {

enum class ErrorCode {
  kOk = 0,
  kInvalidArgument,  // the caller passed something malformed (bad name, bad option)
  kBadImage,         // not a decodable JPEG/PNG, or corrupt
  kImageTooLarge,    // over the byte or pixel limits; refused before decoding
  kNoFace,           // no face found
  kSeveralFaces,     // more than one face of comparable size
  kPoorQuality,      // a face, but not usable (too dark, blurred, ...)
  kModelMismatch,    // a template made by another model: re-enrol
  kNotFound,         // unknown user, template or file
  kAlreadyExists,    // user name taken
  kDuplicateFace,    // this face is already enrolled under another user
  kDifferentPeople,  // the images of one enrolment do not show the same person
  kModelError,       // a model file is missing, corrupt or fails its checksum
  kIoError,          // file system or database I/O failed
  kCorrupt,          // stored data failed its integrity check (tampered or wrong key)
  kBusy,             // resource busy (database locked past the timeout)
  kUnauthenticated,  // no valid session or credential
  kForbidden,        // authenticated, but not allowed (scope, disabled account, CSRF check)
  kTooManyRequests,  // rate limit or lockout after failed attempts; retry later
  kUnavailable,      // the service cannot take the work now (workers saturated, shutting down)
  kInternal,         // a bug: an invariant did not hold
};

// A short, stable, machine-readable name for the code ("no_face", "bad_image", ...).
[[nodiscard]] std::string_view error_code_name(ErrorCode code);

// Status: ok, or a code and a human-readable message. Cheap to copy. Thread-compatible.
class [[nodiscard]] Status {
 public:
  Status() = default;
  Status(ErrorCode code, std::string message) : code_(code), message_(std::move(message)) {}

  static Status Ok() { return Status(); }

  bool ok() const { return code_ == ErrorCode::kOk; }
  ErrorCode code() const { return code_; }
  const std::string& message() const { return message_; }
  // "no_face: no face found in the image"
  std::string to_string() const;

 private:
  ErrorCode code_ = ErrorCode::kOk;
  std::string message_;
};

template <typename T>
using Result = tl::expected<T, Status>;

// Builds the error side of a Result: `return make_error(ErrorCode::kNoFace, "...");`
inline tl::unexpected<Status> make_error(ErrorCode code, std::string message) {
  return tl::unexpected<Status>(Status(code, std::move(message)));
}
inline tl::unexpected<Status> make_error(Status status) {
  return tl::unexpected<Status>(std::move(status));
}

}  // namespace facelogin
