// Tests for enrolment, verification and identification (include/facelogin/face_service.h) with
// the real engine and a real encrypted SQLite store, on NUAA webcam frames of three people.
// Skipped, with the reason, where the models or ../shared are absent.

#include "facelogin/face_service.h"

#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <string>
#include <vector>

#include "facelogin/image.h"
#include "facelogin/models.h"
#include "facelogin/store.h"
#include "synthetic_faces.h"
#include "test_data.h"
#include "test_engine.h"

namespace facelogin {
namespace {

namespace fs = std::filesystem;

// Webcam frames (640x480) of three NUAA subjects; probes come from another session than the
// enrolment frames where the subject has one.
constexpr const char* kAliceEnrol[] = {"0005/0005_00_00_01_0.jpg", "0005/0005_00_00_01_7.jpg",
                                       "0005/0005_00_00_01_12.jpg"};
constexpr const char* kAliceProbe = "0005/0005_00_00_02_16.jpg";
constexpr const char* kAliceOther = "0005/0005_00_00_02_26.jpg";
constexpr const char* kBobEnrol[] = {"0007/0007_01_00_01_280.jpg", "0007/0007_01_00_01_375.jpg"};
constexpr const char* kBobProbe = "0007/0007_01_00_02_2.jpg";
constexpr const char* kCarolEnrol[] = {"0003/0003_01_00_01_0.jpg", "0003/0003_01_00_01_27.jpg"};

// A fresh store in a temporary directory and a service over the shared engine.
class FaceServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    FACELOGIN_REQUIRE_DATA(data);
    FACELOGIN_REQUIRE_ENGINE(engine);
    nuaa_ = data / "nuaa/ClientRaw";
    if (!fs::is_directory(nuaa_)) {
      GTEST_SKIP() << nuaa_ << " not found: skipping real-face test";
    }
    dir_ = testing::make_temp_dir("facelogin-service");
    SqliteStoreOptions options;
    options.key = std::string(32, '\x5a');
    auto store = open_sqlite_store(dir_ / "facelogin.db", options);
    ASSERT_TRUE(store.has_value()) << store.error().to_string();
    store_ = std::move(*store);
    auto worker = engine->make_worker();
    ASSERT_TRUE(worker.has_value()) << worker.error().to_string();
    service_ = std::make_unique<FaceService>(engine, std::move(*worker), *store_);
  }

  void TearDown() override {
    service_.reset();
    store_.reset();
    if (!dir_.empty()) {
      std::error_code ec;
      fs::remove_all(dir_, ec);
    }
  }

  LabeledImage frame(const std::string& name) const {
    auto image = load_image_file(nuaa_ / name);
    EXPECT_TRUE(image.has_value()) << name << ": " << image.error().to_string();
    return {name, image ? std::move(*image) : Image{}};
  }

  template <std::size_t N>
  std::vector<LabeledImage> frames(const char* const (&names)[N]) const {
    std::vector<LabeledImage> out;
    for (const char* n : names) {
      out.push_back(frame(n));
    }
    return out;
  }

  static LabeledImage blank(const std::string& source) {
    Image image;
    image.width = 640;
    image.height = 480;
    image.bgr.assign(640 * 480 * 3, 90);
    return {source, std::move(image)};
  }

  // "name:templates" of every user, for before/after comparisons.
  std::vector<std::string> users() const {
    auto list = store_->list_users();
    EXPECT_TRUE(list.has_value()) << list.error().to_string();
    std::vector<std::string> out;
    if (list) {
      for (const auto& u : *list) {
        out.push_back(u.name + ":" + std::to_string(u.template_count));
      }
    }
    return out;
  }

  // The decisions below only mean something at a calibrated threshold (0 accepts anyone).
  bool calibrated() const { return service_->threshold() > 0.3f; }

  void enroll_or_fail(const std::string& name, const std::vector<LabeledImage>& images) {
    auto r = service_->enroll(name, images, false);
    ASSERT_TRUE(r.has_value()) << name << ": " << r.error().to_string();
  }

  fs::path nuaa_;
  fs::path dir_;
  std::unique_ptr<Store> store_;
  std::unique_ptr<FaceService> service_;
};

#define REQUIRE_CALIBRATED()                                                             \
  ASSERT_TRUE(calibrated()) << "the recogniser's threshold is " << service_->threshold() \
                            << ": not calibrated (see src/vision/model_catalog.cpp)"

TEST_F(FaceServiceTest, EnrolsAUserFromSeveralImages) {
  auto r = service_->enroll("alice", frames(kAliceEnrol), false);
  ASSERT_TRUE(r.has_value()) << r.error().to_string();
  EXPECT_EQ(r->user.name, "alice");
  EXPECT_EQ(r->user.template_count, 3);
  ASSERT_EQ(r->images.size(), 3u);
  for (const auto& report : r->images) {
    EXPECT_EQ(report.outcome, FrameOutcome::kOk) << report.source << ": " << report.message;
    EXPECT_TRUE(report.box.has_value());
    EXPECT_TRUE(report.quality.ok()) << report.source;
  }
  EXPECT_EQ(users(), std::vector<std::string>{"alice:3"});
  auto stored = store_->user_templates("alice");
  ASSERT_TRUE(stored.has_value()) << stored.error().to_string();
  ASSERT_EQ(stored->size(), 3u);
  EXPECT_EQ(stored->front().face.model_id, testing::shared_engine().engine->recognizer().id);
}

TEST_F(FaceServiceTest, VerifiesAUserWithAnotherImageOfThem) {
  REQUIRE_CALIBRATED();
  enroll_or_fail("alice", frames(kAliceEnrol));
  auto r = service_->verify("alice", frame(kAliceProbe));
  ASSERT_TRUE(r.has_value()) << r.error().to_string();
  EXPECT_TRUE(r->decision.match) << "score " << r->decision.score << " threshold "
                                 << r->decision.threshold;
  EXPECT_GE(r->decision.score, r->decision.threshold);
  EXPECT_EQ(r->decision.threshold, service_->threshold());
  EXPECT_EQ(r->decision.templates_compared, 3);
  EXPECT_EQ(r->image.outcome, FrameOutcome::kOk);
}

TEST_F(FaceServiceTest, RejectsSomeoneElsesFace) {
  REQUIRE_CALIBRATED();
  enroll_or_fail("alice", frames(kAliceEnrol));
  enroll_or_fail("bob", frames(kBobEnrol));
  auto r = service_->verify("alice", frame(kBobProbe));
  ASSERT_TRUE(r.has_value()) << r.error().to_string();
  EXPECT_FALSE(r->decision.match) << "score " << r->decision.score;
  EXPECT_LT(r->decision.score, r->decision.threshold);
  // And bob is still bob.
  auto bob = service_->verify("bob", frame(kBobProbe));
  ASSERT_TRUE(bob.has_value()) << bob.error().to_string();
  EXPECT_TRUE(bob->decision.match) << "score " << bob->decision.score;
}

TEST_F(FaceServiceTest, IdentifiesTheRightUserFirst) {
  REQUIRE_CALIBRATED();
  enroll_or_fail("alice", frames(kAliceEnrol));
  enroll_or_fail("bob", frames(kBobEnrol));
  enroll_or_fail("carol", frames(kCarolEnrol));

  auto r = service_->identify(frame(kAliceProbe), 3);
  ASSERT_TRUE(r.has_value()) << r.error().to_string();
  ASSERT_EQ(r->candidates.size(), 3u);
  EXPECT_EQ(r->candidates[0].user, "alice");
  EXPECT_TRUE(r->match);
  EXPECT_EQ(r->threshold, service_->threshold());
  EXPECT_GE(r->candidates[0].score, r->threshold);
  EXPECT_GE(r->candidates[0].score, r->candidates[1].score);
  EXPECT_GE(r->candidates[1].score, r->candidates[2].score);
  EXPECT_LT(r->candidates[1].score, r->threshold) << r->candidates[1].user;

  auto bob = service_->identify(frame(kBobProbe), 1);
  ASSERT_TRUE(bob.has_value()) << bob.error().to_string();
  ASSERT_EQ(bob->candidates.size(), 1u);
  EXPECT_EQ(bob->candidates[0].user, "bob");
  EXPECT_TRUE(bob->match);
}

// Early decision (ServiceOptions::early_decision, on by default) against a service that always
// uses the full template: the same decisions, scores within the recogniser's margin, and the
// first pass deciding only outside it.
TEST_F(FaceServiceTest, EarlyDecisionsAreTheFullTemplatesDecisions) {
  REQUIRE_CALIBRATED();
  const float margin = service_->threshold() > 0.f
                           ? testing::shared_engine().engine->recognizer().first_pass_margin
                           : 0.f;
  if (margin <= 0.f) {
    GTEST_SKIP() << "the recogniser averages no mirror image: no early decision";
  }
  enroll_or_fail("alice", frames(kAliceEnrol));
  enroll_or_fail("bob", frames(kBobEnrol));
  enroll_or_fail("carol", frames(kCarolEnrol));
  auto worker = testing::shared_engine().engine->make_worker();
  ASSERT_TRUE(worker.has_value()) << worker.error().to_string();
  ServiceOptions exact_options;
  exact_options.early_decision = false;
  FaceService exact(testing::shared_engine().engine, std::move(*worker), *store_, exact_options);

  int first_pass = 0;
  for (const char* probe : {kAliceProbe, kAliceOther, kBobProbe}) {
    for (const char* user : {"alice", "bob", "carol"}) {
      SCOPED_TRACE(std::string(probe) + " as " + user);
      auto early = service_->verify_frame(user, frame(probe));
      auto full = exact.verify_frame(user, frame(probe));
      ASSERT_TRUE(early.has_value()) << early.error().to_string();
      ASSERT_TRUE(full.has_value()) << full.error().to_string();
      ASSERT_EQ(full->image.outcome, FrameOutcome::kOk) << full->image.message;
      EXPECT_FALSE(full->image.first_pass);
      EXPECT_EQ(early->decision.match, full->decision.match);
      EXPECT_NEAR(early->decision.score, full->decision.score, margin);
      if (early->image.first_pass) {
        ++first_pass;
        EXPECT_GE(std::abs(early->decision.score - service_->threshold()), margin);
      } else {
        EXPECT_EQ(early->decision.score, full->decision.score);
      }
    }
    auto early = service_->identify_frame(frame(probe), 2);
    auto full = exact.identify_frame(frame(probe), 2);
    ASSERT_TRUE(early.has_value() && full.has_value());
    ASSERT_FALSE(early->candidates.empty());
    ASSERT_FALSE(full->candidates.empty());
    EXPECT_EQ(early->match, full->match) << probe;
    EXPECT_EQ(early->candidates.front().user, full->candidates.front().user) << probe;
    EXPECT_LE(early->candidates.size(), 2u);
    first_pass += early->image.first_pass ? 1 : 0;
  }
  // Someone else's face is far below the threshold: those comparisons end on the first pass.
  EXPECT_GE(first_pass, 4);
}

TEST_F(FaceServiceTest, AProbeFrameOfAnUnknownAccountCostsWhatARejectionCosts) {
  auto report = service_->probe_frame(frame(kAliceProbe));
  ASSERT_TRUE(report.has_value()) << report.error().to_string();
  EXPECT_EQ(report->outcome, FrameOutcome::kOk) << report->message;
  EXPECT_TRUE(report->box.has_value());
  // Like a clear rejection: the first pass only, where the recogniser has one.
  EXPECT_EQ(report->first_pass,
            testing::shared_engine().engine->recognizer().first_pass_margin > 0.f);
  // A frame without a face is a report too, not an error, and nothing is stored.
  auto blank_report = service_->probe_frame(blank("blank"));
  ASSERT_TRUE(blank_report.has_value()) << blank_report.error().to_string();
  EXPECT_EQ(blank_report->outcome, FrameOutcome::kNoFace);
  EXPECT_TRUE(users().empty());
}

TEST_F(FaceServiceTest, NeverEnrolsAFirstPassTemplate) {
  auto worker = testing::shared_engine().engine->make_worker();
  ASSERT_TRUE(worker.has_value());
  AnalyzeOptions options;
  options.decided_by_first_pass = [](const FaceTemplate&) { return true; };
  auto analysis = (*worker)->analyze(frame(kAliceProbe).image, options);
  ASSERT_TRUE(analysis.has_value() && analysis->face.has_value());
  if (!analysis->face->first_pass) {
    GTEST_SKIP() << "the recogniser has no early decision";
  }
  auto r = service_->enroll_templates("alice", {*analysis->face}, {"probe"}, false);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code(), ErrorCode::kInvalidArgument);
  EXPECT_TRUE(users().empty());
}

TEST_F(FaceServiceTest, AnAccountOfAnotherRecogniserFailsBeforeTheFrameIsAnalysed) {
  FaceTemplate other;
  other.model_id = "some-other-recogniser";
  other.embedding.assign(128, 0.f);
  other.embedding[0] = 1.f;
  ASSERT_TRUE(store_->create_user("olga", {other}).has_value());
  // Even a frame without a face gets the mismatch: nothing was analysed.
  auto r = service_->verify_frame("olga", blank("blank"));
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code(), ErrorCode::kModelMismatch);
  EXPECT_NE(r.error().message().find("re-enrol"), std::string::npos) << r.error().message();
}

// After the default recogniser changed, a user re-enrolled with the new one (enroll --add) keeps
// the old recogniser's templates: they are left out of the comparison, not a reason to refuse.
TEST_F(FaceServiceTest, AUserReEnrolledWithThisRecogniserIsComparedOnItsTemplatesOnly) {
  REQUIRE_CALIBRATED();
  FaceTemplate old;
  old.model_id = "some-other-recogniser";
  old.embedding.assign(128, 0.f);
  old.embedding[0] = 1.f;
  ASSERT_TRUE(store_->create_user("alice", {old}).has_value());
  auto before = service_->verify_frame("alice", frame(kAliceProbe));
  ASSERT_FALSE(before.has_value());
  EXPECT_EQ(before.error().code(), ErrorCode::kModelMismatch);

  auto added = service_->enroll("alice", frames(kAliceEnrol), true);
  ASSERT_TRUE(added.has_value()) << added.error().to_string();
  auto after = service_->verify("alice", frame(kAliceProbe));
  ASSERT_TRUE(after.has_value()) << after.error().to_string();
  EXPECT_TRUE(after->decision.match);
  auto stranger = service_->verify("alice", frame(kBobProbe));
  ASSERT_TRUE(stranger.has_value()) << stranger.error().to_string();
  EXPECT_FALSE(stranger->decision.match);
}

TEST_F(FaceServiceTest, IdentifiesNobodyInAnEmptyStore) {
  auto r = service_->identify(frame(kAliceProbe), 3);
  ASSERT_TRUE(r.has_value()) << r.error().to_string();
  EXPECT_TRUE(r->candidates.empty());
  EXPECT_FALSE(r->match);
}

TEST_F(FaceServiceTest, RefusesToEnrolAFaceAlreadyEnrolledUnderAnotherUser) {
  REQUIRE_CALIBRATED();
  enroll_or_fail("alice", frames(kAliceEnrol));
  const auto before = users();
  // Bob's own face first, then alice's: the whole enrolment fails, bob is not created.
  auto r = service_->enroll("bob", {frame(kBobEnrol[0]), frame(kAliceOther)}, false);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code(), ErrorCode::kDuplicateFace);
  EXPECT_NE(r.error().message().find(kAliceOther), std::string::npos)
      << "names the offending image: " << r.error().message();
  EXPECT_EQ(r.error().message().find("alice"), std::string::npos)
      << "must not reveal whose face it is: " << r.error().message();
  EXPECT_EQ(users(), before);
  EXPECT_FALSE(store_->get_user("bob").has_value());
}

TEST_F(FaceServiceTest, RefusesToEnrolADisabledUsersFaceUnderANewName) {
  // A disabled account must not be escaped by enrolling the same face again under another name.
  REQUIRE_CALIBRATED();
  enroll_or_fail("alice", frames(kAliceEnrol));
  ASSERT_TRUE(store_->set_disabled("alice", true).ok());
  const auto before = users();
  auto r = service_->enroll("alice2", {frame(kAliceOther)}, false);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code(), ErrorCode::kDuplicateFace);
  EXPECT_EQ(users(), before);
}

TEST_F(FaceServiceTest, AddsMoreImagesOfTheSameUserWithoutCallingThemDuplicates) {
  REQUIRE_CALIBRATED();
  enroll_or_fail("alice", {frame(kAliceEnrol[0])});
  auto r = service_->enroll("alice", {frame(kAliceOther)}, true);
  ASSERT_TRUE(r.has_value()) << r.error().to_string();
  EXPECT_EQ(r->user.template_count, 2);
  EXPECT_EQ(users(), std::vector<std::string>{"alice:2"});
}

TEST_F(FaceServiceTest, RefusesAnEnrolmentOfTwoDifferentPeople) {
  REQUIRE_CALIBRATED();
  auto r = service_->enroll("carol", {frame(kCarolEnrol[0]), frame(kBobEnrol[0])}, false);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code(), ErrorCode::kDifferentPeople);
  EXPECT_NE(r.error().message().find(kBobEnrol[0]), std::string::npos) << r.error().message();
  EXPECT_TRUE(users().empty());
}

TEST_F(FaceServiceTest, RefusesToAddSomeoneElsesFaceToAUser) {
  // Bob is not enrolled, so this is not a duplicate: his face simply is not alice's.
  REQUIRE_CALIBRATED();
  enroll_or_fail("alice", frames(kAliceEnrol));
  auto r = service_->enroll("alice", {frame(kBobProbe)}, true);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code(), ErrorCode::kDifferentPeople);
  EXPECT_EQ(users(), std::vector<std::string>{"alice:3"});
}

TEST_F(FaceServiceTest, SamePersonThresholdIsBelowTheDecisionThreshold) {
  REQUIRE_CALIBRATED();
  EXPECT_GT(service_->same_person_threshold(), 0.3f);
  EXPECT_LE(service_->same_person_threshold(), service_->threshold());
}

TEST_F(FaceServiceTest, RefusesATakenName) {
  REQUIRE_CALIBRATED();
  enroll_or_fail("alice", frames(kAliceEnrol));
  auto r = service_->enroll("alice", frames(kBobEnrol), false);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code(), ErrorCode::kAlreadyExists);
  EXPECT_EQ(users(), std::vector<std::string>{"alice:3"});
}

TEST_F(FaceServiceTest, RefusesAnImageWithoutAFaceAndStoresNothing) {
  auto r = service_->enroll("carol", {frame(kCarolEnrol[0]), blank("empty-wall.jpg")}, false);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code(), ErrorCode::kNoFace);
  EXPECT_NE(r.error().message().find("empty-wall.jpg"), std::string::npos) << r.error().message();
  EXPECT_TRUE(users().empty());
}

TEST_F(FaceServiceTest, RefusesAPhotoOfTwoPeople) {
  auto image = testing::read_test_image(nuaa_.parent_path().parent_path() /
                                        "media/face_recognition/two_people.jpg");
  ASSERT_FALSE(image.empty());
  auto r = service_->enroll("carol", {{"two_people.jpg", std::move(image)}}, false);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code(), ErrorCode::kSeveralFaces);
  EXPECT_TRUE(users().empty());
}

TEST_F(FaceServiceTest, RefusesAPoorFrameWithAdvice) {
  LabeledImage dark = frame(kAliceEnrol[0]);
  for (auto& v : dark.image.bgr) {
    v = static_cast<std::uint8_t>(v / 8);
  }
  auto r = service_->enroll("alice", {dark}, false);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code(), ErrorCode::kPoorQuality);
  EXPECT_NE(r.error().message().find(quality_issue_advice(QualityIssue::kTooDark)),
            std::string::npos)
      << r.error().message();
  EXPECT_TRUE(users().empty());
}

TEST_F(FaceServiceTest, ReportsAnUnknownUserAsNotFound) {
  auto v = service_->verify("nobody", frame(kAliceProbe));
  ASSERT_FALSE(v.has_value());
  EXPECT_EQ(v.error().code(), ErrorCode::kNotFound);
  auto add = service_->enroll("nobody", {frame(kAliceProbe)}, true);
  ASSERT_FALSE(add.has_value());
  EXPECT_EQ(add.error().code(), ErrorCode::kNotFound);
  EXPECT_TRUE(users().empty());
}

TEST_F(FaceServiceTest, TreatsADisabledUserAsUnknown) {
  enroll_or_fail("alice", frames(kAliceEnrol));
  ASSERT_TRUE(store_->set_disabled("alice", true).ok());
  auto v = service_->verify("alice", frame(kAliceProbe));
  ASSERT_FALSE(v.has_value());
  EXPECT_EQ(v.error().code(), ErrorCode::kNotFound);
}

TEST_F(FaceServiceTest, RefusesAMalformedNameBeforeLookingAtTheImages) {
  for (const char* name : {"alice'; DROP TABLE users;--", "", "-rf", "../etc/passwd"}) {
    auto r = service_->enroll(name, {blank("not-even-analysed.jpg")}, false);
    ASSERT_FALSE(r.has_value()) << name;
    EXPECT_EQ(r.error().code(), ErrorCode::kInvalidArgument) << name;
  }
  auto none = service_->enroll("carol", {}, false);
  ASSERT_FALSE(none.has_value());
  EXPECT_EQ(none.error().code(), ErrorCode::kInvalidArgument);
  EXPECT_TRUE(users().empty());
}

// A store enrolled before the default recogniser changed keeps its recogniser; a new or mixed
// store gets the default (issue 15 changed the default to MobileFaceNet from expo).
TEST(StoreRecognizer, IsTheDefaultUnlessOnlyAnotherRecognisersTemplatesAreStored) {
  const fs::path dir = testing::make_temp_dir("facelogin-store-recognizer");
  SqliteStoreOptions options;
  options.key = std::string(32, '\x44');
  auto store = open_sqlite_store(dir / "facelogin.db", options);
  ASSERT_TRUE(store) << store.error().to_string();
  std::mt19937 rng(7);
  const auto person = [&](const std::string& model_id) {
    const RecognizerSpec* spec = find_recognizer(model_id);
    const auto dim = static_cast<std::size_t>(recognizer_embedding_size(*spec));
    return testing::synthetic_person(model_id, testing::random_direction(dim, rng), 0.f, 2, rng);
  };
  const std::string fallback(default_recognizer_id());
  const std::string old_default = "fusion-dlib-mfn-v1";
  ASSERT_NE(fallback, old_default);

  auto empty = store_recognizer(**store);
  ASSERT_TRUE(empty) << empty.error().to_string();
  EXPECT_EQ(*empty, fallback);

  ASSERT_TRUE((*store)->create_user("ada", person(old_default)));
  ASSERT_TRUE((*store)->create_user("bob", person(old_default)));
  ASSERT_TRUE((*store)->create_user("cy", person("dlib-resnet-v1")));
  auto old = store_recognizer(**store);
  ASSERT_TRUE(old) << old.error().to_string();
  EXPECT_EQ(*old, old_default) << "the recogniser that made the most templates";

  // Once anyone is enrolled with the default, it is the default again (the others re-enrol).
  ASSERT_TRUE((*store)->create_user("dee", person(fallback)));
  auto mixed = store_recognizer(**store);
  ASSERT_TRUE(mixed) << mixed.error().to_string();
  EXPECT_EQ(*mixed, fallback);

  store->reset();
  std::error_code ec;
  fs::remove_all(dir, ec);
}

}  // namespace
}  // namespace facelogin
