// Tests for comparing templates and deciding (include/facelogin/matching.h).

#include "facelogin/matching.h"

#include <gtest/gtest.h>

#include <cmath>
#include <vector>

namespace facelogin {
namespace {

constexpr const char* kModel = "test-recogniser";

// The unit vector at `angle` radians in the plane of the first two axes, padded to `size`:
// the cosine of two such templates is cos(angle difference), known exactly.
FaceTemplate at_angle(double angle, std::size_t size = 8, const char* model = kModel) {
  FaceTemplate t;
  t.model_id = model;
  t.embedding.assign(size, 0.f);
  t.embedding[0] = static_cast<float>(std::cos(angle));
  t.embedding[1] = static_cast<float>(std::sin(angle));
  return t;
}

StoredTemplate stored(std::int64_t id, std::int64_t user, FaceTemplate face) {
  StoredTemplate s;
  s.id = id;
  s.user_id = user;
  s.face = std::move(face);
  return s;
}

TEST(Similarity, IsTheCosineOfUnitTemplates) {
  auto s = similarity(at_angle(0.0), at_angle(1.0));
  ASSERT_TRUE(s.has_value()) << s.error().to_string();
  EXPECT_NEAR(*s, std::cos(1.0), 1e-6);
  auto self = similarity(at_angle(0.3), at_angle(0.3));
  ASSERT_TRUE(self.has_value());
  EXPECT_NEAR(*self, 1.0, 1e-6);
}

TEST(Similarity, RefusesTemplatesOfDifferentRecognisers) {
  auto s = similarity(at_angle(0.0, 8, "model-a"), at_angle(0.0, 8, "model-b"));
  ASSERT_FALSE(s.has_value());
  EXPECT_EQ(s.error().code(), ErrorCode::kModelMismatch);
  EXPECT_NE(s.error().message().find("re-enrol"), std::string::npos) << s.error().message();
}

TEST(Similarity, RefusesTemplatesOfDifferentLengths) {
  auto s = similarity(at_angle(0.0, 8), at_angle(0.0, 16));
  ASSERT_FALSE(s.has_value());
  EXPECT_EQ(s.error().code(), ErrorCode::kInvalidArgument);
}

TEST(Similarity, RefusesEmptyTemplates) {
  FaceTemplate empty;
  empty.model_id = kModel;
  auto s = similarity(empty, empty);
  ASSERT_FALSE(s.has_value());
  EXPECT_EQ(s.error().code(), ErrorCode::kInvalidArgument);
}

TEST(Verify, DecidesOnTheBestOfTheUsersTemplates) {
  // Probe at angle 0; templates at 1.2, 0.4 (best: cos 0.4 = 0.921) and 0.9.
  const std::vector<StoredTemplate> enrolled = {
      stored(1, 7, at_angle(1.2)), stored(2, 7, at_angle(0.4)), stored(3, 7, at_angle(0.9))};
  auto d = verify(at_angle(0.0), enrolled, 0.9f);
  ASSERT_TRUE(d.has_value()) << d.error().to_string();
  EXPECT_TRUE(d->match);
  EXPECT_NEAR(d->score, std::cos(0.4), 1e-6);
  EXPECT_EQ(d->threshold, 0.9f);
  EXPECT_EQ(d->templates_compared, 3);

  // A threshold above the best score rejects, though the score is the same.
  auto strict = verify(at_angle(0.0), enrolled, 0.95f);
  ASSERT_TRUE(strict.has_value());
  EXPECT_FALSE(strict->match);
  EXPECT_NEAR(strict->score, std::cos(0.4), 1e-6);
}

TEST(Verify, MatchesAScoreExactlyAtTheThreshold) {
  const std::vector<StoredTemplate> enrolled = {stored(1, 1, at_angle(0.5))};
  auto score = similarity(at_angle(0.0), enrolled[0].face);
  ASSERT_TRUE(score.has_value());
  auto d = verify(at_angle(0.0), enrolled, *score);
  ASSERT_TRUE(d.has_value());
  EXPECT_TRUE(d->match) << "score >= threshold is a match";
}

TEST(Verify, RejectsAllDissimilarFacesEvenWithNegativeScores) {
  // Scores below -1 + epsilon must not be beaten by an initial "best" value.
  const std::vector<StoredTemplate> enrolled = {stored(1, 1, at_angle(3.0)),
                                                stored(2, 1, at_angle(3.1))};
  auto d = verify(at_angle(0.0), enrolled, -0.5f);
  ASSERT_TRUE(d.has_value());
  EXPECT_NEAR(d->score, std::cos(3.0), 1e-6);
  EXPECT_FALSE(d->match);
}

TEST(Verify, ReportsAUserWithoutTemplatesAsNotFound) {
  auto d = verify(at_angle(0.0), {}, 0.5f);
  ASSERT_FALSE(d.has_value());
  EXPECT_EQ(d.error().code(), ErrorCode::kNotFound);
}

TEST(CheckComparable, NeedsTemplatesAllOfTheProbesRecogniser) {
  const std::vector<StoredTemplate> same = {stored(1, 1, at_angle(0.0)),
                                            stored(2, 1, at_angle(1.0))};
  EXPECT_TRUE(check_comparable(kModel, same).ok());
  EXPECT_EQ(check_comparable(kModel, {}).code(), ErrorCode::kNotFound);
  const std::vector<StoredTemplate> mixed = {stored(1, 1, at_angle(0.0)),
                                             stored(2, 1, at_angle(0.0, 8, "old-model"))};
  const Status s = check_comparable(kModel, mixed);
  EXPECT_EQ(s.code(), ErrorCode::kModelMismatch);
  EXPECT_NE(s.message().find("old-model"), std::string::npos) << s.message();
  EXPECT_NE(s.message().find("re-enrol"), std::string::npos) << s.message();
}

TEST(Verify, RefusesTemplatesOfAnotherRecogniserInsteadOfSkippingThem) {
  const std::vector<StoredTemplate> enrolled = {stored(1, 1, at_angle(0.0)),
                                                stored(2, 1, at_angle(0.0, 8, "old-model"))};
  auto d = verify(at_angle(0.0), enrolled, 0.5f);
  ASSERT_FALSE(d.has_value());
  EXPECT_EQ(d.error().code(), ErrorCode::kModelMismatch);
}

TEST(Verify, RefusesTemplatesOfAnotherLength) {
  const std::vector<StoredTemplate> enrolled = {stored(1, 1, at_angle(0.0, 16))};
  auto d = verify(at_angle(0.0, 8), enrolled, 0.5f);
  ASSERT_FALSE(d.has_value());
  EXPECT_EQ(d.error().code(), ErrorCode::kInvalidArgument);
}

TEST(Search, ReturnsTheTopKUsersByTheirBestTemplate) {
  // User 10: 0.1 and 1.5 (best 0.1); user 20: 0.3; user 30: 0.7 and 0.2 (best 0.2); user 40: 2.0.
  const std::vector<StoredTemplate> gallery = {
      stored(1, 10, at_angle(1.5)), stored(2, 20, at_angle(0.3)), stored(3, 30, at_angle(0.7)),
      stored(4, 10, at_angle(0.1)), stored(5, 40, at_angle(2.0)), stored(6, 30, at_angle(0.2))};
  const auto top = search(at_angle(0.0), gallery, 3);
  ASSERT_EQ(top.size(), 3u);
  EXPECT_EQ(top[0].user_id, 10);
  EXPECT_NEAR(top[0].score, std::cos(0.1), 1e-6);
  EXPECT_EQ(top[1].user_id, 30);
  EXPECT_NEAR(top[1].score, std::cos(0.2), 1e-6);
  EXPECT_EQ(top[2].user_id, 20);
  EXPECT_NEAR(top[2].score, std::cos(0.3), 1e-6);
}

TEST(Search, ListsEachUserOnceAndAtMostAllUsers) {
  const std::vector<StoredTemplate> gallery = {
      stored(1, 5, at_angle(0.1)), stored(2, 5, at_angle(0.2)), stored(3, 6, at_angle(0.3))};
  const auto top = search(at_angle(0.0), gallery, 10);
  ASSERT_EQ(top.size(), 2u);
  EXPECT_EQ(top[0].user_id, 5);
  EXPECT_EQ(top[1].user_id, 6);
}

TEST(Search, BreaksTiesByUserId) {
  // Three users with identical scores, listed in an order unlike their ids.
  const std::vector<StoredTemplate> gallery = {
      stored(1, 9, at_angle(0.5)), stored(2, 3, at_angle(-0.5)), stored(3, 6, at_angle(0.5))};
  const auto top = search(at_angle(0.0), gallery, 3);
  ASSERT_EQ(top.size(), 3u);
  EXPECT_EQ(top[0].user_id, 3);
  EXPECT_EQ(top[1].user_id, 6);
  EXPECT_EQ(top[2].user_id, 9);
  EXPECT_EQ(top[0].score, top[2].score);
}

TEST(Search, SkipsTemplatesOfOtherRecognisersAndLengths) {
  const std::vector<StoredTemplate> gallery = {stored(1, 1, at_angle(0.0, 8, "other")),
                                               stored(2, 2, at_angle(0.0, 16)),
                                               stored(3, 3, at_angle(1.0))};
  const auto top = search(at_angle(0.0), gallery, 5);
  ASSERT_EQ(top.size(), 1u);
  EXPECT_EQ(top[0].user_id, 3);
}

TEST(Search, GivesNothingForAnEmptyGalleryOrKZero) {
  EXPECT_TRUE(search(at_angle(0.0), {}, 3).empty());
  const std::vector<StoredTemplate> gallery = {stored(1, 1, at_angle(0.0))};
  EXPECT_TRUE(search(at_angle(0.0), gallery, 0).empty());
}

}  // namespace
}  // namespace facelogin
