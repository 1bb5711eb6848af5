// An enrolment over a stream (include/facelogin/enrollment_session.h) on whole NUAA recordings:
// the readiness rule, the liveness check and the decision, with the real engine, liveness models
// and store.

#include "facelogin/enrollment_session.h"

#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <string>
#include <utility>
#include <vector>

#include "facelogin/image.h"
#include "facelogin/store.h"
#include "nuaa_fixture.h"
#include "test_data.h"

namespace facelogin {
namespace {

namespace fs = std::filesystem;
using std::chrono::milliseconds;

class EnrollmentSessionTest : public testing::NuaaServiceTest {
 protected:
  // Plays a recording into `session` until it is ready or refused (or the recording ends);
  // returns the feedback of the last frame played.
  EnrollmentFeedback play(EnrollmentSession& session, const std::string& folder,
                          const std::string& prefix) {
    const auto files = testing::recording_frames(nuaa_ / folder, prefix);
    EXPECT_GE(files.size(), 20u) << folder << "/" << prefix;
    EnrollmentFeedback last;
    for (const auto& [number, path] : files) {
      auto image = load_image_file(path);
      EXPECT_TRUE(image.has_value()) << path;
      auto feedback = session.add_frame(*service_, scorer_.get(),
                                        {path.filename().string(), std::move(*image)},
                                        milliseconds(number * 1000 / 30));
      EXPECT_TRUE(feedback.has_value()) << feedback.error().to_string();
      if (!feedback) {
        break;
      }
      EXPECT_FALSE(feedback->advice.empty());
      EXPECT_LE(feedback->progress, 1.0);
      last = std::move(*feedback);
      if (last.ready || last.state == EnrollmentState::kRejected) {
        break;
      }
      EXPECT_LT(last.progress, 1.0);
    }
    return last;
  }

};

TEST_F(EnrollmentSessionTest, ALivePersonBecomesReadyAndIsStoredOnce) {
  EnrollmentPolicy policy;
  policy.min_pose_spread = 2.f;  // NUAA sessions hold the head nearly still
  auto session = EnrollmentSession::begin("alice", false, policy);
  ASSERT_TRUE(session.has_value()) << session.error().to_string();
  EXPECT_FALSE(session->ready());
  const EnrollmentFeedback last = play(*session, "ClientRaw/0001", "0001_00_00_02_");
  ASSERT_TRUE(last.ready) << last.advice;
  EXPECT_EQ(last.progress, 1.0);
  EXPECT_EQ(last.advice, "Done: you can finish.");
  ASSERT_TRUE(last.liveness.has_value());
  EXPECT_EQ(*last.liveness, LivenessVerdict::kLive);
  EXPECT_GE(last.good_frames, 5u);
  EXPECT_GE(last.pose_spread, 2.f);
  ASSERT_TRUE(session->liveness_score().has_value());
  EXPECT_GE(*session->liveness_score(), kDefaultLiveThreshold);

  auto user = session->finish(*service_);
  ASSERT_TRUE(user.has_value()) << user.error().to_string();
  EXPECT_EQ(user->name, "alice");
  EXPECT_EQ(user->template_count, 5u);  // frames_needed of the faces seen, not all of them
  EXPECT_TRUE(session->finished());
  auto again = session->finish(*service_);
  ASSERT_FALSE(again.has_value());
  EXPECT_EQ(again.error().code(), ErrorCode::kNotFound);
  EXPECT_EQ(store_->get_user("alice")->template_count, 5u);  // stored once
}

TEST_F(EnrollmentSessionTest, APrintedPhotoIsRefusedAndNothingIsStored) {
  auto session = EnrollmentSession::begin("mallory", false, {});
  ASSERT_TRUE(session.has_value());
  const EnrollmentFeedback last = play(*session, "ImposterRaw/0001", "0001_00_01_02_");
  EXPECT_EQ(last.state, EnrollmentState::kRejected);
  EXPECT_EQ(last.reason, "not_live");
  EXPECT_FALSE(last.ready);
  EXPECT_TRUE(session->rejected());
  auto user = session->finish(*service_);
  ASSERT_FALSE(user.has_value());
  EXPECT_EQ(user.error().code(), ErrorCode::kInvalidArgument);
  EXPECT_EQ(store_->get_user("mallory").error().code(), ErrorCode::kNotFound);
}

TEST_F(EnrollmentSessionTest, TooLittlePoseVarietyIsNeverReadyAndSaysToTurnTheHead) {
  EnrollmentPolicy policy;
  policy.min_pose_spread = 90.f;
  policy.live_check = false;
  auto session = EnrollmentSession::begin("alice", false, policy);
  ASSERT_TRUE(session.has_value());
  const EnrollmentFeedback last = play(*session, "ClientRaw/0001", "0001_00_00_02_");
  EXPECT_FALSE(last.ready);
  EXPECT_FALSE(last.liveness.has_value());  // no liveness check asked for
  EXPECT_GE(last.good_frames, 5u);
  EXPECT_NE(last.advice.find("Turn your head"), std::string::npos) << last.advice;
  EXPECT_LT(last.progress, 1.0);
  auto user = session->finish(*service_);
  ASSERT_FALSE(user.has_value());
  EXPECT_EQ(user.error().code(), ErrorCode::kInvalidArgument);
  EXPECT_FALSE(session->finished());  // a refused finish can be tried again later
}

TEST_F(EnrollmentSessionTest, ALivenessCheckWithoutAScorerIsRefused) {
  auto session = EnrollmentSession::begin("alice", false, {});
  ASSERT_TRUE(session.has_value());
  const auto files = testing::recording_frames(nuaa_ / "ClientRaw/0001", "0001_00_00_02_");
  ASSERT_FALSE(files.empty());
  auto image = load_image_file(files.front().second);
  ASSERT_TRUE(image.has_value());
  auto feedback = session->add_frame(*service_, nullptr, {"frame", std::move(*image)},
                                     milliseconds(0));
  ASSERT_FALSE(feedback.has_value());
  EXPECT_EQ(feedback.error().code(), ErrorCode::kInvalidArgument);
  EXPECT_EQ(session->good_frames(), 0u);
}

TEST_F(EnrollmentSessionTest, AddingFacesToAnotherPersonsAccountIsRefused) {
  EnrollmentPolicy policy;
  policy.min_pose_spread = 0.f;
  policy.live_check = false;
  auto alice = EnrollmentSession::begin("alice", false, policy);
  ASSERT_TRUE(alice.has_value());
  ASSERT_TRUE(play(*alice, "ClientRaw/0001", "0001_00_00_02_").ready);
  ASSERT_TRUE(alice->finish(*service_).has_value());
  // Subject 0005's faces offered as more faces of alice.
  auto more = EnrollmentSession::begin("alice", true, policy);
  ASSERT_TRUE(more.has_value());
  ASSERT_TRUE(play(*more, "ClientRaw/0005", "0005_00_00_01_").ready);
  auto user = more->finish(*service_);
  ASSERT_FALSE(user.has_value());
  EXPECT_EQ(user.error().code(), ErrorCode::kDifferentPeople) << user.error().to_string();
  EXPECT_EQ(store_->get_user("alice")->template_count, 5u);
}

TEST(EnrollmentSessionRules, BadPoliciesAreRefused) {
  EnrollmentPolicy none;
  none.frames_needed = 0;
  EXPECT_EQ(EnrollmentSession::begin("a", false, none).error().code(),
            ErrorCode::kInvalidArgument);
  EnrollmentPolicy spread;
  spread.min_pose_spread = -1.f;
  EXPECT_EQ(EnrollmentSession::begin("a", false, spread).error().code(),
            ErrorCode::kInvalidArgument);
  EnrollmentPolicy room;
  room.max_faces = 2;
  EXPECT_EQ(EnrollmentSession::begin("a", false, room).error().code(),
            ErrorCode::kInvalidArgument);
}

}  // namespace
}  // namespace facelogin
