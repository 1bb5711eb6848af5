#pragma once

// The one place tests find ../shared data and the models. Tests that need something absent call
// GTEST_SKIP() with the reason these functions give.

#include <filesystem>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace facelogin::testing {

// FACELOGIN_DATA_DIR, else <source>/../shared/data. nullopt (and a reason) if absent.
std::optional<std::filesystem::path> shared_data_dir();
// FACELOGIN_MODEL_DIR, else <source>/models if it holds the recogniser, else ../shared/models.
std::optional<std::filesystem::path> model_dir();
// A fresh empty directory under the system temp dir, removed by the test fixture owner.
std::filesystem::path make_temp_dir(const std::string& prefix);
// The frames of one NUAA recording: files "<prefix><n>.jpg" in `dir`, as (n, path) sorted by the
// frame number n (NUAA numbers frames at the camera's rate, 30 per second). Empty if none.
std::vector<std::pair<int, std::filesystem::path>> recording_frames(
    const std::filesystem::path& dir, const std::string& prefix);
// Path of the built `facelogin` CLI binary.
std::filesystem::path cli_path();
// A valid progressive JPEG (width x height, one flat colour) whose last scan is repeated `repeats` more
// times: decoders process every copy, so decoding work grows with `repeats` while the file stays
// small (a "scan bomb", issue 17). Empty if OpenCV cannot write a progressive JPEG.
std::string jpeg_scan_bomb(int width, int height, int repeats);

}  // namespace facelogin::testing

// Skips the current test with a clear message when the shared data directory is absent.
#define FACELOGIN_REQUIRE_DATA(var)                                                         \
  auto var##_opt = ::facelogin::testing::shared_data_dir();                                \
  if (!var##_opt) {                                                                        \
    GTEST_SKIP() << "../shared/data not found (set FACELOGIN_DATA_DIR): skipping real-face test"; \
  }                                                                                        \
  const std::filesystem::path var = *var##_opt
