#include "storage/file_util.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>

namespace facelogin::storage {

UniqueFd::~UniqueFd() {
  if (fd_ >= 0) {
    ::close(fd_);
  }
}

bool UniqueFd::close() {
  if (fd_ < 0) {
    return true;
  }
  const int rc = ::close(fd_);
  fd_ = -1;
  return rc == 0;
}

Status create_private_directories(const std::filesystem::path& dir) {
  std::filesystem::path prefix;
  for (const auto& part : dir) {
    prefix /= part;
    if (part.empty() || part == prefix.root_path()) {
      continue;
    }
    if (::mkdir(prefix.c_str(), 0700) == 0) {
      continue;
    }
    const int err = errno;
    struct stat st {};
    if (err == EEXIST && ::stat(prefix.c_str(), &st) == 0 && S_ISDIR(st.st_mode)) {
      continue;
    }
    return Status(ErrorCode::kIoError,
                  "cannot create directory " + prefix.string() + ": " + std::strerror(err));
  }
  return Status::Ok();
}

}  // namespace facelogin::storage
