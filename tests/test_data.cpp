#include "test_data.h"

#include <algorithm>
#include <cstdlib>
#include <random>

namespace facelogin::testing {
namespace fs = std::filesystem;

std::optional<fs::path> shared_data_dir() {
  if (const char* env = std::getenv("FACELOGIN_DATA_DIR"); env && *env) {
    fs::path p(env);
    if (fs::is_directory(p)) {
      return p;
    }
    return std::nullopt;
  }
  fs::path p = fs::path(FACELOGIN_SOURCE_DIR) / ".." / "shared" / "data";
  if (fs::is_directory(p)) {
    return fs::weakly_canonical(p);
  }
  return std::nullopt;
}

std::optional<fs::path> model_dir() {
  if (const char* env = std::getenv("FACELOGIN_MODEL_DIR"); env && *env) {
    fs::path p(env);
    return fs::is_directory(p) ? std::optional<fs::path>(p) : std::nullopt;
  }
  fs::path project = fs::path(FACELOGIN_SOURCE_DIR) / "models";
  if (fs::is_directory(project)) {
    return project;
  }
  fs::path shared = fs::path(FACELOGIN_SOURCE_DIR) / ".." / "shared" / "models";
  if (fs::is_directory(shared)) {
    return fs::weakly_canonical(shared);
  }
  return std::nullopt;
}

fs::path make_temp_dir(const std::string& prefix) {
  std::random_device rd;
  for (int attempt = 0; attempt < 100; ++attempt) {
    fs::path p = fs::temp_directory_path() / (prefix + "-" + std::to_string(rd()));
    std::error_code ec;
    if (fs::create_directory(p, ec)) {
      return p;
    }
  }
  return fs::temp_directory_path() / prefix;
}

fs::path cli_path() { return fs::path(FACELOGIN_CLI_PATH); }

std::vector<std::pair<int, fs::path>> recording_frames(const fs::path& dir,
                                                       const std::string& prefix) {
  std::vector<std::pair<int, fs::path>> frames;
  std::error_code ec;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string name = it->path().filename().string();
    if (name.starts_with(prefix) && name.ends_with(".jpg")) {
      frames.emplace_back(std::atoi(name.c_str() + prefix.size()), it->path());
    }
  }
  std::sort(frames.begin(), frames.end());
  return frames;
}

}  // namespace facelogin::testing
