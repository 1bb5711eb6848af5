// The in-memory gallery: see include/facelogin/gallery.h.
//
// Written by hand rather than taken from FAISS: exact top-k with "best template per user" is a
// few dozen lines over a dot-product kernel, and keeping it here avoids a large dependency in the
// server for what is a memory-bound scan. FAISS (IndexFlatIP, HNSW) is the yardstick in
// facelogin_search_bench, which runs both on the same data.

#include "facelogin/gallery.h"

#include <immintrin.h>

#include "matching/dot.h"

#include <algorithm>
#include <numeric>

namespace facelogin {
namespace {

// --- Kernels --------------------------------------------------------------------------------

float dot_f32_portable(const float* a, const float* b, std::size_t n) {
  // Eight partial sums: the compiler vectorises this for the baseline SSE2 without changing the
  // order of additions within each lane.
  float acc[8] = {};
  std::size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    for (std::size_t j = 0; j < 8; ++j) {
      acc[j] += a[i + j] * b[i + j];
    }
  }
  float sum = 0.f;
  for (; i < n; ++i) {
    sum += a[i] * b[i];
  }
  for (float v : acc) {
    sum += v;
  }
  return sum;
}

__attribute__((target("avx2,fma"))) float hsum256(__m256 v) {
  const __m128 lo = _mm256_castps256_ps128(v);
  const __m128 hi = _mm256_extractf128_ps(v, 1);
  __m128 s = _mm_add_ps(lo, hi);
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
  return _mm_cvtss_f32(s);
}

__attribute__((target("avx2,fma"))) float dot_f32_avx2(const float* a, const float* b,
                                                       std::size_t n) {
  __m256 acc0 = _mm256_setzero_ps();
  __m256 acc1 = _mm256_setzero_ps();
  std::size_t i = 0;
  for (; i + 16 <= n; i += 16) {
    acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), acc0);
    acc1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), acc1);
  }
  for (; i + 8 <= n; i += 8) {
    acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), acc0);
  }
  float sum = hsum256(_mm256_add_ps(acc0, acc1));
  for (; i < n; ++i) {
    sum += a[i] * b[i];
  }
  return sum;
}

__attribute__((target("avx2,fma,f16c"))) float dot_f16_avx2(const std::uint16_t* a,
                                                            const float* b, std::size_t n) {
  __m256 acc0 = _mm256_setzero_ps();
  __m256 acc1 = _mm256_setzero_ps();
  std::size_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m256 x0 =
        _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(a + i)));
    const __m256 x1 =
        _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(a + i + 8)));
    acc0 = _mm256_fmadd_ps(x0, _mm256_loadu_ps(b + i), acc0);
    acc1 = _mm256_fmadd_ps(x1, _mm256_loadu_ps(b + i + 8), acc1);
  }
  for (; i + 8 <= n; i += 8) {
    const __m256 x0 =
        _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(a + i)));
    acc0 = _mm256_fmadd_ps(x0, _mm256_loadu_ps(b + i), acc0);
  }
  float sum = hsum256(_mm256_add_ps(acc0, acc1));
  for (; i < n; ++i) {
    sum += _cvtsh_ss(a[i]) * b[i];
  }
  return sum;
}

__attribute__((target("f16c"))) void to_half(const float* in, std::uint16_t* out,
                                             std::size_t n) {
  // _mm_cvtps_ph on one lane rather than the _cvtss_sh macro, whose clang expansion is a
  // compound literal (-Wc99-extensions under -Wpedantic).
  for (std::size_t i = 0; i < n; ++i) {
    out[i] = static_cast<std::uint16_t>(
        _mm_extract_epi16(_mm_cvtps_ph(_mm_set_ss(in[i]), _MM_FROUND_TO_NEAREST_INT), 0));
  }
}

bool cpu_has_f16c() { return __builtin_cpu_supports("f16c"); }

// Keeps the k best (score, user) pairs seen; ties prefer the smaller user id.
class TopK {
 public:
  explicit TopK(std::size_t k) : k_(k) { best_.reserve(k + 1); }

  void offer(std::int64_t user, float score) {
    if (k_ == 0) {
      return;
    }
    if (best_.size() == k_ && !better({user, score}, best_.front())) {
      return;
    }
    best_.push_back({user, score});
    std::push_heap(best_.begin(), best_.end(), better);
    if (best_.size() > k_) {
      std::pop_heap(best_.begin(), best_.end(), better);
      best_.pop_back();
    }
  }

  std::vector<Candidate> sorted() {
    std::sort(best_.begin(), best_.end(), better);
    return std::move(best_);
  }

 private:
  // The heap's front is the worst kept: `better` as the comparison makes a min-heap of quality.
  static bool better(const Candidate& a, const Candidate& b) {
    return a.score != b.score ? a.score > b.score : a.user_id < b.user_id;
  }

  std::size_t k_;
  std::vector<Candidate> best_;
};

}  // namespace

namespace detail {

bool cpu_has_avx2() {
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}

DotFn best_dot_f32() { return cpu_has_avx2() ? dot_f32_avx2 : dot_f32_portable; }

void keep_best(BestScores& best, std::int64_t user, float score) {
  auto [it, inserted] = best.try_emplace(user, score);
  if (!inserted) {
    it->second = std::max(it->second, score);
  }
}

std::vector<Candidate> top_users(const BestScores& best, std::size_t k) {
  TopK top(k);
  for (const auto& [user, score] : best) {
    top.offer(user, score);
  }
  return top.sorted();
}

}  // namespace detail

using detail::cpu_has_avx2;

Result<GalleryPrecision> parse_gallery_precision(std::string_view text) {
  if (text == "fp32") {
    return GalleryPrecision::kFloat32;
  }
  if (text == "fp16") {
    return GalleryPrecision::kFloat16;
  }
  return make_error(ErrorCode::kInvalidArgument,
                    "the gallery precision is fp32 or fp16, not '" + std::string(text) + "'");
}

std::string_view gallery_precision_name(GalleryPrecision precision) {
  return precision == GalleryPrecision::kFloat16 ? "fp16" : "fp32";
}

Result<Gallery> Gallery::build(std::span<const StoredTemplate> templates,
                               std::string_view model_id, GalleryPrecision precision) {
  Gallery g;
  g.model_id_ = std::string(model_id);
  g.precision_ = precision;
  g.simd_ = cpu_has_avx2() && (precision == GalleryPrecision::kFloat32 || cpu_has_f16c());
  if (precision == GalleryPrecision::kFloat16 && !(cpu_has_avx2() && cpu_has_f16c())) {
    return make_error(ErrorCode::kInvalidArgument,
                      "half-precision galleries need a CPU with AVX2 and F16C; use float32");
  }
  std::vector<std::size_t> rows;
  for (std::size_t i = 0; i < templates.size(); ++i) {
    const FaceTemplate& face = templates[i].face;
    if (face.model_id != model_id) {
      continue;
    }
    if (g.dim_ == 0) {
      g.dim_ = face.embedding.size();
    } else if (face.embedding.size() != g.dim_) {
      return make_error(ErrorCode::kInvalidArgument,
                        "templates of one model must all have the same size");
    }
    rows.push_back(i);
  }
  // Rows of one user adjacent, so that a scan keeps each user's best with no lookup.
  std::stable_sort(rows.begin(), rows.end(), [&](std::size_t a, std::size_t b) {
    return templates[a].user_id < templates[b].user_id;
  });
  g.users_.reserve(rows.size());
  if (precision == GalleryPrecision::kFloat32) {
    g.f32_.resize(rows.size() * g.dim_);
  } else {
    g.f16_.resize(rows.size() * g.dim_);
  }
  for (std::size_t r = 0; r < rows.size(); ++r) {
    const StoredTemplate& t = templates[rows[r]];
    g.users_.push_back(t.user_id);
    if (precision == GalleryPrecision::kFloat32) {
      std::copy(t.face.embedding.begin(), t.face.embedding.end(), g.f32_.begin() + r * g.dim_);
    } else {
      to_half(t.face.embedding.data(), g.f16_.data() + r * g.dim_, g.dim_);
    }
  }
  return g;
}

std::vector<Candidate> Gallery::search(const FaceTemplate& probe, std::size_t k) const {
  if (probe.model_id != model_id_ || probe.embedding.size() != dim_ || users_.empty()) {
    return {};
  }
  const float* q = probe.embedding.data();
  TopK top(k);
  std::int64_t user = users_.front();
  float best = -2.f;
  for (std::size_t r = 0; r < users_.size(); ++r) {
    if (users_[r] != user) {
      top.offer(user, best);
      user = users_[r];
      best = -2.f;
    }
    float score = 0.f;
    if (precision_ == GalleryPrecision::kFloat32) {
      const float* row = f32_.data() + r * dim_;
      score = simd_ ? dot_f32_avx2(row, q, dim_) : dot_f32_portable(row, q, dim_);
    } else {
      score = dot_f16_avx2(f16_.data() + r * dim_, q, dim_);
    }
    best = std::max(best, score);
  }
  top.offer(user, best);
  return top.sorted();
}

std::size_t Gallery::bytes() const {
  return f32_.size() * sizeof(float) + f16_.size() * sizeof(std::uint16_t) +
         users_.size() * sizeof(std::int64_t);
}

std::string_view Gallery::kernel() const { return simd_ ? "avx2" : "portable"; }

}  // namespace facelogin
