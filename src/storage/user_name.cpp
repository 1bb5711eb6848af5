#include <string_view>

#include "facelogin/store.h"

namespace facelogin {
namespace {

constexpr std::size_t kMaxUserNameLength = 64;

bool is_name_char(char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' ||
         c == '_' || c == '@' || c == '-';
}

}  // namespace

Status validate_user_name(std::string_view name) {
  // The name itself is not echoed back: it may hold control characters or be very long.
  if (name.empty()) {
    return Status(ErrorCode::kInvalidArgument, "user name is empty");
  }
  if (name.size() > kMaxUserNameLength) {
    return Status(ErrorCode::kInvalidArgument,
                  "user name is longer than " + std::to_string(kMaxUserNameLength) + " characters");
  }
  for (std::size_t i = 0; i < name.size(); ++i) {
    if (!is_name_char(name[i])) {
      return Status(ErrorCode::kInvalidArgument,
                    "user name has a character other than A-Z a-z 0-9 . _ @ - at position " +
                        std::to_string(i + 1));
    }
  }
  // A leading '-' reads as a command-line option, a leading '.' as a hidden or relative path.
  if (name.front() == '-' || name.front() == '.') {
    return Status(ErrorCode::kInvalidArgument, "user name must not start with '-' or '.'");
  }
  return Status::Ok();
}

}  // namespace facelogin
