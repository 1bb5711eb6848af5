#include "test_data.h"

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

}  // namespace facelogin::testing
