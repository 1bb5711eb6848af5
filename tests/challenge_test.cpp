// The active challenge (signals 2 and 3): its rules on synthetic poses, the parallax measure on
// exact geometry, and the evaluation on a real recording (live.webm) through the CLI.

#include <gtest/gtest.h>

#include <array>
#include <chrono>
#include <nlohmann/json.hpp>
#include <set>

#include "facelogin/challenge.h"
#include "facelogin/challenge_eval.h"
#include "test_data.h"

namespace facelogin {
namespace {

using std::chrono::milliseconds;
using A = ChallengeAction;
using V = ChallengeVerdict;

// A face of inter-eye distance 60 px centred at (320, 240), yawed by `yaw` degrees, pitched by
// `pitch`, scaled by `scale`: a 3-D head (nose tip 0.5 inter-eye distances in front of the eye
// and mouth plane) projected orthographically, so turning moves the nose off the plane's
// homography. `flat` projects the nose as if it lay in that plane (a photo).
ChallengeFrame face(float yaw, float pitch = 0.f, float scale = 1.f, bool flat = false,
                    bool same_person = true) {
  struct P3 {
    float x, y, z;
  };
  const std::array<P3, 5> model = {{{-30, -30, 0}, {30, -30, 0}, {0, 0, flat ? 0.f : -30.f},
                                    {-25, 30, 0}, {25, 30, 0}}};
  const float cy = std::cos(yaw * 3.14159265f / 180.f);
  const float sy = std::sin(yaw * 3.14159265f / 180.f);
  const float cp = std::cos(pitch * 3.14159265f / 180.f);
  const float sp = std::sin(pitch * 3.14159265f / 180.f);
  ChallengeFrame f;
  for (std::size_t i = 0; i < model.size(); ++i) {
    // Yaw > 0: the subject turns to their left, the nose goes to the image's right.
    const float x = model[i].x * cy - model[i].z * sy;
    const float z = model[i].x * sy + model[i].z * cy;
    const float y = model[i].y * cp + z * sp;  // pitch > 0: looking up, the nose goes up
    f.landmarks[i] = {320.f + scale * x, 240.f + scale * y};
  }
  f.pose = {yaw, pitch, 0.f};
  f.box = {320.f - 60.f * scale, 240.f - 70.f * scale, 120.f * scale, 140.f * scale};
  f.same_person = same_person;
  return f;
}

struct Player {
  ActiveChallenge challenge;
  int ms = 0;
  V feed(const ChallengeFrame& f, int times = 1) {
    V v = V::kPending;
    for (int i = 0; i < times; ++i) {
      v = challenge.add_frame(f, milliseconds(ms));
      ms += 100;
    }
    return v;
  }
};

Player make(std::vector<A> actions, ChallengeOptions options = {}) {
  auto c = ActiveChallenge::with_actions(std::move(actions), options);
  EXPECT_TRUE(c.has_value());
  return Player{std::move(*c)};
}

TEST(ChallengeTest, AnsweredInOrderPasses) {
  Player p = make({A::kTurnLeft, A::kLookUp, A::kMoveCloser, A::kTurnRight});
  EXPECT_EQ(p.challenge.prompt(), "Look straight at the camera.");
  EXPECT_FALSE(p.challenge.asked());
  EXPECT_EQ(p.feed(face(5, 3), 2), V::kPending);
  EXPECT_EQ(p.challenge.asked(), A::kTurnLeft);
  EXPECT_EQ(p.feed(face(25, 3), 2), V::kPending);
  EXPECT_EQ(p.challenge.steps_done(), 1);
  EXPECT_FALSE(p.challenge.asked());  // centre again first
  EXPECT_EQ(p.feed(face(6, 2), 2), V::kPending);
  EXPECT_EQ(p.challenge.asked(), A::kLookUp);
  EXPECT_EQ(p.feed(face(6, 18), 2), V::kPending);
  EXPECT_EQ(p.feed(face(5, 3), 2), V::kPending);
  EXPECT_EQ(p.challenge.asked(), A::kMoveCloser);
  EXPECT_EQ(p.feed(face(5, 3, 1.35f), 2), V::kPending);
  EXPECT_EQ(p.challenge.prompt(), "Move back to where you were and look straight at the camera.");
  EXPECT_EQ(p.feed(face(5, 3), 2), V::kPending);
  EXPECT_EQ(p.feed(face(-15, 3), 2), V::kPassed);
  ASSERT_TRUE(p.challenge.min_parallax_seen());
  EXPECT_GT(*p.challenge.min_parallax_seen(), 0.1f);
}

TEST(ChallengeTest, AnotherMoveHeldIsRefusedButABlipIsNot) {
  Player p = make({A::kTurnLeft, A::kTurnRight});
  p.feed(face(0), 2);
  EXPECT_EQ(p.feed(face(-20)), V::kPending);  // one frame the wrong way: a blip
  EXPECT_EQ(p.feed(face(0)), V::kPending);
  EXPECT_EQ(p.feed(face(-20), 2), V::kWrongMove);
  EXPECT_EQ(p.feed(face(20), 2), V::kWrongMove);  // decided: nothing changes it
  EXPECT_EQ(challenge_verdict_name(p.challenge.verdict()), "wrong_move");
}

TEST(ChallengeTest, OneCombinedMovementAnswersOnePromptOnly) {
  // Turned well left and a little up: that is "left". When "up" is asked next, the same
  // movement is the wrong one.
  Player p = make({A::kTurnLeft, A::kLookUp});
  p.feed(face(0), 2);
  EXPECT_EQ(p.feed(face(26, 12), 2), V::kPending);
  EXPECT_EQ(p.challenge.steps_done(), 1);
  p.feed(face(0), 2);
  EXPECT_EQ(p.challenge.asked(), A::kLookUp);
  EXPECT_EQ(p.feed(face(26, 12), 2), V::kWrongMove);
}

TEST(ChallengeTest, WrongFramesAddUpOverTheStepWhateverComesBetween) {
  Player p = make({A::kTurnLeft});
  p.feed(face(0), 2);
  EXPECT_EQ(p.feed(face(-20)), V::kPending);
  EXPECT_EQ(p.challenge.add_frame(std::nullopt, milliseconds(p.ms += 100)), V::kPending);
  EXPECT_EQ(p.feed(face(0)), V::kPending);
  EXPECT_EQ(p.feed(face(-20)), V::kWrongMove);
}

TEST(ChallengeTest, MovesBeforeThePromptAreNotCountedAndTheReferenceMustBeFrontal) {
  Player p = make({A::kTurnLeft});
  // Turned too far to be a reference: no prompt yet, and nothing counts.
  EXPECT_EQ(p.feed(face(28), 4), V::kPending);
  EXPECT_FALSE(p.challenge.asked());
  p.feed(face(2), 2);
  EXPECT_EQ(p.challenge.asked(), A::kTurnLeft);
  EXPECT_EQ(p.feed(face(20), 2), V::kPassed);
}

TEST(ChallengeTest, TooSlowAfterThePrompt) {
  ChallengeOptions o;
  o.step_time = milliseconds(1000);
  Player p = make({A::kLookUp}, o);
  p.feed(face(0), 2);
  EXPECT_EQ(p.feed(face(0), 10), V::kPending);
  EXPECT_EQ(p.feed(face(0), 2), V::kTooSlow);
}

TEST(ChallengeTest, OnlyTheClaimedPersonAnswers) {
  Player p = make({A::kTurnRight});
  p.feed(face(0), 2);
  // Another face (or no usable face) between the turned frames breaks the hold.
  EXPECT_EQ(p.feed(face(-20)), V::kPending);
  EXPECT_EQ(p.feed(face(-20, 0, 1, false, false)), V::kPending);
  EXPECT_EQ(p.challenge.add_frame(std::nullopt, milliseconds(p.ms += 100)), V::kPending);
  EXPECT_EQ(p.feed(face(-20)), V::kPending);
  EXPECT_EQ(p.feed(face(-20)), V::kPassed);
}

TEST(ChallengeTest, AFlatPictureThatTurnsIsRefused) {
  Player p = make({A::kTurnLeft});
  p.feed(face(0, 0, 1, true), 2);
  EXPECT_EQ(p.feed(face(25, 0, 1, true), 2), V::kFlat);
  EXPECT_EQ(challenge_verdict_name(V::kFlat), "flat_motion");
  // With the 3-D check off, the same frames pass (the rule is what refused them).
  ChallengeOptions off;
  off.min_parallax = 0.f;
  Player q = make({A::kTurnLeft}, off);
  q.feed(face(0, 0, 1, true), 2);
  EXPECT_EQ(q.feed(face(25, 0, 1, true), 2), V::kPassed);
}

TEST(ChallengeTest, NoseParallaxIsZeroForAPlaneAndLargeForAHead) {
  const ChallengeFrame a = face(0);
  EXPECT_NEAR(*nose_parallax(a.landmarks, face(0, 0, 1.3f).landmarks), 0.f, 1e-3f);
  EXPECT_LT(*nose_parallax(face(0, 0, 1, true).landmarks, face(30, 10, 1, true).landmarks), 1e-3f);
  EXPECT_GT(*nose_parallax(a.landmarks, face(15).landmarks), 0.1f);
  Landmarks5 degenerate{};
  EXPECT_FALSE(nose_parallax(degenerate, a.landmarks));
  EXPECT_FALSE(nose_parallax(a.landmarks, degenerate));
}

TEST(ChallengeTest, RandomSequencesAreValidAndCoverEveryAction) {
  std::set<A> seen_first;
  std::set<std::vector<A>> sequences;
  for (int i = 0; i < 400; ++i) {
    auto c = ActiveChallenge::random({});
    ASSERT_TRUE(c.has_value());
    const auto& actions = c->actions();
    ASSERT_EQ(actions.size(), 3u);
    EXPECT_NE(actions[0], actions[1]);
    EXPECT_NE(actions[1], actions[2]);
    seen_first.insert(actions[0]);
    sequences.insert(actions);
  }
  EXPECT_EQ(seen_first.size(), 4u);
  EXPECT_GT(sequences.size(), 30u);  // of the 36 possible
  ChallengeOptions bad;
  bad.steps = 0;
  EXPECT_FALSE(ActiveChallenge::random(bad).has_value());
  EXPECT_FALSE(ActiveChallenge::with_actions({}, {}).has_value());
}

TEST(ChallengeTest, ArrangedAttemptsNeedEveryAction) {
  std::vector<eval::ObservedFrame> frames;
  for (float yaw : {10.f, 11.f, 30.f, -10.f}) {
    frames.push_back({face(yaw), 0.9f});
  }
  auto pools = eval::arrange_pools(frames, {}, {});
  ASSERT_FALSE(pools.has_value());
  EXPECT_NE(pools.error().message().find("look_up"), std::string::npos);
}

// A real recording: the live person's frames arranged to answer challenges pass; the same
// recording replayed as the camera does not.
TEST(ChallengeTest, RealRecordingArrangedPassesAndItsReplayIsRefused) {
  FACELOGIN_REQUIRE_DATA(data);
  const auto models = testing::model_dir();
  if (!models) {
    GTEST_SKIP() << "no models";
  }
  const auto live = data / "media/apfol_liveness/live.webm";
  const std::string command = testing::cli_path().string() + " --json --models " +
                              models->string() + " eval challenge --attempts 300 --live " +
                              live.string();
  FILE* pipe = popen(command.c_str(), "r");
  ASSERT_NE(pipe, nullptr);
  std::string out;
  std::array<char, 4096> buf{};
  while (std::size_t n = fread(buf.data(), 1, buf.size(), pipe)) {
    out.append(buf.data(), n);
  }
  ASSERT_EQ(pclose(pipe), 0) << out;
  const auto doc = nlohmann::json::parse(out);
  EXPECT_EQ(doc["live_arranged"]["attempts"], 300);
  EXPECT_GE(doc["live_arranged"]["pass_rate"].get<double>(), 0.98) << out;
  EXPECT_LE(doc["replays"][0]["pass_rate"].get<double>(), 0.02) << out;
}

}  // namespace
}  // namespace facelogin
