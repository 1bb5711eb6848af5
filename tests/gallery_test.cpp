// The in-memory 1:N gallery: the same answers as facelogin::search() (the reference scan), in
// fp32 exactly and in fp16 up to rounding.

#include "facelogin/gallery.h"

#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <random>
#include <thread>

#include "store_backends.h"

namespace facelogin {
namespace {

std::vector<StoredTemplate> random_gallery(std::size_t users, std::size_t per_user, std::size_t dim,
                                           std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> normal;
  std::vector<StoredTemplate> out;
  for (std::size_t u = 0; u < users; ++u) {
    for (std::size_t t = 0; t < per_user; ++t) {
      StoredTemplate s;
      s.id = static_cast<std::int64_t>(out.size());
      // Users not in id order, so that the gallery's grouping is exercised.
      s.user_id = static_cast<std::int64_t>((u * 7919) % users) + 1;
      s.face.model_id = "m";
      s.face.embedding.resize(dim);
      double norm = 0;
      for (float& v : s.face.embedding) {
        v = normal(rng);
        norm += static_cast<double>(v) * v;
      }
      for (float& v : s.face.embedding) {
        v = static_cast<float>(v / std::sqrt(norm));
      }
      out.push_back(std::move(s));
    }
  }
  std::shuffle(out.begin(), out.end(), rng);
  return out;
}

// Users as a real recogniser sees them: each user's templates near a centre of their own
// (cosine about 0.8 to it), and a probe is another view near the same centre.
struct Clustered {
  std::vector<StoredTemplate> templates;
  std::vector<std::pair<FaceTemplate, std::int64_t>> probes;  // probe, its user
};

Clustered clustered_gallery(std::size_t users, std::size_t per_user, std::size_t dim,
                            std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> normal;
  const auto unit = [&](std::vector<float> v) {
    double norm = 0;
    for (float x : v) {
      norm += static_cast<double>(x) * x;
    }
    for (float& x : v) {
      x = static_cast<float>(x / std::sqrt(norm));
    }
    return v;
  };
  const auto near = [&](const std::vector<float>& centre) {
    std::vector<float> v(centre);
    const float noise = 0.75f / std::sqrt(static_cast<float>(dim));
    for (float& x : v) {
      x += noise * normal(rng);
    }
    return unit(std::move(v));
  };
  Clustered out;
  for (std::size_t u = 0; u < users; ++u) {
    std::vector<float> centre(dim);
    for (float& x : centre) {
      x = normal(rng);
    }
    centre = unit(std::move(centre));
    for (std::size_t t = 0; t < per_user; ++t) {
      StoredTemplate s;
      s.id = static_cast<std::int64_t>(out.templates.size()) + 1;
      s.user_id = static_cast<std::int64_t>(u) + 1;
      s.face.model_id = "m";
      s.face.embedding = near(centre);
      out.templates.push_back(std::move(s));
    }
    FaceTemplate probe;
    probe.model_id = "m";
    probe.embedding = near(centre);
    out.probes.emplace_back(std::move(probe), static_cast<std::int64_t>(u) + 1);
  }
  return out;
}

std::vector<std::int64_t> ids_of(const std::vector<StoredTemplate>& templates) {
  std::vector<std::int64_t> ids;
  for (const auto& t : templates) {
    ids.push_back(t.id);
  }
  std::sort(ids.begin(), ids.end());
  return ids;
}

TEST(GalleryTest, Fp32FindsExactlyWhatTheReferenceScanFinds) {
  for (std::size_t dim : {640u, 37u}) {  // a size that is no multiple of the SIMD width too
    const auto templates = random_gallery(300, 3, dim, dim);
    auto gallery = Gallery::build(templates, "m");
    ASSERT_TRUE(gallery) << gallery.error().message();
    EXPECT_EQ(gallery->size(), templates.size());
    EXPECT_EQ(gallery->dim(), dim);
    for (std::size_t q = 0; q < 20; ++q) {
      const FaceTemplate& probe = templates[q * 7].face;
      const auto want = search(probe, templates, 5);
      const auto got = gallery->search(probe, 5);
      ASSERT_EQ(got.size(), want.size());
      for (std::size_t i = 0; i < got.size(); ++i) {
        EXPECT_EQ(got[i].user_id, want[i].user_id) << "dim " << dim << " query " << q;
        EXPECT_NEAR(got[i].score, want[i].score, 1e-5f);
      }
      EXPECT_NEAR(got[0].score, 1.f, 1e-5f);  // the probe itself
    }
  }
}

TEST(GalleryTest, Fp16KeepsTheRankingAndHalvesTheMemory) {
  const auto templates = random_gallery(500, 2, 640, 7);
  auto full = Gallery::build(templates, "m", GalleryPrecision::kFloat32);
  auto half = Gallery::build(templates, "m", GalleryPrecision::kFloat16);
  ASSERT_TRUE(full);
  if (!half) {
    GTEST_SKIP() << half.error().message();  // a CPU without AVX2/F16C
  }
  EXPECT_LT(half->bytes(), full->bytes() * 6 / 10);
  for (std::size_t q = 0; q < 50; ++q) {
    const FaceTemplate& probe = templates[q * 13].face;
    const auto a = full->search(probe, 1);
    const auto b = half->search(probe, 1);
    ASSERT_EQ(a.size(), 1u);
    ASSERT_EQ(b.size(), 1u);
    EXPECT_EQ(a[0].user_id, b[0].user_id);
    EXPECT_NEAR(a[0].score, b[0].score, 2e-3f);
  }
}

TEST(GalleryTest, OtherModelsAndSizesFindNobody) {
  auto templates = random_gallery(10, 1, 16, 3);
  templates[0].face.model_id = "other";
  auto gallery = Gallery::build(templates, "m");
  ASSERT_TRUE(gallery);
  EXPECT_EQ(gallery->size(), 9u);
  EXPECT_TRUE(gallery->search(templates[0].face, 3).empty());  // model "other"
  FaceTemplate shorter = templates[1].face;
  shorter.embedding.resize(8);
  EXPECT_TRUE(gallery->search(shorter, 3).empty());
  EXPECT_TRUE(gallery->search(templates[1].face, 0).empty());
  auto empty = Gallery::build({}, "m");
  ASSERT_TRUE(empty);
  EXPECT_TRUE(empty->search(templates[1].face, 3).empty());
  templates[2].face.embedding.resize(8);
  EXPECT_FALSE(Gallery::build(templates, "m").has_value());
}

TEST(ApproximateIndexTest, FindsTheUsersExactSearchFinds) {
  const auto data = clustered_gallery(400, 3, 128, 11);
  auto exact = Gallery::build(data.templates, "m");
  ASSERT_TRUE(exact);
  for (int threads : {1, 3}) {
    SCOPED_TRACE(threads);
    ApproximateParams params;
    params.build_threads = threads;  // three threads link the graph at once
    auto index = ApproximateIndex::build(data.templates, "m", params);
    ASSERT_TRUE(index) << index.error().message();
    EXPECT_EQ((*index)->size(), data.templates.size());
    EXPECT_GT((*index)->bytes(), data.templates.size() * 128 * sizeof(float));
    const auto alive = ids_of(data.templates);
    std::size_t same = 0;
    for (const auto& [probe, user] : data.probes) {
      const auto want = exact->search(probe, 3);
      const auto got = (*index)->search(probe, 3, alive);
      ASSERT_EQ(got.size(), 3u);
      EXPECT_EQ(want[0].user_id, user);
      if (got[0].user_id == want[0].user_id) {
        ++same;
        EXPECT_NEAR(got[0].score, want[0].score, 1e-5f);  // the found template's exact score
      }
    }
    EXPECT_GE(same, data.probes.size() * 99 / 100);
  }
}

TEST(ApproximateIndexTest, SkipsRemovedTemplatesAndOtherModels) {
  const auto data = clustered_gallery(50, 2, 64, 12);
  auto index = ApproximateIndex::build(data.templates, "m", ApproximateParams{});
  ASSERT_TRUE(index);
  // User 1's templates removed since the build: their own probe must not find them.
  std::vector<std::int64_t> alive;
  for (const auto& t : data.templates) {
    if (t.user_id != 1) {
      alive.push_back(t.id);
    }
  }
  std::sort(alive.begin(), alive.end());
  for (const Candidate& c : (*index)->search(data.probes[0].first, 10, alive)) {
    EXPECT_NE(c.user_id, 1);
  }
  FaceTemplate other = data.probes[0].first;
  other.model_id = "other";
  EXPECT_TRUE((*index)->search(other, 3, alive).empty());
  EXPECT_TRUE((*index)->search(data.probes[0].first, 0, alive).empty());
  auto empty = ApproximateIndex::build({}, "m", ApproximateParams{});
  ASSERT_TRUE(empty);
  EXPECT_TRUE((*empty)->search(data.probes[0].first, 3, alive).empty());
  ApproximateParams bad;
  bad.m = 0;
  EXPECT_FALSE(ApproximateIndex::build(data.templates, "m", bad).has_value());
  bad = ApproximateParams{};
  bad.build_threads = 0;
  EXPECT_FALSE(ApproximateIndex::build(data.templates, "m", bad).has_value());
  auto mixed = data.templates;
  mixed[3].face.embedding.resize(32);
  EXPECT_FALSE(ApproximateIndex::build(mixed, "m", ApproximateParams{}).has_value());
}

TEST(GalleryCacheTest, RebuildsOnlyWhenTheStoreChanged) {
  testing::BackendDb db("sqlite");
  auto store = db.open_store(std::string(32, 'k'));
  ASSERT_TRUE(store) << store.error().to_string();
  auto templates = random_gallery(3, 1, 16, 5);
  ASSERT_TRUE((*store)->create_user("alice", {templates[0].face}));
  GalleryCache cache;
  auto first = cache.current(**store, "m");
  ASSERT_TRUE(first) << first.error().to_string();
  EXPECT_EQ((*first)->templates(), 1u);
  auto again = cache.current(**store, "m");
  ASSERT_TRUE(again);
  EXPECT_EQ(first->get(), again->get());  // unchanged store: the same gallery
  EXPECT_EQ(cache.rebuilds(), 1);
  // Another writer (here another store object on the same database) adds a user.
  auto other = db.open_store(std::string(32, 'k'));
  ASSERT_TRUE(other);
  ASSERT_TRUE((*other)->create_user("bob", {templates[1].face}));
  auto after = cache.current(**store, "m");
  ASSERT_TRUE(after);
  EXPECT_EQ((*after)->templates(), 2u);
  EXPECT_EQ(cache.rebuilds(), 2);
  const auto found = (*after)->search(templates[1].face, 1);
  ASSERT_EQ(found.size(), 1u);
  EXPECT_EQ((*after)->names.at(found[0].user_id), "bob");
  // A disabled user leaves the gallery.
  ASSERT_TRUE((*other)->set_disabled("bob", true).ok());
  auto disabled = cache.current(**store, "m");
  ASSERT_TRUE(disabled);
  EXPECT_EQ((*disabled)->templates(), 1u);
  EXPECT_EQ((*first)->templates(), 1u);  // a reader's old gallery is untouched
}

// Waits (up to a minute) until the cache's background index build has finished `builds` builds.
bool wait_for_index(const GalleryCache& cache, int builds) {
  for (int i = 0; i < 600 && (cache.index_builds() < builds || cache.index_building()); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  return cache.index_builds() >= builds && !cache.index_building();
}

TEST(GalleryCacheTest, ApproximateAboveTheSizeStaysInStepWithTheStore) {
  testing::BackendDb db("sqlite");
  auto store = db.open_store(std::string(32, 'k'));
  ASSERT_TRUE(store) << store.error().to_string();
  const auto data = clustered_gallery(40, 2, 64, 13);
  for (std::size_t u = 0; u < 30; ++u) {
    ASSERT_TRUE(
        (*store)->create_user("user" + std::to_string(u + 1),
                              {data.templates[2 * u].face, data.templates[2 * u + 1].face}));
  }
  GalleryOptions options;
  options.approximate_above = 50;
  GalleryCache cache(options);
  // 60 templates: above the size. The first search is exact while the index builds.
  auto first = cache.current(**store, "m");
  ASSERT_TRUE(first) << first.error().to_string();
  EXPECT_EQ((*first)->index, nullptr);
  EXPECT_EQ((*first)->templates(), 60u);
  ASSERT_TRUE(wait_for_index(cache, 1));
  auto indexed = cache.current(**store, "m");
  ASSERT_TRUE(indexed);
  ASSERT_NE((*indexed)->index, nullptr);
  EXPECT_EQ((*indexed)->gallery->size(), 0u);  // no tail
  const auto name_of_best = [&](const GalleryCache::Entry& entry, const FaceTemplate& probe) {
    const auto found = entry.search(probe, 1);
    return found.empty() ? std::string() : entry.names.at(found[0].user_id);
  };
  EXPECT_EQ(name_of_best(**indexed, data.probes[4].first), "user5");
  // A user enrolled after the build is found through the exact tail at once.
  ASSERT_TRUE((*store)->create_user("late", {data.templates[70].face, data.templates[71].face}));
  auto with_tail = cache.current(**store, "m");
  ASSERT_TRUE(with_tail);
  EXPECT_EQ((*with_tail)->index, (*indexed)->index);
  EXPECT_EQ((*with_tail)->gallery->size(), 2u);
  EXPECT_EQ(name_of_best(**with_tail, data.probes[35].first), "late");
  // A removed user is not found, though the index still holds their templates.
  ASSERT_TRUE((*store)->remove_user("user5").ok());
  auto removed = cache.current(**store, "m");
  ASSERT_TRUE(removed);
  EXPECT_NE(name_of_best(**removed, data.probes[4].first), "user5");
  EXPECT_EQ((*removed)->templates(), 60u);
  // Below the size again: exact.
  GalleryOptions high;
  high.approximate_above = 1000;
  GalleryCache exact_cache(high);
  auto exact = exact_cache.current(**store, "m");
  ASSERT_TRUE(exact);
  EXPECT_EQ((*exact)->index, nullptr);
  EXPECT_EQ(exact_cache.index_builds(), 0);
  EXPECT_FALSE(exact_cache.index_building());
}

}  // namespace
}  // namespace facelogin
