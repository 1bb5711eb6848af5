// facelogin_search_bench: top-1 search over 10k, 100k and 1M templates on one core, facelogin's
// Gallery (fp32 and fp16) and its approximate index (HNSW, hnswlib) next to FAISS IndexFlatIP on
// the same data in the same run; memory per template; build times; how often each finds the
// right user.
//
//   ./build/facelogin_search_bench [--sizes 10000,100000,1000000] [--dim 640] [--queries 50]
//                                  [--approximate-max 100000] [--approximate-threads 1] [--json]
//
// Data: random unit vectors of the default recogniser's size (640), one per user; each query is
// a gallery vector with noise added (cosine about 0.8 to its source, as a second photo of the
// same face), so "found" is well defined. Times are medians over the queries. It measures and
// reports; it never fails on a time.

#include <faiss/IndexFlat.h>
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "bench_util.h"
#include "facelogin/gallery.h"

namespace {

using facelogin::bench::Clock;
using facelogin::bench::median;
using facelogin::bench::ms_since;

void normalise(float* v, std::size_t dim) {
  double norm = 0;
  for (std::size_t i = 0; i < dim; ++i) {
    norm += static_cast<double>(v[i]) * v[i];
  }
  const auto inv = static_cast<float>(1.0 / std::sqrt(norm));
  for (std::size_t i = 0; i < dim; ++i) {
    v[i] *= inv;
  }
}

struct Options {
  std::vector<std::size_t> sizes{10'000, 100'000, 1'000'000};
  std::size_t dim = 640;
  int queries = 50;
  std::size_t approximate_max = 100'000;
  int approximate_threads = 1;
  bool json = false;
};

// Throws std::invalid_argument / std::out_of_range on a malformed number (main() reports it).
bool parse(int argc, char** argv, Options* o) {
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--json") {
      o->json = true;
      continue;
    }
    if (i + 1 >= argc) {
      return false;  // every other option takes a value
    }
    const std::string v = argv[++i];
    if (a == "--sizes") {
      o->sizes.clear();
      std::size_t start = 0;
      while (start < v.size()) {
        const std::size_t comma = std::min(v.find(',', start), v.size());
        o->sizes.push_back(std::stoul(v.substr(start, comma - start)));
        start = comma + 1;
      }
    } else if (a == "--dim") {
      o->dim = std::stoul(v);
    } else if (a == "--queries") {
      o->queries = std::stoi(v);
    } else if (a == "--approximate-max") {
      o->approximate_max = std::stoul(v);
    } else if (a == "--approximate-threads") {
      o->approximate_threads = std::stoi(v);
    } else {
      return false;
    }
  }
  return !o->sizes.empty() && o->dim >= 8 && o->dim <= 8192 && o->queries >= 1 &&
         o->approximate_threads >= 1 && o->approximate_threads <= 256;
}

// Rows [0, n) of `data` as templates of model "bench", each its own user.
std::vector<facelogin::StoredTemplate> as_templates(const std::vector<float>& data, std::size_t n,
                                                    std::size_t dim) {
  std::vector<facelogin::StoredTemplate> templates(n);
  for (std::size_t i = 0; i < n; ++i) {
    templates[i].id = static_cast<std::int64_t>(i);
    templates[i].user_id = static_cast<std::int64_t>(i);
    templates[i].face.model_id = "bench";
    templates[i].face.embedding.assign(data.begin() + static_cast<std::ptrdiff_t>(i * dim),
                                       data.begin() + static_cast<std::ptrdiff_t>((i + 1) * dim));
  }
  return templates;
}

// Query q as a probe of model "bench".
facelogin::FaceTemplate probe_of(const std::vector<float>& queries, std::size_t q,
                                 std::size_t dim) {
  facelogin::FaceTemplate probe;
  probe.model_id = "bench";
  probe.embedding.assign(queries.begin() + static_cast<std::ptrdiff_t>(q * dim),
                         queries.begin() + static_cast<std::ptrdiff_t>((q + 1) * dim));
  return probe;
}

// Runs `search` (probe -> candidates) on every query: the median time in ms and the share of
// queries whose first candidate is their source user.
template <typename Search>
std::pair<double, double> time_queries(const std::vector<float>& queries,
                                       const std::vector<std::size_t>& source, std::size_t dim,
                                       Search search) {
  std::vector<double> times;
  int found = 0;
  for (std::size_t q = 0; q < source.size(); ++q) {
    const auto probe = probe_of(queries, q, dim);
    const auto t0 = Clock::now();
    const auto top = search(probe);
    times.push_back(ms_since(t0));
    found += !top.empty() && top[0].user_id == static_cast<std::int64_t>(source[q]) ? 1 : 0;
  }
  return {median(times), static_cast<double>(found) / static_cast<double>(source.size())};
}

struct Row {
  std::string method;
  std::size_t n = 0;
  double median_ms = 0;
  double build_s = 0;
  double bytes_per_template = 0;
  double found = 0;  // share of queries whose top-1 is the source user
};

}  // namespace

int main(int argc, char** argv) {
  Options o;
  try {
    if (!parse(argc, argv, &o)) {
      std::fprintf(stderr,
                   "usage: %s [--sizes N,N,...] [--dim D] [--queries Q] "
                   "[--approximate-max N] [--approximate-threads T] [--json]\n",
                   argv[0]);
      return 2;
    }
  } catch (const std::exception&) {
    std::fprintf(stderr, "%s: numbers expected\n", argv[0]);
    return 2;
  }
  omp_set_num_threads(1);  // one core, for every method
  std::vector<Row> rows;
  std::mt19937_64 rng(20261129);
  std::normal_distribution<float> normal;
  for (std::size_t n : o.sizes) {
    std::vector<float> data(n * o.dim);
    for (float& v : data) {
      v = normal(rng);
    }
    for (std::size_t i = 0; i < n; ++i) {
      normalise(data.data() + i * o.dim, o.dim);
    }
    std::vector<std::size_t> source(static_cast<std::size_t>(o.queries));
    std::vector<float> queries(source.size() * o.dim);
    for (std::size_t q = 0; q < source.size(); ++q) {
      source[q] = std::uniform_int_distribution<std::size_t>(0, n - 1)(rng);
      const float noise = 0.75f / std::sqrt(static_cast<float>(o.dim));
      for (std::size_t d = 0; d < o.dim; ++d) {
        queries[q * o.dim + d] = data[source[q] * o.dim + d] + noise * normal(rng);
      }
      normalise(queries.data() + q * o.dim, o.dim);
    }

    // facelogin Gallery, fp32 and fp16.
    for (auto precision : {facelogin::GalleryPrecision::kFloat32,
                           facelogin::GalleryPrecision::kFloat16}) {
      auto t0 = Clock::now();
      auto templates = as_templates(data, n, o.dim);
      auto gallery = facelogin::Gallery::build(templates, "bench", precision);
      templates.clear();
      templates.shrink_to_fit();
      if (!gallery) {
        std::fprintf(stderr, "gallery: %s\n", gallery.error().message().c_str());
        continue;
      }
      const double build_s = ms_since(t0) / 1000;
      const auto [median_ms, found] = time_queries(
          queries, source, o.dim, [&](const auto& probe) { return gallery->search(probe, 1); });
      rows.push_back({precision == facelogin::GalleryPrecision::kFloat32
                          ? std::string("facelogin exact fp32 (") + std::string(gallery->kernel()) + ")"
                          : std::string("facelogin exact fp16 (") + std::string(gallery->kernel()) + ")",
                      n, median_ms, build_s,
                      static_cast<double>(gallery->bytes()) / static_cast<double>(n), found});
    }

    // FAISS IndexFlatIP (exact).
    {
      auto t0 = Clock::now();
      faiss::IndexFlatIP index(static_cast<faiss::Index::idx_t>(o.dim));
      index.add(static_cast<faiss::Index::idx_t>(n), data.data());
      const double build_s = ms_since(t0) / 1000;
      std::vector<double> times;
      int found = 0;
      for (std::size_t q = 0; q < source.size(); ++q) {
        float distance = 0;
        faiss::Index::idx_t label = -1;
        t0 = Clock::now();
        index.search(1, queries.data() + q * o.dim, 1, &distance, &label);
        times.push_back(ms_since(t0));
        found += label == static_cast<faiss::Index::idx_t>(source[q]) ? 1 : 0;
      }
      rows.push_back({"FAISS IndexFlatIP", n, median(times), build_s,
                      static_cast<double>(o.dim * sizeof(float)),
                      static_cast<double>(found) / static_cast<double>(source.size())});
    }

    // facelogin's approximate index (HNSW, the product's defaults); slow to build, so only up
    // to --approximate-max.
    if (n <= o.approximate_max) {
      auto t0 = Clock::now();
      auto templates = as_templates(data, n, o.dim);
      std::vector<std::int64_t> alive(n);
      std::iota(alive.begin(), alive.end(), 0);
      facelogin::ApproximateParams params;
      params.build_threads = o.approximate_threads;  // the build only; searches use one core
      auto index = facelogin::ApproximateIndex::build(templates, "bench", params);
      templates.clear();
      templates.shrink_to_fit();
      if (!index) {
        std::fprintf(stderr, "approximate index: %s\n", index.error().message().c_str());
      } else {
        const double build_s = ms_since(t0) / 1000;
        const auto [median_ms, found] =
            time_queries(queries, source, o.dim,
                         [&](const auto& probe) { return (*index)->search(probe, 1, alive); });
        rows.push_back({"facelogin approximate (HNSW M=" + std::to_string(params.m) +
                            " ef=" + std::to_string(params.ef_search) +
                            (params.build_threads > 1
                                 ? ", built by " + std::to_string(params.build_threads) + " threads"
                                 : std::string()) +
                            ")",
                        n, median_ms, build_s,
                        static_cast<double>((*index)->bytes()) / static_cast<double>(n), found});
      }
    }
  }

  if (o.json) {
    std::printf("[");
    for (std::size_t i = 0; i < rows.size(); ++i) {
      const Row& r = rows[i];
      std::printf(
          "%s{\"method\":\"%s\",\"templates\":%zu,\"median_ms\":%.4f,\"build_s\":%.3f,"
          "\"bytes_per_template\":%.1f,\"found\":%.4f}",
          i == 0 ? "" : ",", r.method.c_str(), r.n, r.median_ms, r.build_s, r.bytes_per_template,
          r.found);
    }
    std::printf("]\n");
    return 0;
  }
  std::printf("top-1 search, %zu-d unit vectors, one core, median of %d queries\n", o.dim,
              o.queries);
  std::printf("| templates | method | median ms | build s | bytes/template | top-1 right |\n");
  std::printf("|---|---|---|---|---|---|\n");
  for (const Row& r : rows) {
    std::printf("| %zu | %s | %.3f | %.2f | %.0f | %.0f%% |\n", r.n, r.method.c_str(),
                r.median_ms, r.build_s, r.bytes_per_template, 100 * r.found);
  }
  return 0;
}
