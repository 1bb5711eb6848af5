// ApproximateIndex: see include/facelogin/gallery.h.
//
// hnswlib (Debian libhnswlib-dev, header-only) with its own vectorised code switched off
// (NO_MANUAL_VECTORIZATION) and our AVX2 dot product as the distance instead. The reason: with
// its SSE code on, hnswlib 0.6.2 prefetches one neighbour past the end of a link list, a read
// past a heap block (nmslib/hnswlib#578, #107; the fix, PR #459, is not merged) that
// AddressSanitizer stops and that a login server should not carry. Without it the graph code is
// the same, and the distance, where the time goes, is ours. FAISS's IndexHNSWFlat (Debian
// libfaiss-dev) was tried first: on this machine its Debian build searched 5x and built 6x
// slower than this (facelogin_search_bench, 10k templates), so FAISS stays a yardstick in the
// benchmark only.

#define NO_MANUAL_VECTORIZATION
#include <hnswlib/hnswlib.h>

#include <algorithm>
#include <atomic>
#include <mutex>
#include <thread>

#include "facelogin/gallery.h"
#include "matching/dot.h"

namespace facelogin {
namespace {

// Inner-product "distance" 1 - a.b over unit vectors, with the gallery's kernel.
class DotSpace final : public hnswlib::SpaceInterface<float> {
 public:
  explicit DotSpace(std::size_t dim) : dim_(dim) {}
  std::size_t get_data_size() override { return dim_ * sizeof(float); }
  hnswlib::DISTFUNC<float> get_dist_func() override { return &distance; }
  void* get_dist_func_param() override { return &dim_; }

 private:
  static float distance(const void* a, const void* b, const void* dim) {
    static const detail::DotFn dot = detail::best_dot_f32();
    return 1.f - dot(static_cast<const float*>(a), static_cast<const float*>(b),
                     *static_cast<const std::size_t*>(dim));
  }

  std::size_t dim_;
};

}  // namespace

struct ApproximateIndex::Impl {
  explicit Impl(std::size_t dim) : space(dim) {}
  DotSpace space;
  std::unique_ptr<hnswlib::HierarchicalNSW<float>> graph;
};

ApproximateIndex::~ApproximateIndex() = default;

Result<std::shared_ptr<const ApproximateIndex>> ApproximateIndex::build(
    std::span<const StoredTemplate> templates, std::string_view model_id,
    const ApproximateParams& params, const std::atomic<bool>* cancel) {
  if (params.m < 2 || params.ef_construction < 1 || params.ef_search < 1 ||
      params.build_threads < 1) {
    return make_error(ErrorCode::kInvalidArgument, "approximate index parameters must be positive");
  }
  std::shared_ptr<ApproximateIndex> out(new ApproximateIndex());
  out->model_id_ = std::string(model_id);
  out->params_ = params;
  std::vector<const StoredTemplate*> rows;
  for (const StoredTemplate& t : templates) {
    if (t.face.model_id != model_id) {
      continue;
    }
    if (rows.empty()) {
      out->dim_ = t.face.embedding.size();
    } else if (t.face.embedding.size() != out->dim_) {
      return make_error(ErrorCode::kInvalidArgument,
                        "templates of one model must all have the same size");
    }
    rows.push_back(&t);
  }
  out->impl_ = std::make_unique<Impl>(std::max<std::size_t>(out->dim_, 1));
  try {
    out->impl_->graph = std::make_unique<hnswlib::HierarchicalNSW<float>>(
        &out->impl_->space, std::max<std::size_t>(rows.size(), 1),
        static_cast<std::size_t>(params.m), static_cast<std::size_t>(params.ef_construction));
    out->impl_->graph->setEf(static_cast<std::size_t>(params.ef_search));
    for (const StoredTemplate* t : rows) {
      out->template_ids_.push_back(t->id);
      out->users_.push_back(t->user_id);
    }
  } catch (const std::bad_alloc&) {
    return make_error(ErrorCode::kUnavailable, "not enough memory for the approximate index");
  } catch (const std::runtime_error& e) {  // hnswlib reports its failures so
    return make_error(ErrorCode::kInternal, std::string("approximate index: ") + e.what());
  }
  // hnswlib links points from several threads at once (its per-node locks); each thread takes
  // the next row. Label = row, so the order of insertion does not matter.
  std::atomic<std::size_t> next{0};
  std::atomic<bool> stopped{false};
  std::mutex error_mu;
  Status first_error;
  const auto work = [&] {
    try {
      for (std::size_t r = next++; r < rows.size() && !stopped; r = next++) {
        // A cancel (a newer build, shutdown) is seen within a few thousand rows.
        if (r % 4096 == 0 && cancel != nullptr && cancel->load()) {
          stopped = true;
          std::lock_guard lock(error_mu);
          first_error = Status(ErrorCode::kUnavailable, "approximate index build cancelled");
          return;
        }
        out->impl_->graph->addPoint(rows[r]->face.embedding.data(), r);
      }
    } catch (const std::bad_alloc&) {
      stopped = true;
      std::lock_guard lock(error_mu);
      first_error =
          Status(ErrorCode::kUnavailable, "not enough memory for the approximate index");
    } catch (const std::runtime_error& e) {
      stopped = true;
      std::lock_guard lock(error_mu);
      first_error = Status(ErrorCode::kInternal, std::string("approximate index: ") + e.what());
    }
  };
  std::vector<std::thread> helpers;
  for (int t = 1; t < params.build_threads; ++t) {
    helpers.emplace_back(work);
  }
  work();
  for (auto& t : helpers) {
    t.join();
  }
  if (!first_error.ok()) {
    return make_error(std::move(first_error));
  }
  out->sorted_ids_ = out->template_ids_;
  std::sort(out->sorted_ids_.begin(), out->sorted_ids_.end());
  return std::shared_ptr<const ApproximateIndex>(std::move(out));
}

std::vector<Candidate> ApproximateIndex::search(const FaceTemplate& probe, std::size_t k,
                                                std::span<const std::int64_t> alive) const {
  if (probe.model_id != model_id_ || probe.embedding.size() != dim_ || k == 0 ||
      template_ids_.empty()) {
    return {};
  }
  // Templates wanted from the graph: enough for k users with several templates each, and for
  // some of them removed since the build. The search's breadth is at least this.
  const std::size_t want = std::min(template_ids_.size(), std::max<std::size_t>(64, 16 * k));
  auto found = impl_->graph->searchKnn(probe.embedding.data(), want);
  detail::BestScores best;
  for (; !found.empty(); found.pop()) {
    const auto [distance, row] = found.top();
    if (std::binary_search(alive.begin(), alive.end(), template_ids_[row])) {
      detail::keep_best(best, users_[row], 1.f - distance);
    }
  }
  return detail::top_users(best, k);
}

bool ApproximateIndex::contains(std::int64_t template_id) const {
  return std::binary_search(sorted_ids_.begin(), sorted_ids_.end(), template_id);
}

std::size_t ApproximateIndex::bytes() const {
  const auto& g = *impl_->graph;
  // The base layer (links, vector, label per element) and the upper layers' links, about one
  // element in M having them.
  const std::size_t n = template_ids_.size();
  return n * g.size_data_per_element_ +
         static_cast<std::size_t>(static_cast<double>(n * g.size_links_per_element_) * g.mult_) +
         (template_ids_.size() + users_.size() + sorted_ids_.size()) * sizeof(std::int64_t);
}

}  // namespace facelogin
