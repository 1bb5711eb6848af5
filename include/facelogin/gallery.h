#pragma once

// 1:N search in memory (issue 5): every template of one recogniser in one contiguous row-major
// matrix, scanned exactly with SIMD dot products. The kernel is chosen at run time: AVX2 + FMA
// (and F16C for half precision) where the CPU has them, portable code elsewhere, so one binary
// runs on any x86-64. Templates are unit vectors, so the dot product is their cosine.
//
// Half precision (fp16) halves the memory per template (1.25 KiB for the default 640-d
// recogniser, against 2.5 KiB); its effect on ranking is measured by facelogin_search_bench.
//
// Above a configurable size a gallery can also search through an approximate index (HNSW, from
// Debian's FAISS): see ApproximateIndex and GalleryOptions.
//
// Immutable after build; search() is thread-safe.

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <vector>

#include "facelogin/matching.h"
#include "facelogin/population.h"
#include "facelogin/status.h"
#include "facelogin/store.h"

namespace facelogin {

enum class GalleryPrecision { kFloat32, kFloat16 };

// "fp32" / "fp16" (for options and configuration). Errors: kInvalidArgument.
[[nodiscard]] Result<GalleryPrecision> parse_gallery_precision(std::string_view text);
std::string_view gallery_precision_name(GalleryPrecision precision);

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

// The knobs of the approximate index. Defaults measured on LFW with the default recogniser
// (`facelogin eval gallery`, docs/server.md "1:N search").
struct ApproximateParams {
  int m = 32;                // graph neighbours per node
  int ef_construction = 80;  // breadth of the search that links a new node
  int ef_search = 128;       // breadth of a query's search (raised to the candidates it needs)
  // Threads that link the graph. One by default: a server's build runs beside its logins.
  int build_threads = 1;
};

// HNSW over the templates of one recogniser (hnswlib, inner product). Its scores are exact dot
// products of the templates it finds; what it can miss is a template it never
// visits. Search asks the graph for many more templates than users wanted (a user has several
// templates, and deleted ones are skipped), keeps each user's best and returns the k best users.
// Immutable after build; search() is thread-safe.
class ApproximateIndex {
 public:
  ~ApproximateIndex();
  ApproximateIndex(const ApproximateIndex&) = delete;
  ApproximateIndex& operator=(const ApproximateIndex&) = delete;

  // The templates of `model_id`. `cancel`, when set, stops a long build: kUnavailable.
  // Errors: kInvalidArgument (sizes differ, bad parameters), kUnavailable (out of memory).
  [[nodiscard]] static Result<std::shared_ptr<const ApproximateIndex>> build(
      std::span<const StoredTemplate> templates, std::string_view model_id,
      const ApproximateParams& params, const std::atomic<bool>* cancel = nullptr);

  // Up to k users, best first, by their best template found, skipping templates whose id is not
  // in `alive` (sorted; templates deleted or disabled since the build).
  [[nodiscard]] std::vector<Candidate> search(const FaceTemplate& probe, std::size_t k,
                                              std::span<const std::int64_t> alive) const;

  bool contains(std::int64_t template_id) const;
  std::size_t size() const { return template_ids_.size(); }
  std::size_t dim() const { return dim_; }
  std::size_t bytes() const;  // vectors, graph and ids

 private:
  struct Impl;
  ApproximateIndex() = default;

  std::string model_id_;
  std::size_t dim_ = 0;
  ApproximateParams params_;
  std::unique_ptr<Impl> impl_;
  std::vector<std::int64_t> template_ids_;  // per row of the index
  std::vector<std::int64_t> users_;         // per row
  std::vector<std::int64_t> sorted_ids_;    // template_ids_ sorted, for contains()
};

struct GalleryOptions {
  GalleryPrecision precision = GalleryPrecision::kFloat32;
  // Above this many templates of a recogniser, searches go through an ApproximateIndex, built
  // in the background (exact search meanwhile) and extended as users enrol; 0: always exact.
  std::size_t approximate_above = 0;
  ApproximateParams approximate;
  // Keep the impostor scores of the enrolled population (issue 15), updated incrementally at
  // each rebuild from the users whose templates changed; entries then carry them.
  bool estimate_population = true;
  PopulationOptions population;
};

// The gallery of each model as the store has it now, shared by every worker of a process: before
// each search it reads the store's templates_generation() (one cheap query) and rebuilds the
// gallery when another writer (this server or another one on the database) changed it. Readers
// keep the gallery they got while a rebuild runs. Thread-safe.
//
// With GalleryOptions::approximate_above, a gallery larger than that searches the approximate
// index for the templates it holds plus an exact scan of the templates added since its build
// (the "tail"), and skips templates removed since: an enrolment or a removal counts from the
// next search, as without the index. A background thread builds the index, and builds it again
// when the tail has grown past 5% of it (at least 1024) or a fifth of it has been removed.
class GalleryCache {
 public:
  struct Entry {
    // Exact search over every template, or, with `index`, over those it does not hold.
    std::shared_ptr<const Gallery> gallery;
    std::shared_ptr<const ApproximateIndex> index;
    std::vector<std::int64_t> alive;  // with `index`: the store's template ids now, sorted
    std::unordered_map<std::int64_t, std::string> names;  // user id -> name
    std::int64_t generation = -1;
    // The enrolled population's impostor scores at this generation (empty when
    // GalleryOptions::estimate_population is off).
    ImpostorScores population;
    PopulationEstimate population_estimate;  // population.estimate(), computed once

    // The k users whose best template is closest to `probe`, best first.
    std::vector<Candidate> search(const FaceTemplate& probe, std::size_t k) const;
    std::size_t templates() const;
  };

  explicit GalleryCache(GalleryOptions options = {}) : options_(std::move(options)) {}
  explicit GalleryCache(GalleryPrecision precision) { options_.precision = precision; }
  ~GalleryCache();
  GalleryCache(const GalleryCache&) = delete;
  GalleryCache& operator=(const GalleryCache&) = delete;

  // Errors: those of the store (kUnavailable, kCorrupt, ...), and of Gallery::build.
  [[nodiscard]] Result<std::shared_ptr<const Entry>> current(const Store& store,
                                                             std::string_view model_id);
  // The entry built last for `model_id`, without asking the store whether it is still current
  // (null before the first build): for readers that must not wait for a rebuild, such as the
  // server's I/O thread.
  std::shared_ptr<const Entry> latest(std::string_view model_id) const;
  // Rebuilds so far (for tests and metrics).
  int rebuilds() const;
  // Approximate indexes built or extended so far, and whether a build is running.
  int index_builds() const;
  bool index_building() const;

 private:
  // Starts a background build of `model_id`'s index from `templates`, unless one is running.
  // Called with mu_ held.
  void start_index_build(std::string model_id, std::vector<StoredTemplate> templates);
  // Brings `model_id`'s population up to `templates` (users added, changed or gone since the last
  // rebuild) and returns its scores. Called with rebuild_mu_ held.
  ImpostorScores update_population(std::string_view model_id,
                                   std::span<const StoredTemplate> templates);

  struct Population {
    std::unique_ptr<ImpostorPopulation> scores;
    std::map<std::int64_t, std::vector<std::int64_t>> template_ids;  // per user, as scored
  };
  std::map<std::string, Population, std::less<>> populations_;  // guarded by rebuild_mu_
  GalleryOptions options_;
  mutable std::mutex mu_;       // guards entries_, indexes_, builder state
  std::mutex rebuild_mu_;       // one rebuild at a time
  std::map<std::string, std::shared_ptr<const Entry>, std::less<>> entries_;
  std::map<std::string, std::shared_ptr<const ApproximateIndex>, std::less<>> indexes_;
  int rebuilds_ = 0;
  int index_builds_ = 0;
  bool building_ = false;
  std::atomic<bool> cancel_{false};
  std::thread builder_;
};

}  // namespace facelogin
