// check_first_pass: the early decision's first-pass scores against the full ones over every
// ordered pair of an evaluation set, so that RecognizerSpec::first_pass_margin rests on data.

#include <fmt/core.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <mutex>
#include <system_error>
#include <thread>

#include "facelogin/eval.h"
#include "matching/dot.h"

namespace facelogin::eval {
namespace {

// Probe rows per unit of work: each enrolled row is read once per tile, not once per probe.
constexpr std::size_t kTile = 16;

}  // namespace

Result<FirstPassCheck> check_first_pass(std::span<const float> first, std::span<const float> full,
                                        std::size_t dim, std::span<const int> identities,
                                        float threshold, float margin, int threads) {
  if (dim == 0) {
    return make_error(ErrorCode::kInvalidArgument, "embedding dimension is 0");
  }
  if (first.size() != full.size() || full.size() != identities.size() * dim) {
    return make_error(ErrorCode::kInvalidArgument,
                      fmt::format("{} and {} floats do not make two matrices of {} rows of {}",
                                  first.size(), full.size(), identities.size(), dim));
  }
  if (!(margin >= 0.f)) {
    return make_error(ErrorCode::kInvalidArgument, "the margin must be 0 or more");
  }
  std::vector<std::size_t> used;
  for (std::size_t r = 0; r < identities.size(); ++r) {
    if (identities[r] >= 0) {
      used.push_back(r);
    }
  }
  const detail::DotFn dot = detail::best_dot_f32();
  const std::size_t tiles = (used.size() + kTile - 1) / kTile;
  std::atomic<std::size_t> next{0};
  std::mutex mu;
  FirstPassCheck total;
  auto work = [&] {
    FirstPassCheck part;
    for (std::size_t t = next++; t < tiles; t = next++) {
      const std::size_t a0 = t * kTile;
      const std::size_t a1 = std::min(used.size(), a0 + kTile);
      for (const std::size_t b : used) {
        const float* enrolled = full.data() + b * dim;
        for (std::size_t ai = a0; ai < a1; ++ai) {
          const std::size_t a = used[ai];
          if (a == b) {
            continue;
          }
          const float quick = dot(first.data() + a * dim, enrolled, dim);
          const float exact = dot(full.data() + a * dim, enrolled, dim);
          part.max_difference = std::max(part.max_difference, std::abs(quick - exact));
          const bool genuine = identities[a] == identities[b];
          ++(genuine ? part.genuine : part.impostor);
          if (std::abs(quick - threshold) < margin) {
            ++(genuine ? part.genuine_second_pass : part.impostor_second_pass);
          } else if ((quick >= threshold) != (exact >= threshold)) {
            ++part.changed_decisions;
          }
        }
      }
    }
    std::lock_guard lock(mu);
    total.max_difference = std::max(total.max_difference, part.max_difference);
    total.genuine += part.genuine;
    total.impostor += part.impostor;
    total.genuine_second_pass += part.genuine_second_pass;
    total.impostor_second_pass += part.impostor_second_pass;
    total.changed_decisions += part.changed_decisions;
  };
  std::size_t want = threads > 0 ? static_cast<std::size_t>(threads)
                                 : std::max(1u, std::thread::hardware_concurrency());
  want = std::max<std::size_t>(1, std::min({want, tiles, std::size_t{64}}));
  std::vector<std::thread> workers;
  workers.reserve(want);  // so that only starting a thread can throw below
  try {
    for (std::size_t i = 1; i < want; ++i) {
      workers.emplace_back(work);
    }
  } catch (const std::system_error&) {
    // Fewer threads than asked: the ones running (and this one) share the tiles.
  }
  work();
  for (auto& w : workers) {
    w.join();
  }
  return total;
}

}  // namespace facelogin::eval
