#pragma once

// Small helpers shared by the libFuzzer targets: the contract check that makes libFuzzer report
// a finding, a scratch directory in /dev/shm, and splitting of a fuzz input into fields.

#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>
#include <vector>

namespace facelogin::fuzz {

// A broken contract: says which, then aborts so that libFuzzer saves the input as a crash.
[[noreturn]] inline void contract_failed(const char* what, const char* file, int line,
                                         std::string_view detail) {
  std::fprintf(stderr, "\n== contract broken at %s:%d: %s\n", file, line, what);
  if (!detail.empty()) {
    std::fprintf(stderr, "== %.*s\n", static_cast<int>(std::min<std::size_t>(detail.size(), 2000)),
                 detail.data());
  }
  std::abort();
}

#define FUZZ_REQUIRE(condition, detail)                                                  \
  do {                                                                                   \
    if (!(condition)) {                                                                  \
      ::facelogin::fuzz::contract_failed(#condition, __FILE__, __LINE__, (detail));      \
    }                                                                                    \
  } while (false)

// A directory of this process under /dev/shm (memory, so that a file per execution costs no
// disk I/O), created on first use and removed at exit. Falls back to /tmp without /dev/shm.
inline const std::filesystem::path& scratch_dir() {
  static const std::filesystem::path dir = [] {
    std::error_code ec;
    const std::filesystem::path base =
        std::filesystem::is_directory("/dev/shm", ec) ? "/dev/shm" : "/tmp";
    std::filesystem::path d = base / ("facelogin-fuzz-" + std::to_string(::getpid()));
    std::filesystem::remove_all(d, ec);
    std::filesystem::create_directories(d);
    std::atexit([] {
      std::error_code ignored;
      std::filesystem::remove_all(scratch_dir(), ignored);
    });
    return d;
  }();
  return dir;
}

inline void write_file(const std::filesystem::path& path, std::string_view bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  out.close();
  if (!out) {
    std::fprintf(stderr, "fuzz: cannot write %s\n", path.c_str());
    std::abort();
  }
}

// Splits `text` at every occurrence of `separator` (the parts exclude it).
inline std::vector<std::string_view> split(std::string_view text, std::string_view separator) {
  std::vector<std::string_view> parts;
  std::size_t start = 0;
  while (true) {
    const std::size_t at = text.find(separator, start);
    if (at == std::string_view::npos) {
      parts.push_back(text.substr(start));
      return parts;
    }
    parts.push_back(text.substr(start, at - start));
    start = at + separator.size();
  }
}

inline std::string_view as_text(const std::uint8_t* data, std::size_t size) {
  return {reinterpret_cast<const char*>(data), size};
}

}  // namespace facelogin::fuzz
