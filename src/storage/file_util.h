#pragma once

// Small POSIX file helpers shared by the key file and the database (internal to storage).

#include <filesystem>

#include "facelogin/status.h"

namespace facelogin::storage {

// Creates `dir` and any missing parent with mode 0700 (less the umask), so the key and the
// database do not sit in a directory others can list. Directories that already exist are left
// as they are. Errors: kIoError (with the path and the reason).
[[nodiscard]] Status create_private_directories(const std::filesystem::path& dir);

// Closes a file descriptor when it goes out of scope.
class UniqueFd {
 public:
  explicit UniqueFd(int fd = -1) : fd_(fd) {}
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;
  ~UniqueFd();

  int get() const { return fd_; }
  explicit operator bool() const { return fd_ >= 0; }
  // Closes now and reports whether close() succeeded (it can report a deferred write error).
  [[nodiscard]] bool close();

 private:
  int fd_;
};

}  // namespace facelogin::storage
