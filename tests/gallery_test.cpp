// The in-memory 1:N gallery: the same answers as facelogin::search() (the reference scan), in
// fp32 exactly and in fp16 up to rounding.

#include "facelogin/gallery.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>

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

TEST(GalleryCacheTest, RebuildsOnlyWhenTheStoreChanged) {
  testing::BackendDb db("sqlite");
  auto store = db.open_store(std::string(32, 'k'));
  ASSERT_TRUE(store) << store.error().to_string();
  auto templates = random_gallery(3, 1, 16, 5);
  ASSERT_TRUE((*store)->create_user("alice", {templates[0].face}));
  GalleryCache cache;
  auto first = cache.current(**store, "m");
  ASSERT_TRUE(first) << first.error().to_string();
  EXPECT_EQ((*first)->gallery->size(), 1u);
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
  EXPECT_EQ((*after)->gallery->size(), 2u);
  EXPECT_EQ(cache.rebuilds(), 2);
  const auto found = (*after)->gallery->search(templates[1].face, 1);
  ASSERT_EQ(found.size(), 1u);
  EXPECT_EQ((*after)->names.at(found[0].user_id), "bob");
  // A disabled user leaves the gallery.
  ASSERT_TRUE((*other)->set_disabled("bob", true).ok());
  auto disabled = cache.current(**store, "m");
  ASSERT_TRUE(disabled);
  EXPECT_EQ((*disabled)->gallery->size(), 1u);
  EXPECT_EQ((*first)->gallery->size(), 1u);  // a reader's old gallery is untouched
}

}  // namespace
}  // namespace facelogin
