// All-pairs genuine/impostor scoring of an embedding matrix: a blocked A * A^T over the upper
// triangle, written straight into preallocated outputs.
//
// Layout: the used rows are copied into a dense M x D matrix; the same rows are also packed in
// panels of kPanel rows stored transposed (for each k, the kPanel values of column k side by
// side), so that the micro-kernel multiplies kRows rows by one panel with broadcasts and vector
// multiply-adds, no horizontal sums. Rows are processed in tiles of kTile rows (kept in L2);
// each panel (kPanel * D floats, in L1) is then reused by the whole tile.
//
// Every row's outputs have a precomputed offset (the number of genuine and impostor partners
// after it), so tiles can run on any thread in any order and the result is still in (i, j)
// order.

#include <fmt/core.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <map>
#include <new>
#include <system_error>
#include <thread>
#include <utility>

#include "facelogin/eval.h"

namespace facelogin::eval {
namespace {

// GCC/Clang vector extension: 8 floats, one AVX register (two SSE registers on the baseline).
using v8f = float __attribute__((vector_size(32)));

constexpr std::size_t kLanes = 8;
constexpr std::size_t kVecsPerPanel = 2;
constexpr std::size_t kPanel = kLanes * kVecsPerPanel;  // columns per panel
constexpr std::size_t kRows = 4;   // rows per micro-kernel call (the kernel is written out for 4)
constexpr std::size_t kTile = 64;  // rows per unit of work
static_assert(kRows == 4, "score_tile is written out for four rows");

// An AVX2+FMA clone is chosen at load time where the CPU has it (x86-64 only).
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define FACELOGIN_EVAL_CLONES __attribute__((target_clones("arch=x86-64-v3", "default")))
#else
#define FACELOGIN_EVAL_CLONES
#endif

struct Job {
  const float* rows = nullptr;    // M x D
  const float* panels = nullptr;  // panel p, column k, lane c: panels[(p * D + k) * kPanel + c]
  const int* label = nullptr;     // dense labels, M
  std::size_t m = 0;
  std::size_t d = 0;
  float* genuine = nullptr;
  float* impostor = nullptr;
  std::size_t* genuine_pos = nullptr;  // per row: next write position
  std::size_t* impostor_pos = nullptr;
};

// Scores rows [i0, i1) against every later row.
FACELOGIN_EVAL_CLONES
void score_tile(const Job& job, std::size_t i0, std::size_t i1) {
  const std::size_t d = job.d;
  const std::size_t panels = (job.m + kPanel - 1) / kPanel;
  for (std::size_t p = (i0 + 1) / kPanel; p < panels; ++p) {
    const float* panel = job.panels + p * d * kPanel;
    const std::size_t j0 = p * kPanel;
    for (std::size_t i = i0; i < i1; i += kRows) {
      if (j0 + kPanel - 1 <= i) {
        continue;  // every column of this panel is at or before row i
      }
      // Rows past the end of the tile reuse its last row; their results are discarded below.
      const float* a0 = job.rows + std::min(i + 0, i1 - 1) * d;
      const float* a1 = job.rows + std::min(i + 1, i1 - 1) * d;
      const float* a2 = job.rows + std::min(i + 2, i1 - 1) * d;
      const float* a3 = job.rows + std::min(i + 3, i1 - 1) * d;
      // Eight named accumulators, so that they stay in registers (an indexed array of them was
      // kept in memory by GCC 12, at a third of the speed).
      v8f c00 = {}, c01 = {}, c10 = {}, c11 = {}, c20 = {}, c21 = {}, c30 = {}, c31 = {};
      for (std::size_t k = 0; k < d; ++k) {
        // memcpy: an unaligned vector load (std::vector does not promise 32-byte alignment).
        v8f b0;
        v8f b1;
        std::memcpy(&b0, panel + k * kPanel, sizeof b0);
        std::memcpy(&b1, panel + k * kPanel + kLanes, sizeof b1);
        c00 += a0[k] * b0;
        c01 += a0[k] * b1;
        c10 += a1[k] * b0;
        c11 += a1[k] * b1;
        c20 += a2[k] * b0;
        c21 += a2[k] * b1;
        c30 += a3[k] * b0;
        c31 += a3[k] * b1;
      }
      const v8f acc[kRows][kVecsPerPanel] = {{c00, c01}, {c10, c11}, {c20, c21}, {c30, c31}};
      for (std::size_t r = 0; r < kRows && i + r < i1; ++r) {
        const std::size_t row = i + r;
        const int lab = job.label[row];
        for (std::size_t c = 0; c < kPanel; ++c) {
          const std::size_t j = j0 + c;
          if (j <= row || j >= job.m) {
            continue;
          }
          const float s = acc[r][c / kLanes][c % kLanes];
          if (job.label[j] == lab) {
            job.genuine[job.genuine_pos[row]++] = s;
          } else {
            job.impostor[job.impostor_pos[row]++] = s;
          }
        }
      }
    }
  }
}

// An N x dim matrix for N identities: what all_pairs_scores and matched_people accept.
Status check_rows(std::span<const float> embeddings, std::size_t dim, std::size_t rows) {
  if (dim == 0) {
    return Status(ErrorCode::kInvalidArgument, "embedding dimension is 0");
  }
  if (embeddings.size() / dim != rows || embeddings.size() % dim != 0) {
    return Status(ErrorCode::kInvalidArgument,
                  fmt::format("{} floats do not make {} rows of {}", embeddings.size(), rows, dim));
  }
  return Status::Ok();
}

}  // namespace

Result<AllPairsScores> all_pairs_scores(std::span<const float> embeddings, std::size_t dim,
                                        std::span<const int> identities, int threads) {
  if (Status s = check_rows(embeddings, dim, identities.size()); !s.ok()) {
    return make_error(std::move(s));
  }
  try {
    AllPairsScores out;
    std::vector<std::size_t> used;
    used.reserve(identities.size());
    for (std::size_t r = 0; r < identities.size(); ++r) {
      if (identities[r] >= 0) {
        used.push_back(r);
      }
    }
    const std::size_t m = used.size();
    out.rows_used = m;
    out.rows_skipped = identities.size() - m;
    if (m < 2) {
      return out;
    }

    // Dense labels 0..L-1, so that counting partners is an array look-up.
    std::vector<int> sorted_ids;
    sorted_ids.reserve(m);
    for (std::size_t r : used) {
      sorted_ids.push_back(identities[r]);
    }
    std::sort(sorted_ids.begin(), sorted_ids.end());
    sorted_ids.erase(std::unique(sorted_ids.begin(), sorted_ids.end()), sorted_ids.end());
    std::vector<int> label(m);
    for (std::size_t i = 0; i < m; ++i) {
      label[i] = static_cast<int>(
          std::lower_bound(sorted_ids.begin(), sorted_ids.end(), identities[used[i]]) -
          sorted_ids.begin());
    }

    // Output offsets: row i writes its genuine partners j > i at genuine_pos[i]...
    std::vector<std::size_t> genuine_pos(m);
    std::vector<std::size_t> impostor_pos(m);
    {
      std::vector<std::size_t> later(sorted_ids.size(), 0);
      std::vector<std::size_t> gen_after(m);
      for (std::size_t i = m; i-- > 0;) {
        gen_after[i] = later[static_cast<std::size_t>(label[i])]++;
      }
      std::size_t g = 0;
      std::size_t imp = 0;
      for (std::size_t i = 0; i < m; ++i) {
        genuine_pos[i] = g;
        impostor_pos[i] = imp;
        g += gen_after[i];
        imp += (m - 1 - i) - gen_after[i];
      }
      out.genuine.resize(g);
      out.impostor.resize(imp);
    }

    std::vector<float> rows(m * dim);
    for (std::size_t i = 0; i < m; ++i) {
      std::memcpy(rows.data() + i * dim, embeddings.data() + used[i] * dim, dim * sizeof(float));
    }
    const std::size_t panel_count = (m + kPanel - 1) / kPanel;
    std::vector<float> panels(panel_count * dim * kPanel, 0.f);
    for (std::size_t j = 0; j < m; ++j) {
      const std::size_t p = j / kPanel;
      const std::size_t c = j % kPanel;
      for (std::size_t k = 0; k < dim; ++k) {
        panels[(p * dim + k) * kPanel + c] = rows[j * dim + k];
      }
    }

    Job job;
    job.rows = rows.data();
    job.panels = panels.data();
    job.label = label.data();
    job.m = m;
    job.d = dim;
    job.genuine = out.genuine.data();
    job.impostor = out.impostor.data();
    job.genuine_pos = genuine_pos.data();
    job.impostor_pos = impostor_pos.data();

    // Tiles are handed out in order; the first ones have the most work (the triangle is widest
    // there), which balances the threads well enough.
    const std::size_t tiles = (m + kTile - 1) / kTile;
    std::atomic<std::size_t> next{0};
    auto work = [&job, &next, tiles, m] {
      for (std::size_t t = next++; t < tiles; t = next++) {
        score_tile(job, t * kTile, std::min(m, (t + 1) * kTile));
      }
    };
    std::size_t want = threads > 0 ? static_cast<std::size_t>(threads)
                                   : std::max(1u, std::thread::hardware_concurrency());
    want = std::min({want, tiles, std::size_t{64}});
    std::vector<std::thread> workers;
    for (std::size_t t = 1; t < want; ++t) {
      try {
        workers.emplace_back(work);
      } catch (const std::system_error&) {
        break;  // fewer threads: the others (and this one) take the remaining tiles
      }
    }
    work();
    for (std::thread& w : workers) {
      w.join();
    }
    return out;
  } catch (const std::bad_alloc&) {
    return make_error(ErrorCode::kInternal,
                      fmt::format("out of memory scoring all pairs of {} rows", identities.size()));
  }
}

Result<std::vector<MatchedPeople>> matched_people(std::span<const float> embeddings,
                                                  std::size_t dim, std::span<const int> identities,
                                                  float threshold) {
  if (Status s = check_rows(embeddings, dim, identities.size()); !s.ok()) {
    return make_error(std::move(s));
  }
  std::map<std::pair<int, int>, MatchedPeople> found;
  for (std::size_t a = 0; a < identities.size(); ++a) {
    if (identities[a] < 0) {
      continue;
    }
    const float* x = embeddings.data() + a * dim;
    for (std::size_t b = a + 1; b < identities.size(); ++b) {
      if (identities[b] < 0 || identities[b] == identities[a]) {
        continue;
      }
      const float* y = embeddings.data() + b * dim;
      float score = 0.f;
      for (std::size_t k = 0; k < dim; ++k) {
        score += x[k] * y[k];
      }
      if (score < threshold) {
        continue;
      }
      const bool in_order = identities[a] < identities[b];
      const std::pair key = in_order ? std::pair{identities[a], identities[b]}
                                     : std::pair{identities[b], identities[a]};
      auto [it, inserted] = found.try_emplace(key);
      MatchedPeople& m = it->second;
      if (inserted || score > m.highest) {
        m.first = it->first.first;
        m.second = it->first.second;
        m.highest = score;
        m.first_row = in_order ? a : b;
        m.second_row = in_order ? b : a;
      }
      ++m.pairs;
    }
  }
  std::vector<MatchedPeople> out;
  out.reserve(found.size());
  for (auto& [key, m] : found) {
    out.push_back(m);
  }
  std::sort(out.begin(), out.end(), [](const MatchedPeople& l, const MatchedPeople& r) {
    if (l.pairs != r.pairs) {
      return l.pairs > r.pairs;
    }
    if (l.highest != r.highest) {
      return l.highest > r.highest;
    }
    return std::pair{l.first, l.second} < std::pair{r.first, r.second};
  });
  return out;
}

}  // namespace facelogin::eval
