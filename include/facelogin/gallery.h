#pragma once

// 1:N search in memory (issue 5): every template of one recogniser in one contiguous row-major
// matrix, scanned exactly with SIMD dot products. The kernel is chosen at run time: AVX2 + FMA
// (and F16C for half precision) where the CPU has them, portable code elsewhere, so one binary
// runs on any x86-64. Templates are unit vectors, so the dot product is their cosine.
//
// Half precision (fp16) halves the memory per template (1.25 KiB for the default 640-d
// recogniser, against 2.5 KiB); its effect on ranking is measured by facelogin_search_bench.
//
// Immutable after build; search() is thread-safe.

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "facelogin/matching.h"
#include "facelogin/status.h"
#include "facelogin/store.h"

namespace facelogin {

enum class GalleryPrecision { kFloat32, kFloat16 };

class Gallery {
 public:
  // The templates of `model_id` (others are skipped, as search() skips them), grouped by user.
  // Errors: kInvalidArgument (templates of one model with different sizes, or kFloat16 on a CPU
  // without AVX2 and F16C).
  [[nodiscard]] static Result<Gallery> build(std::span<const StoredTemplate> templates,
                                             std::string_view model_id,
                                             GalleryPrecision precision = GalleryPrecision::kFloat32);

  // The k users whose best template is closest to `probe`, best first, ties by user id: the same
  // answer as facelogin::search() on the same templates (up to fp16 rounding). A probe of
  // another model or size finds nobody.
  [[nodiscard]] std::vector<Candidate> search(const FaceTemplate& probe, std::size_t k) const;

  std::size_t size() const { return users_.size(); }  // templates
  std::size_t dim() const { return dim_; }
  // Memory held by the vectors and their user ids.
  std::size_t bytes() const;
  GalleryPrecision precision() const { return precision_; }
  // "avx2", "portable": which kernel search() runs.
  std::string_view kernel() const;

 private:
  Gallery() = default;

  std::string model_id_;
  std::size_t dim_ = 0;
  GalleryPrecision precision_ = GalleryPrecision::kFloat32;
  bool simd_ = false;
  std::vector<std::int64_t> users_;  // per row, rows of one user adjacent
  std::vector<float> f32_;           // size() x dim(), when kFloat32
  std::vector<std::uint16_t> f16_;   // size() x dim(), when kFloat16
};

// The gallery of each model as the store has it now, shared by every worker of a process: before
// each search it reads the store's templates_generation() (one cheap query) and rebuilds the
// gallery when another writer (this server or another one on the database) changed it. Readers
// keep the gallery they got while a rebuild runs. Thread-safe.
class GalleryCache {
 public:
  struct Entry {
    std::shared_ptr<const Gallery> gallery;
    std::unordered_map<std::int64_t, std::string> names;  // user id -> name
    std::int64_t generation = -1;
  };

  explicit GalleryCache(GalleryPrecision precision = GalleryPrecision::kFloat32)
      : precision_(precision) {}

  // Errors: those of the store (kUnavailable, kCorrupt, ...), and of Gallery::build.
  [[nodiscard]] Result<std::shared_ptr<const Entry>> current(const Store& store,
                                                             std::string_view model_id);
  // Rebuilds so far (for tests and metrics).
  int rebuilds() const;

 private:
  GalleryPrecision precision_;
  mutable std::mutex mu_;       // guards entries_
  std::mutex rebuild_mu_;       // one rebuild at a time
  std::map<std::string, std::shared_ptr<const Entry>, std::less<>> entries_;
  int rebuilds_ = 0;
};

}  // namespace facelogin
