// A login attempt over a stream (include/facelogin/login_attempt.h) on whole NUAA recordings:
// recognition and passive liveness together, with the real engine, liveness models and store.

#include "facelogin/login_attempt.h"

#include <gtest/gtest.h>

#include <algorithm>
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

class LoginAttemptTest : public testing::NuaaServiceTest {
 protected:
  void SetUp() override {
    NuaaServiceTest::SetUp();
    if (IsSkipped() || HasFatalFailure()) {
      return;
    }
    // Alice is NUAA subject 0001, enrolled from her second session.
    std::vector<LabeledImage> enrol;
    for (const char* name : {"0001_00_00_02_105.jpg", "0001_00_00_02_123.jpg"}) {
      auto image = load_image_file(nuaa_ / "ClientRaw/0001" / name);
      ASSERT_TRUE(image.has_value()) << name;
      enrol.push_back({name, std::move(*image)});
    }
    auto enrolled = service_->enroll("alice", enrol, false);
    ASSERT_TRUE(enrolled.has_value()) << enrolled.error().to_string();
  }

  // Plays a recording (frames "<prefix><n>.jpg" of `folder`, n = frame number at 30 fps) into a
  // new attempt until it is decided; returns the attempt.
  LoginAttempt play(const std::string& folder, const std::string& prefix, LoginPolicy policy = {}) {
    const auto files = testing::recording_frames(nuaa_ / folder, prefix);
    EXPECT_GE(files.size(), 20u) << folder << "/" << prefix;
    auto attempt = LoginAttempt::begin(*service_, scorer_.get(), "alice", policy);
    EXPECT_TRUE(attempt.has_value());
    for (const auto& [number, path] : files) {
      auto image = load_image_file(path);
      EXPECT_TRUE(image.has_value()) << path;
      auto feedback = attempt->add_frame({path.filename().string(), std::move(*image)},
                                         milliseconds(number * 1000 / 30));
      EXPECT_TRUE(feedback.has_value()) << feedback.error().to_string();
      if (!feedback || feedback->state != AttemptState::kPending) {
        break;
      }
      EXPECT_FALSE(feedback->advice.empty());
    }
    return std::move(*attempt);
  }

};

TEST_F(LoginAttemptTest, AliceLiveIsAccepted) {
  const LoginAttempt a = play("ClientRaw/0001", "0001_00_00_01_");
  EXPECT_EQ(a.state(), AttemptState::kAccepted) << a.reason();
  EXPECT_EQ(a.liveness().verdict(), LivenessVerdict::kLive);
  EXPECT_GE(a.best_score(), service_->threshold());
}

TEST_F(LoginAttemptTest, APrintedPhotoOfAliceIsRefusedAsNotLive) {
  const LoginAttempt a = play("ImposterRaw/0001", "0001_00_01_02_");
  EXPECT_EQ(a.state(), AttemptState::kRejected);
  EXPECT_EQ(a.reason(), "not_live");
}

TEST_F(LoginAttemptTest, SomeoneElseIsRefusedAsNoMatch) {
  const LoginAttempt a = play("ClientRaw/0005", "0005_00_00_01_");
  EXPECT_EQ(a.state(), AttemptState::kRejected);
  EXPECT_EQ(a.reason(), "no_match");
}

TEST_F(LoginAttemptTest, WithLivenessOffThePrintPassesWhichIsWhyItIsNotTheDefault) {
  LoginPolicy off;
  off.liveness.policy = LivenessPolicy::kOff;
  const LoginAttempt a = play("ImposterRaw/0001", "0001_00_01_02_", off);
  // Documents the risk of policy "off": the print matches alice.
  EXPECT_EQ(a.state(), AttemptState::kAccepted) << a.reason();
}

// The real scorer with its scores capped: live evidence that is not strong (0.46 <= mean < 0.9).
class CappedScorer final : public LivenessScorer {
 public:
  CappedScorer(LivenessScorer& inner, float cap) : inner_(&inner), cap_(cap) {}
  Result<LivenessScore> score(const Image& frame, const Box& box) override {
    auto s = inner_->score(frame, box);
    if (s) {
      s->live = std::min(s->live, cap_);
    }
    return s;
  }

 private:
  LivenessScorer* inner_;
  float cap_;
};

TEST_F(LoginAttemptTest, AdaptiveIsTheDefaultAndAcceptsStrongPassiveEvidenceAlone) {
  EXPECT_EQ(LoginPolicy{}.liveness.policy, LivenessPolicy::kAdaptive);
  const LoginAttempt a = play("ClientRaw/0001", "0001_00_00_01_");
  EXPECT_EQ(a.state(), AttemptState::kAccepted) << a.reason();
  EXPECT_TRUE(a.liveness().strong());
  EXPECT_EQ(a.challenge(), nullptr);
  EXPECT_TRUE(a.step_up().empty());
}

TEST_F(LoginAttemptTest, WeakPassiveEvidenceStepsUpToTheChallengeInTheSameAttempt) {
  CappedScorer capped(*scorer_, 0.7f);
  const auto files = testing::recording_frames(nuaa_ / "ClientRaw/0001", "0001_00_00_01_");
  ASSERT_GE(files.size(), 20u);
  for (LivenessPolicy policy : {LivenessPolicy::kPassive, LivenessPolicy::kAdaptive}) {
    LoginPolicy p;
    p.liveness.policy = policy;
    auto attempt = LoginAttempt::begin(*service_, &capped, "alice", p);
    ASSERT_TRUE(attempt.has_value());
    bool prompted = false;
    for (const auto& [number, path] : files) {
      auto image = load_image_file(path);
      ASSERT_TRUE(image.has_value()) << path;
      auto feedback = attempt->add_frame({path.filename().string(), std::move(*image)},
                                         milliseconds(number * 1000 / 30));
      ASSERT_TRUE(feedback.has_value()) << feedback.error().to_string();
      if (feedback->challenge_steps > 0 && feedback->state == AttemptState::kPending) {
        prompted = true;
        EXPECT_EQ(feedback->challenge_steps, 3);
        EXPECT_FALSE(feedback->prompt.empty());
        EXPECT_EQ(feedback->advice, feedback->prompt);
      }
      if (feedback->state != AttemptState::kPending) {
        break;
      }
    }
    EXPECT_EQ(attempt->liveness().verdict(), LivenessVerdict::kLive);
    EXPECT_FALSE(attempt->liveness().strong());
    if (policy == LivenessPolicy::kPassive) {
      // Passive alone lets this evidence through: what the adaptive policy is for.
      EXPECT_EQ(attempt->state(), AttemptState::kAccepted) << attempt->reason();
      EXPECT_FALSE(prompted);
    } else {
      // The recording cannot answer the prompts: asked, and never accepted.
      EXPECT_TRUE(prompted);
      EXPECT_NE(attempt->state(), AttemptState::kAccepted);
      ASSERT_NE(attempt->challenge(), nullptr);
      EXPECT_EQ(attempt->step_up(), "weak_passive");
    }
  }
}

TEST_F(LoginAttemptTest, ACallersReasonStepsUpEvenStrongEvidence) {
  LoginPolicy p;
  p.step_up = "administrator";
  const LoginAttempt a = play("ClientRaw/0001", "0001_00_00_01_", p);
  EXPECT_TRUE(a.liveness().strong());
  EXPECT_NE(a.state(), AttemptState::kAccepted);
  ASSERT_NE(a.challenge(), nullptr);
  EXPECT_EQ(a.step_up(), "administrator");
  // The reason changes nothing under the other policies.
  p.liveness.policy = LivenessPolicy::kPassive;
  const LoginAttempt passive = play("ClientRaw/0001", "0001_00_00_01_", p);
  EXPECT_EQ(passive.state(), AttemptState::kAccepted) << passive.reason();
  EXPECT_TRUE(passive.step_up().empty());
}

TEST_F(LoginAttemptTest, RefusesAPassivePolicyWithoutAScorerAndBadCounts) {
  auto no_scorer = LoginAttempt::begin(*service_, nullptr, "alice");
  ASSERT_FALSE(no_scorer.has_value());
  EXPECT_EQ(no_scorer.error().code(), ErrorCode::kInvalidArgument);
  LoginPolicy bad;
  bad.matching_frames_needed = 0;
  EXPECT_FALSE(LoginAttempt::begin(*service_, scorer_.get(), "alice", bad).has_value());
}

TEST_F(LoginAttemptTest, AnUnknownUserIsReportedByTheFirstFrame) {
  auto attempt = LoginAttempt::begin(*service_, scorer_.get(), "nobody");
  ASSERT_TRUE(attempt.has_value());
  auto image = load_image_file(nuaa_ / "ClientRaw/0001/0001_00_00_01_0.jpg");
  ASSERT_TRUE(image.has_value());
  auto feedback = attempt->add_frame({"f", std::move(*image)}, milliseconds(0));
  ASSERT_FALSE(feedback.has_value());
  EXPECT_EQ(feedback.error().code(), ErrorCode::kNotFound);
}

}  // namespace
}  // namespace facelogin
