// load_or_create_key: the template key from FACELOGIN_KEY or from a private key file.

#include <fcntl.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "facelogin/store.h"
#include "storage/file_util.h"
#include "storage/template_cipher.h"

namespace facelogin {
namespace {

namespace fs = std::filesystem;
using storage::kKeySize;
using storage::UniqueFd;

constexpr const char* kKeyEnvVar = "FACELOGIN_KEY";

std::string errno_text(int err) { return std::strerror(err); }

int hex_value(char c) {
  if (c >= '0' && c <= '9') {
    return c - '0';
  }
  if (c >= 'a' && c <= 'f') {
    return c - 'a' + 10;
  }
  if (c >= 'A' && c <= 'F') {
    return c - 'A' + 10;
  }
  return -1;
}

// The messages never quote the value: it is (or is close to) the key.
Result<std::string> parse_hex_key(std::string_view hex) {
  if (hex.size() != 2 * kKeySize) {
    return make_error(ErrorCode::kInvalidArgument,
                      std::string(kKeyEnvVar) + " must be " + std::to_string(2 * kKeySize) +
                          " hexadecimal digits (a 32-byte key), but it has " +
                          std::to_string(hex.size()) + " characters");
  }
  std::string key(kKeySize, '\0');
  for (std::size_t i = 0; i < kKeySize; ++i) {
    const int hi = hex_value(hex[2 * i]);
    const int lo = hex_value(hex[2 * i + 1]);
    if (hi < 0 || lo < 0) {
      OPENSSL_cleanse(key.data(), key.size());
      return make_error(ErrorCode::kInvalidArgument,
                        std::string(kKeyEnvVar) + " has a character that is not a hexadecimal digit");
    }
    key[i] = static_cast<char>(hi * 16 + lo);
  }
  return key;
}

bool read_fully(int fd, char* out, std::size_t size) {
  std::size_t done = 0;
  while (done < size) {
    const ssize_t n = ::read(fd, out + done, size - done);
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n <= 0) {
      return false;
    }
    done += static_cast<std::size_t>(n);
  }
  return true;
}

bool write_fully(int fd, const unsigned char* data, std::size_t size) {
  std::size_t done = 0;
  while (done < size) {
    const ssize_t n = ::write(fd, data + done, size - done);
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n <= 0) {
      return false;
    }
    done += static_cast<std::size_t>(n);
  }
  return true;
}

// Reads an existing key file. kNotFound if there is none.
Result<std::string> read_key_file(const fs::path& path) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY));
  if (!fd) {
    const int err = errno;
    if (err == ENOENT) {
      return make_error(ErrorCode::kNotFound, "key file " + path.string() + " does not exist");
    }
    return make_error(ErrorCode::kIoError,
                      "cannot open key file " + path.string() + ": " + errno_text(err));
  }
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) {
    return make_error(ErrorCode::kIoError,
                      "cannot stat key file " + path.string() + ": " + errno_text(errno));
  }
  if (!S_ISREG(st.st_mode)) {
    return make_error(ErrorCode::kCorrupt, "key file " + path.string() + " is not a regular file");
  }
  if ((st.st_mode & (S_IRWXG | S_IRWXO)) != 0) {
    char mode[8];
    std::snprintf(mode, sizeof(mode), "%04o", static_cast<unsigned>(st.st_mode & 07777));
    return make_error(ErrorCode::kCorrupt,
                      "key file " + path.string() + " has mode " + mode +
                          ": it must not be accessible by group or others; run `chmod 600 " +
                          path.string() + "` if its contents can still be trusted");
  }
  if (st.st_size != static_cast<off_t>(kKeySize)) {
    return make_error(ErrorCode::kCorrupt, "key file " + path.string() + " has " +
                                               std::to_string(st.st_size) + " bytes, expected " +
                                               std::to_string(kKeySize));
  }
  std::string key(kKeySize, '\0');
  if (!read_fully(fd.get(), key.data(), key.size())) {
    OPENSSL_cleanse(key.data(), key.size());
    return make_error(ErrorCode::kIoError, "cannot read key file " + path.string());
  }
  return key;
}

// Creates the key file with fresh random bytes. The key is written to a temporary file made with
// O_CREAT|O_EXCL and mode 0600, synced, then published under its name with link(), which never
// replaces an existing file: a reader sees either no key file or a complete one, and of two
// processes racing to create it exactly one wins. kAlreadyExists if another process won.
Result<std::string> create_key_file(const fs::path& path) {
  const fs::path dir = path.parent_path();
  if (!dir.empty()) {
    if (Status s = storage::create_private_directories(dir); !s.ok()) {
      return make_error(std::move(s));
    }
  }
  std::array<unsigned char, 8> suffix{};
  std::array<unsigned char, kKeySize> key{};
  if (RAND_bytes(suffix.data(), static_cast<int>(suffix.size())) != 1 ||
      RAND_bytes(key.data(), static_cast<int>(key.size())) != 1) {
    return make_error(ErrorCode::kInternal, "OpenSSL could not generate random bytes");
  }
  std::string tmp_name = path.filename().string() + ".tmp-";
  for (unsigned char b : suffix) {
    static constexpr char kDigits[] = "0123456789abcdef";
    tmp_name += kDigits[b >> 4];
    tmp_name += kDigits[b & 15];
  }
  const fs::path tmp = path.parent_path() / tmp_name;

  auto fail = [&](ErrorCode code, std::string message) {
    OPENSSL_cleanse(key.data(), key.size());
    ::unlink(tmp.c_str());
    return make_error(code, std::move(message));
  };

  UniqueFd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600));
  if (!fd) {
    const int err = errno;
    OPENSSL_cleanse(key.data(), key.size());
    return make_error(ErrorCode::kIoError,
                      "cannot create key file " + tmp.string() + ": " + errno_text(err));
  }
  // The umask may have taken the owner's bits away; the owner must be able to read it back.
  if (::fchmod(fd.get(), 0600) != 0 || !write_fully(fd.get(), key.data(), key.size()) ||
      ::fsync(fd.get()) != 0 || !fd.close()) {
    return fail(ErrorCode::kIoError,
                "cannot write key file " + tmp.string() + ": " + errno_text(errno));
  }
  if (::link(tmp.c_str(), path.c_str()) != 0) {
    const int err = errno;
    if (err == EEXIST) {
      return fail(ErrorCode::kAlreadyExists, "key file " + path.string() + " already exists");
    }
    return fail(ErrorCode::kIoError,
                "cannot create key file " + path.string() + ": " + errno_text(err));
  }
  ::unlink(tmp.c_str());
  // Make the new name durable; a failure here loses nothing that a retry would not recreate.
  UniqueFd dir_fd(::open(dir.empty() ? "." : dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (dir_fd) {
    ::fsync(dir_fd.get());
  }
  std::string out(reinterpret_cast<const char*>(key.data()), key.size());
  OPENSSL_cleanse(key.data(), key.size());
  return out;
}

}  // namespace

Result<std::string> load_or_create_key(const fs::path& key_file) {
  // An empty value counts as unset, as with the other FACELOGIN_* variables.
  if (const char* env = std::getenv(kKeyEnvVar); env != nullptr && *env != '\0') {
    return parse_hex_key(env);
  }
  if (key_file.empty()) {
    return make_error(ErrorCode::kInvalidArgument, "no key file given and FACELOGIN_KEY is not set");
  }
  // Two rounds: if another process creates the file between our read and our create, the second
  // read picks up its key.
  for (int round = 0; round < 2; ++round) {
    auto key = read_key_file(key_file);
    if (key || key.error().code() != ErrorCode::kNotFound) {
      return key;
    }
    auto created = create_key_file(key_file);
    if (created || created.error().code() != ErrorCode::kAlreadyExists) {
      return created;
    }
  }
  return read_key_file(key_file);
}

}  // namespace facelogin
