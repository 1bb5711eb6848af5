#include "facelogin/status.h"

namespace facelogin {

std::string_view error_code_name(ErrorCode code) {
  switch (code) {
    case ErrorCode::kOk: return "ok";
    case ErrorCode::kInvalidArgument: return "invalid_argument";
    case ErrorCode::kBadImage: return "bad_image";
    case ErrorCode::kImageTooLarge: return "image_too_large";
    case ErrorCode::kNoFace: return "no_face";
    case ErrorCode::kSeveralFaces: return "several_faces";
    case ErrorCode::kPoorQuality: return "poor_quality";
    case ErrorCode::kModelMismatch: return "model_mismatch";
    case ErrorCode::kNotFound: return "not_found";
    case ErrorCode::kAlreadyExists: return "already_exists";
    case ErrorCode::kDuplicateFace: return "duplicate_face";
    case ErrorCode::kDifferentPeople: return "different_people";
    case ErrorCode::kModelError: return "model_error";
    case ErrorCode::kIoError: return "io_error";
    case ErrorCode::kCorrupt: return "corrupt";
    case ErrorCode::kBusy: return "busy";
    case ErrorCode::kUnauthenticated: return "unauthenticated";
    case ErrorCode::kForbidden: return "forbidden";
    case ErrorCode::kTooManyRequests: return "too_many_requests";
    case ErrorCode::kUnavailable: return "unavailable";
    case ErrorCode::kInternal: return "internal";
  }
  return "unknown";
}

std::string Status::to_string() const {
  if (ok()) {
    return "ok";
  }
  std::string out(error_code_name(code_));
  out += ": ";
  out += message_;
  return out;
}

}  // namespace facelogin
