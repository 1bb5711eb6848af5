#include "test_data.h"

#include <algorithm>
#include <cstdlib>
#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>
#include <random>
#include <vector>

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

std::string jpeg_scan_bomb(int width, int height, int repeats) {
  // A flat image: its scans are a few bytes each, so thousands of them fit in a camera frame's
  // byte limit, while each still makes the decoder walk every block of the image.
  const cv::Mat flat(height, width, CV_8UC3, cv::Scalar(90, 120, 160));
  std::vector<std::uint8_t> jpeg;
  if (!cv::imencode(".jpg", flat, jpeg, {cv::IMWRITE_JPEG_PROGRESSIVE, 1}) || jpeg.size() < 4) {
    return {};
  }
  // Entropy-coded data stuffs every 0xFF with 0x00, so FF DA only ever starts a scan header: the
  // last one begins the last scan, which runs to the end-of-image marker (FF D9) at the end.
  std::size_t last_sos = std::string::npos;
  for (std::size_t i = 0; i + 1 < jpeg.size(); ++i) {
    if (jpeg[i] == 0xFF && jpeg[i + 1] == 0xDA) {
      last_sos = i;
    }
  }
  if (last_sos == std::string::npos || jpeg[jpeg.size() - 2] != 0xFF ||
      jpeg[jpeg.size() - 1] != 0xD9) {
    return {};
  }
  const std::string head(jpeg.begin(), jpeg.begin() + static_cast<std::ptrdiff_t>(last_sos));
  const std::string scan(jpeg.begin() + static_cast<std::ptrdiff_t>(last_sos), jpeg.end() - 2);
  std::string out = head;
  for (int i = 0; i <= repeats; ++i) {
    out += scan;
  }
  out += "\xFF\xD9";
  return out;
}

}  // namespace facelogin::testing
