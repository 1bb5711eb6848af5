// Tests for choosing the subject of a frame (src/vision/subject.h).

#include "vision/subject.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <vector>

#include "facelogin/engine.h"

namespace facelogin::vision {
namespace {

constexpr int kWidth = 640;
constexpr int kHeight = 480;
constexpr float kRatio = 0.25f;

DetectedFace face_at(float x, float y, float size, float score = 0.9f) {
  DetectedFace f;
  f.box = {x, y, size, size};
  f.score = score;
  return f;
}

TEST(ChooseSubject, GivesNothingWhenThereAreNoFaces) {
  EXPECT_FALSE(choose_subject({}, SubjectPolicy::kLargest, kWidth, kHeight, kRatio).has_value());
  EXPECT_FALSE(choose_subject({}, SubjectPolicy::kCentral, kWidth, kHeight, kRatio).has_value());
}

TEST(ChooseSubject, TakesTheOnlyFaceWithoutARival) {
  const auto choice =
      choose_subject({face_at(10, 10, 50)}, SubjectPolicy::kLargest, kWidth, kHeight, kRatio);
  ASSERT_TRUE(choice.has_value());
  EXPECT_EQ(choice->subject, 0u);
  EXPECT_FALSE(choice->rival.has_value());
}

TEST(ChooseSubject, PicksTheLargestFaceUnderLargestWhateverTheDetectorOrder) {
  // The detector sorts by score; the large face is listed last with the lowest score.
  const std::vector<DetectedFace> faces = {face_at(300, 200, 40, 0.99f), face_at(20, 20, 60, 0.95f),
                                           face_at(450, 100, 150, 0.7f)};
  const auto choice = choose_subject(faces, SubjectPolicy::kLargest, kWidth, kHeight, kRatio);
  ASSERT_TRUE(choice.has_value());
  EXPECT_EQ(choice->subject, 2u);
}

TEST(ChooseSubject, PicksTheCentralFaceUnderCentralThoughAnotherIsLarger) {
  // LFW-style portrait: the subject is centred; a larger face is cut at the edge.
  const std::vector<DetectedFace> faces = {face_at(0, 0, 140), face_at(260, 180, 120)};
  const auto central = choose_subject(faces, SubjectPolicy::kCentral, kWidth, kHeight, kRatio);
  ASSERT_TRUE(central.has_value());
  EXPECT_EQ(central->subject, 1u);
  // The same frame under kLargest takes the larger one, so the policy is what decided.
  const auto largest = choose_subject(faces, SubjectPolicy::kLargest, kWidth, kHeight, kRatio);
  ASSERT_TRUE(largest.has_value());
  EXPECT_EQ(largest->subject, 0u);
}

TEST(ChooseSubject, StillPrefersAMuchLargerFaceUnderCentral) {
  // Centrality discounts area, it does not override it: a tiny face at the centre does not beat
  // a large face slightly off-centre.
  const std::vector<DetectedFace> faces = {face_at(310, 230, 20), face_at(200, 120, 200)};
  const auto choice = choose_subject(faces, SubjectPolicy::kCentral, kWidth, kHeight, kRatio);
  ASSERT_TRUE(choice.has_value());
  EXPECT_EQ(choice->subject, 1u);
}

TEST(ChooseSubject, FlagsASecondFaceAtTheAreaRatioAsARival) {
  // Subject 100x100 = 10000; 50x50 = 2500 is exactly 25%.
  const std::vector<DetectedFace> faces = {face_at(100, 100, 100), face_at(400, 100, 50)};
  const auto choice = choose_subject(faces, SubjectPolicy::kLargest, kWidth, kHeight, kRatio);
  ASSERT_TRUE(choice.has_value());
  EXPECT_EQ(choice->subject, 0u);
  ASSERT_TRUE(choice->rival.has_value());
  EXPECT_EQ(*choice->rival, 1u);
}

TEST(ChooseSubject, IgnoresASmallFaceInTheBackground) {
  // 30x30 = 900 is 9% of the subject: a typical NUAA background face.
  const std::vector<DetectedFace> faces = {face_at(400, 50, 30, 0.99f), face_at(200, 150, 100)};
  const auto choice = choose_subject(faces, SubjectPolicy::kLargest, kWidth, kHeight, kRatio);
  ASSERT_TRUE(choice.has_value());
  EXPECT_EQ(choice->subject, 1u);
  EXPECT_FALSE(choice->rival.has_value());
}

TEST(ChooseSubject, NamesTheLargestRivalWhenThereAreSeveral) {
  const std::vector<DetectedFace> faces = {face_at(0, 0, 100), face_at(200, 0, 60),
                                           face_at(400, 0, 80), face_at(0, 300, 10)};
  const auto choice = choose_subject(faces, SubjectPolicy::kLargest, kWidth, kHeight, kRatio);
  ASSERT_TRUE(choice.has_value());
  EXPECT_EQ(choice->subject, 0u);
  ASSERT_TRUE(choice->rival.has_value());
  EXPECT_EQ(*choice->rival, 2u);
}

TEST(ChooseSubject, BreaksTiesDeterministicallyWhateverTheInputOrder) {
  // Two faces of equal size and score: the choice must be the same face in either order.
  const DetectedFace a = face_at(100, 100, 80);
  const DetectedFace b = face_at(400, 100, 80);
  for (SubjectPolicy policy : {SubjectPolicy::kLargest, SubjectPolicy::kCentral}) {
    const auto ab = choose_subject({a, b}, policy, kWidth, kHeight, kRatio);
    const auto ba = choose_subject({b, a}, policy, kWidth, kHeight, kRatio);
    ASSERT_TRUE(ab.has_value());
    ASSERT_TRUE(ba.has_value());
    const std::vector<DetectedFace> order_ab = {a, b};
    const std::vector<DetectedFace> order_ba = {b, a};
    EXPECT_EQ(order_ab[ab->subject].box.x, order_ba[ba->subject].box.x);
    // And the other face, of equal size, is the rival in both orders.
    ASSERT_TRUE(ab->rival.has_value());
    ASSERT_TRUE(ba->rival.has_value());
    EXPECT_NE(*ab->rival, ab->subject);
    // Repeating the call gives the same answer.
    const auto again = choose_subject({a, b}, policy, kWidth, kHeight, kRatio);
    EXPECT_EQ(again->subject, ab->subject);
  }
}

TEST(ChooseSubject, PrefersTheHigherScoreAmongFacesOfEqualSize) {
  const std::vector<DetectedFace> faces = {face_at(100, 100, 80, 0.7f),
                                           face_at(400, 100, 80, 0.9f)};
  const auto choice = choose_subject(faces, SubjectPolicy::kLargest, kWidth, kHeight, kRatio);
  ASSERT_TRUE(choice.has_value());
  EXPECT_EQ(choice->subject, 1u);
}

}  // namespace
}  // namespace facelogin::vision
