#include "facelogin/eval.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstring>
#include <fstream>
#include <limits>
#include <opencv2/imgcodecs.hpp>
#include <random>
#include <sstream>

#include "test_data.h"

namespace facelogin::eval {
namespace {

namespace fs = std::filesystem;
constexpr float kNegInf = -std::numeric_limits<float>::infinity();

// A pairs text with `folds` folds of `per_fold` generated pairs each.
std::string make_pairs_text(int folds, int per_fold) {
  std::ostringstream out;
  out << folds << "\t" << per_fold << "\n";
  for (int f = 0; f < folds; ++f) {
    for (int i = 0; i < per_fold; ++i) {
      out << "Person_" << f << "_" << i << "\t1\t2\n";
    }
    for (int i = 0; i < per_fold; ++i) {
      out << "Person_" << f << "_" << i << "\t1\tOther_" << f << "_" << i << "\t3\n";
    }
  }
  return out.str();
}

// Replaces line `number` (1-based) of `text`.
std::string replace_line(const std::string& text, int number, const std::string& line) {
  std::istringstream in(text);
  std::ostringstream out;
  std::string l;
  for (int n = 1; std::getline(in, l); ++n) {
    out << (n == number ? line : l) << "\n";
  }
  return out.str();
}

// "Name/Name_NNNN.jpg". (No std::regex: GCC 12 warns inside it under the sanitizers.)
bool is_lfw_key(const std::string& key) {
  const std::size_t slash = key.find('/');
  if (slash == std::string::npos || slash == 0) {
    return false;
  }
  const std::string name = key.substr(0, slash);
  const std::string rest = key.substr(slash + 1);
  if (rest.size() != name.size() + 9 || !rest.starts_with(name + "_") || !rest.ends_with(".jpg")) {
    return false;
  }
  const std::string digits = rest.substr(name.size() + 1, 4);
  return std::all_of(digits.begin(), digits.end(), [](char c) { return c >= '0' && c <= '9'; });
}

// Whether doc[i] ('&') starts a character or entity reference.
bool entity_at(const std::string& doc, std::size_t i) {
  for (const char* e : {"&amp;", "&lt;", "&gt;", "&quot;", "&apos;"}) {
    if (doc.compare(i, std::strlen(e), e) == 0) {
      return true;
    }
  }
  if (doc.compare(i, 2, "&#") != 0) {
    return false;
  }
  std::size_t j = i + 2;
  while (j < doc.size() && std::isdigit(static_cast<unsigned char>(doc[j]))) {
    ++j;
  }
  return j > i + 2 && j < doc.size() && doc[j] == ';';
}

void expect_invalid_at_line(const std::string& text, int line) {
  Result<PairsProtocol> r = parse_pairs(text);
  ASSERT_FALSE(r.has_value()) << "parsed, but should fail at line " << line;
  EXPECT_EQ(r.error().code(), ErrorCode::kInvalidArgument);
  EXPECT_NE(r.error().message().find("line " + std::to_string(line) + ":"), std::string::npos)
      << r.error().message();
}

// ---------------------------------------------------------------------------------------------

TEST(LfwPairs, ParsesTheFiveFoldFile) {
  FACELOGIN_REQUIRE_DATA(data);
  const fs::path file = data / "lfw" / "pairs.txt";
  if (!fs::exists(file)) {
    GTEST_SKIP() << file << " not found: skipping the real pairs file";
  }
  Result<PairsProtocol> r = read_pairs_file(file);
  ASSERT_TRUE(r.has_value()) << r.error().to_string();
  EXPECT_EQ(r->folds, 5);
  EXPECT_EQ(r->pairs_per_fold, 300);
  ASSERT_EQ(r->pairs.size(), 3000u);
  EXPECT_EQ(std::count_if(r->pairs.begin(), r->pairs.end(), [](const Pair& p) { return p.same; }),
            1500);
  for (std::size_t k = 0; k < r->pairs.size(); ++k) {
    const Pair& p = r->pairs[k];
    EXPECT_EQ(p.fold, static_cast<int>(k / 600));
    EXPECT_EQ(p.same, k % 600 < 300);
    EXPECT_TRUE(is_lfw_key(p.first)) << p.first;
    EXPECT_TRUE(is_lfw_key(p.second)) << p.second;
    EXPECT_EQ(key_identity(p.first) == key_identity(p.second), p.same)
        << p.first << " " << p.second;
  }
  // Every image the pairs name is in the shared images folder.
  const std::vector<std::string> keys = unique_image_keys(r->pairs);
  EXPECT_GT(keys.size(), 3000u);
  EXPECT_LE(keys.size(), 6000u);
  if (fs::is_directory(data / "lfw" / "images")) {
    for (const std::string& key : keys) {
      EXPECT_TRUE(fs::exists(data / "lfw" / "images" / key)) << key;
    }
  }
}

TEST(LfwPairs, ImageKeysAreZeroPaddedPaths) {
  EXPECT_EQ(lfw_image_key("Zico", 2), "Zico/Zico_0002.jpg");
  EXPECT_EQ(lfw_image_key("Abel_Pacheco", 123), "Abel_Pacheco/Abel_Pacheco_0123.jpg");
  EXPECT_EQ(key_identity("Abel_Pacheco/Abel_Pacheco_0123.jpg"), "Abel_Pacheco");
  EXPECT_EQ(key_identity("nobody"), "nobody");
}

TEST(LfwPairs, ParsesGeneratedFileWithFoldsInOrder) {
  Result<PairsProtocol> r = parse_pairs(make_pairs_text(3, 4));
  ASSERT_TRUE(r.has_value()) << r.error().to_string();
  EXPECT_EQ(r->folds, 3);
  ASSERT_EQ(r->pairs.size(), 24u);
  EXPECT_EQ(r->pairs[0].fold, 0);
  EXPECT_TRUE(r->pairs[0].same);
  EXPECT_EQ(r->pairs[0].first, "Person_0_0/Person_0_0_0001.jpg");
  EXPECT_EQ(r->pairs[0].second, "Person_0_0/Person_0_0_0002.jpg");
  EXPECT_FALSE(r->pairs[4].same);
  EXPECT_EQ(r->pairs[4].second, "Other_0_0/Other_0_0_0003.jpg");
  EXPECT_EQ(r->pairs[8].fold, 1);
  EXPECT_EQ(r->pairs[23].fold, 2);
}

TEST(LfwPairs, AcceptsCrLfSpacesAndTrailingBlankLines) {
  std::string text = "1 1\r\nAnn  1 2\r\nAnn 1 Bob   3\r\n\r\n  \n";
  Result<PairsProtocol> r = parse_pairs(text);
  ASSERT_TRUE(r.has_value()) << r.error().to_string();
  ASSERT_EQ(r->pairs.size(), 2u);
  EXPECT_EQ(r->pairs[1].second, "Bob/Bob_0003.jpg");
}

TEST(LfwPairs, RejectsAMissingOrMalformedHeader) {
  expect_invalid_at_line("", 1);
  expect_invalid_at_line("\n\n", 1);
  expect_invalid_at_line("Ann 1 2\n", 1);
  expect_invalid_at_line("5\n", 1);
  expect_invalid_at_line("0 300\n", 1);
  expect_invalid_at_line("5 -300\n", 1);
  expect_invalid_at_line("5 300 7\n", 1);
  expect_invalid_at_line("5x 300\n", 1);
}

TEST(LfwPairs, RejectsMalformedLinesNamingTheLine) {
  const std::string good = make_pairs_text(2, 3);
  ASSERT_TRUE(parse_pairs(good).has_value());
  // Line 2 is fold 1's first same pair; line 5 is its first different pair.
  expect_invalid_at_line(replace_line(good, 3, "Ann 1"), 3);
  expect_invalid_at_line(replace_line(good, 3, "Ann 1 Bob 2"), 3);  // different line among same
  expect_invalid_at_line(replace_line(good, 5, "Ann 1 2"), 5);      // same line among different
  expect_invalid_at_line(replace_line(good, 4, "Ann 0 2"), 4);
  expect_invalid_at_line(replace_line(good, 4, "Ann 1 10000"), 4);
  expect_invalid_at_line(replace_line(good, 4, "Ann 1 2x"), 4);
  expect_invalid_at_line(replace_line(good, 4, "Ann +1 2"), 4);
  expect_invalid_at_line(replace_line(good, 4, "Ann 2 2"), 4);        // one image twice
  expect_invalid_at_line(replace_line(good, 6, "Ann 1 Ann 2"), 6);    // one person twice
  expect_invalid_at_line(replace_line(good, 9, "../../etc 1 2"), 9);  // path traversal
  expect_invalid_at_line(replace_line(good, 9, "a/b 1 2"), 9);
  expect_invalid_at_line(replace_line(good, 12, "Ann 1 ..\\x 2"), 12);
  expect_invalid_at_line(replace_line(good, 9, ""), 9);  // a blank line inside the pairs
}

TEST(LfwPairs, RejectsWrongCounts) {
  const std::string good = make_pairs_text(2, 3);
  // One line short: the error names the line after the last one.
  std::string short_text = good.substr(0, good.rfind('\n', good.size() - 2) + 1);
  expect_invalid_at_line(short_text, 13);
  // One line too many.
  expect_invalid_at_line(good + "Zed 1 Xavier 2\n", 14);
  // A header announcing more folds than the file has.
  expect_invalid_at_line(replace_line(good, 1, "3 3"), 14);
}

TEST(LfwPairs, UniqueImageKeysAreSortedAndDistinct) {
  std::vector<Pair> pairs{{0, "B/B_0001.jpg", "B/B_0002.jpg", true},
                          {0, "A/A_0001.jpg", "B/B_0001.jpg", false},
                          {1, "B/B_0002.jpg", "A/A_0001.jpg", false}};
  EXPECT_EQ(unique_image_keys(pairs),
            (std::vector<std::string>{"A/A_0001.jpg", "B/B_0001.jpg", "B/B_0002.jpg"}));
}

TEST(LfwPairs, ReportsAMissingFile) {
  Result<PairsProtocol> r = read_pairs_file("/nonexistent/pairs.txt");
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code(), ErrorCode::kNotFound);
}

TEST(LfwPairs, ListsTheImagesOfAnLfwFolderAndNothingElse) {
  const fs::path dir = testing::make_temp_dir("facelogin-eval-list");
  const auto touch = [&](const std::string& rel) {
    fs::create_directories((dir / rel).parent_path());
    std::ofstream(dir / rel) << "x";
  };
  touch("Zico/Zico_0002.jpg");
  touch("Zico/Zico_0001.jpg");
  touch("Ann_B/Ann_B_0010.jpg");
  touch("Ann_B/Ann_B_10.jpg");      // not four digits
  touch("Ann_B/Ann_B_000x.jpg");    // not digits
  touch("Ann_B/Zico_0001.jpg");     // another person's name
  touch("Ann_B/Ann_B_0001.png");    // not .jpg
  touch("Zico_0003.jpg");           // not in a person's folder
  fs::create_directories(dir / "Zico" / "Zico_0004.jpg");  // a directory, not a file
  auto keys = list_lfw_images(dir);
  ASSERT_TRUE(keys.has_value()) << keys.error().message();
  EXPECT_EQ(*keys, (std::vector<std::string>{"Ann_B/Ann_B_0010.jpg", "Zico/Zico_0001.jpg",
                                             "Zico/Zico_0002.jpg"}));
  std::error_code ec;
  fs::remove_all(dir, ec);

  auto missing = list_lfw_images(dir / "absent");
  ASSERT_FALSE(missing.has_value());
  EXPECT_EQ(missing.error().code(), ErrorCode::kNotFound);
}

TEST(LfwPairs, ListsTheSharedLfwImages) {
  FACELOGIN_REQUIRE_DATA(data);
  const fs::path dir = data / "lfw" / "images";
  if (!fs::is_directory(dir)) {
    GTEST_SKIP() << dir << " not found: skipping the real LFW folder";
  }
  auto keys = list_lfw_images(dir);
  ASSERT_TRUE(keys.has_value()) << keys.error().message();
  auto protocol = read_pairs_file(dir.parent_path() / "pairs.txt");
  ASSERT_TRUE(protocol.has_value()) << protocol.error().to_string();
  EXPECT_EQ(keys->size(), 5373u);  // ../shared/README.md: 5,373 images
  // Every image the pairs name is listed.
  for (const std::string& k : unique_image_keys(protocol->pairs)) {
    EXPECT_TRUE(std::binary_search(keys->begin(), keys->end(), k)) << k;
  }
}

// ---------------------------------------------------------------------------------------------
// Spoof data and rates

TEST(SpoofFrames, ListsTheNuaaLayoutLiveFirstInSequenceOrder) {
  const fs::path dir = testing::make_temp_dir("facelogin-eval-spoof");
  const auto touch = [&](const std::string& rel) {
    fs::create_directories((dir / rel).parent_path());
    std::ofstream(dir / rel) << "x";
  };
  touch("ImposterRaw/0002/0002_00_01_02_12.jpg");
  touch("ImposterRaw/0002/0002_00_01_02_4.jpg");
  touch("ClientRaw/0002/0002_01_00_01_8.jpg");
  touch("ClientRaw/0001/0001_00_00_01_100.jpg");
  touch("ClientRaw/0001/0001_00_00_01_20.jpg");
  touch("ClientRaw/0001/0003_00_00_01_1.jpg");  // another subject's name in 0001/
  touch("ClientRaw/0001/0001_00_00_01.jpg");    // four fields
  touch("ClientRaw/0001/0001_00_0x_01_2.jpg");  // not digits
  touch("ClientRaw/0001/0001_00_00_01_3.png");  // not .jpg
  auto frames = list_spoof_frames(dir);
  ASSERT_TRUE(frames.has_value()) << frames.error().message();
  std::vector<std::string> keys;
  for (const auto& f : *frames) {
    keys.push_back(f.key);
  }
  EXPECT_EQ(keys, (std::vector<std::string>{"ClientRaw/0001/0001_00_00_01_20.jpg",
                                            "ClientRaw/0001/0001_00_00_01_100.jpg",
                                            "ClientRaw/0002/0002_01_00_01_8.jpg",
                                            "ImposterRaw/0002/0002_00_01_02_4.jpg",
                                            "ImposterRaw/0002/0002_00_01_02_12.jpg"}));
  const SpoofFrame& attack = frames->back();
  EXPECT_FALSE(attack.live);
  EXPECT_EQ(attack.subject, "0002");
  EXPECT_EQ(attack.type, "01");
  EXPECT_EQ(attack.sequence, "0002_00_01_02");
  EXPECT_EQ(attack.frame, 12);
  EXPECT_TRUE(frames->front().live);
  std::error_code ec;
  fs::remove_all(dir, ec);

  auto missing = list_spoof_frames(dir);
  ASSERT_FALSE(missing.has_value());
  EXPECT_EQ(missing.error().code(), ErrorCode::kNotFound);
}

SpoofFrame spoof_frame(const std::string& sequence, bool live, int frame) {
  SpoofFrame f;
  f.subject = sequence.substr(0, 4);
  f.sequence = sequence;
  f.type = sequence.substr(8, 2);
  f.live = live;
  f.frame = frame;
  return f;
}

TEST(SpoofFrames, AttemptsAreConsecutiveFramesOfOneSequence) {
  std::vector<SpoofFrame> frames;
  std::vector<float> scores;
  for (int i = 0; i < 7; ++i) {  // 7 frames: two attempts of 3, the seventh dropped
    frames.push_back(spoof_frame("0001_00_00_01", true, i));
    scores.push_back(static_cast<float>(i));
  }
  for (int i = 0; i < 2; ++i) {  // shorter than an attempt: one attempt of both
    frames.push_back(spoof_frame("0001_00_02_01", false, i));
    scores.push_back(10.f);
  }
  const auto attempts = make_spoof_attempts(frames, scores, 3);
  ASSERT_EQ(attempts.size(), 3u);
  EXPECT_EQ(attempts[0].frames, (std::vector<std::size_t>{0, 1, 2}));
  EXPECT_FLOAT_EQ(attempts[0].score, 1.f);
  EXPECT_EQ(attempts[1].frames, (std::vector<std::size_t>{3, 4, 5}));
  EXPECT_FLOAT_EQ(attempts[1].score, 4.f);
  EXPECT_TRUE(attempts[1].live);
  EXPECT_EQ(attempts[2].frames, (std::vector<std::size_t>{7, 8}));
  EXPECT_FALSE(attempts[2].live);
  EXPECT_EQ(attempts[2].type, "02");
  EXPECT_FLOAT_EQ(attempts[2].score, 10.f);
}

TEST(SpoofRatesTest, CountsBpcerAndApcerPerAttackType) {
  const std::vector<float> scores{0.9f, 0.8f, 0.3f, 0.6f, 0.1f, 0.2f, 0.7f};
  const std::vector<char> live{1, 1, 1, 0, 0, 0, 0};
  const std::vector<std::string> types{"00", "00", "00", "01", "01", "02", "02"};
  const SpoofRates r = spoof_rates(scores, live, types, 0.5f);
  EXPECT_EQ(r.bona_fide, 3u);
  EXPECT_EQ(r.attacks, 4u);
  EXPECT_DOUBLE_EQ(r.bpcer, 1.0 / 3);  // 0.3 rejected
  EXPECT_DOUBLE_EQ(r.apcer.at("01"), 0.5);  // 0.6 accepted
  EXPECT_DOUBLE_EQ(r.apcer.at("02"), 0.5);  // 0.7 accepted
  EXPECT_DOUBLE_EQ(r.apcer_worst, 0.5);
  // A score equal to the threshold is accepted.
  EXPECT_DOUBLE_EQ(spoof_rates(scores, live, types, 0.3f).bpcer, 0.0);
}

TEST(SpoofRatesTest, ThresholdRejectsAtMostTheAllowedShareOfBonaFide) {
  std::vector<float> bona;
  for (int i = 1; i <= 100; ++i) {
    bona.push_back(static_cast<float>(i) / 100.f);
  }
  auto t2 = threshold_for_bpcer(bona, 0.02);
  ASSERT_TRUE(t2.has_value());
  EXPECT_FLOAT_EQ(*t2, 0.03f);  // rejects 0.01 and 0.02
  auto t0 = threshold_for_bpcer(bona, 0.0);
  ASSERT_TRUE(t0.has_value());
  EXPECT_FLOAT_EQ(*t0, 0.01f);  // rejects nothing
  EXPECT_FALSE(threshold_for_bpcer({}, 0.02).has_value());
  EXPECT_FALSE(threshold_for_bpcer(bona, 1.0).has_value());
  const std::vector<float> nan{std::numeric_limits<float>::quiet_NaN()};
  EXPECT_FALSE(threshold_for_bpcer(nan, 0.02).has_value());
}

// ---------------------------------------------------------------------------------------------
// Accuracy

std::vector<Pair> pairs_with(const std::vector<int>& folds, const std::vector<bool>& same) {
  std::vector<Pair> pairs;
  for (std::size_t k = 0; k < folds.size(); ++k) {
    pairs.push_back(Pair{folds[k], "", "", same[k]});
  }
  return pairs;
}

TEST(EvalAccuracy, PerfectlySeparableScoresGiveAccuracyOne) {
  std::mt19937 rng(1);
  std::uniform_real_distribution<float> high(0.6f, 1.f);
  std::uniform_real_distribution<float> low(-1.f, 0.4f);
  std::vector<Pair> pairs;
  std::vector<float> scores;
  for (int f = 0; f < 10; ++f) {
    for (int k = 0; k < 60; ++k) {
      const bool same = k % 2 == 0;
      pairs.push_back(Pair{f, "", "", same});
      scores.push_back(same ? high(rng) : low(rng));
    }
  }
  Result<CrossValidation> cv = cross_validated_accuracy(pairs, scores);
  ASSERT_TRUE(cv.has_value()) << cv.error().to_string();
  ASSERT_EQ(cv->fold_accuracy.size(), 10u);
  EXPECT_DOUBLE_EQ(cv->mean_accuracy, 1.0);
  EXPECT_DOUBLE_EQ(cv->std_accuracy, 0.0);
  for (float t : cv->fold_threshold) {
    EXPECT_GT(t, 0.4f);
    EXPECT_LE(t, 0.6f);
  }
}

TEST(EvalAccuracy, HandWorkedTwoFoldExample) {
  // Fold 0: same 0.9 0.8, different 0.1 0.2. Fold 1: same 0.7 0.3, different 0.4 0.0.
  // Trained on fold 1, the best thresholds give 3/4 right: the lowest is between 0.0 and 0.3
  // (0.15), which on fold 0 accepts 0.2 wrongly: 3/4. Trained on fold 0, 0.5 separates it
  // perfectly; on fold 1 it rejects 0.3 wrongly: 3/4.
  std::vector<Pair> pairs =
      pairs_with({0, 0, 0, 0, 1, 1, 1, 1}, {true, true, false, false, true, true, false, false});
  std::vector<float> scores{0.9f, 0.8f, 0.1f, 0.2f, 0.7f, 0.3f, 0.4f, 0.0f};
  Result<CrossValidation> cv = cross_validated_accuracy(pairs, scores);
  ASSERT_TRUE(cv.has_value()) << cv.error().to_string();
  EXPECT_NEAR(cv->fold_threshold[0], 0.15f, 1e-6);
  EXPECT_NEAR(cv->fold_threshold[1], 0.5f, 1e-6);
  EXPECT_DOUBLE_EQ(cv->fold_accuracy[0], 0.75);
  EXPECT_DOUBLE_EQ(cv->fold_accuracy[1], 0.75);
  EXPECT_DOUBLE_EQ(cv->mean_accuracy, 0.75);
  EXPECT_DOUBLE_EQ(cv->std_accuracy, 0.0);
}

TEST(EvalAccuracy, StdIsTheSampleStandardDeviation) {
  // Fold 0 is separable at any threshold in (0.2, 0.8); fold 1's scores are reversed, so
  // whatever is learnt on fold 0 gets all of fold 1 wrong, and what is learnt on fold 1
  // (accept none or all: 1/2 right) gets half of fold 0 right.
  std::vector<Pair> pairs = pairs_with({0, 0, 1, 1}, {true, false, true, false});
  std::vector<float> scores{0.8f, 0.2f, 0.2f, 0.8f};
  Result<CrossValidation> cv = cross_validated_accuracy(pairs, scores);
  ASSERT_TRUE(cv.has_value()) << cv.error().to_string();
  EXPECT_DOUBLE_EQ(cv->fold_accuracy[1], 0.0);
  EXPECT_DOUBLE_EQ(cv->fold_accuracy[0], 0.5);
  EXPECT_DOUBLE_EQ(cv->mean_accuracy, 0.25);
  EXPECT_NEAR(cv->std_accuracy, std::sqrt(0.125), 1e-12);  // sum of squares 0.125, over n-1 = 1
}

TEST(EvalAccuracy, ChosenThresholdIsOptimalOnTheTrainingFolds) {
  // Scores rounded to 0.05 so that ties are common.
  std::mt19937 rng(7);
  std::normal_distribution<float> gen(0.5f, 0.25f);
  std::normal_distribution<float> imp(0.1f, 0.25f);
  std::vector<Pair> pairs;
  std::vector<float> scores;
  for (int f = 0; f < 4; ++f) {
    for (int k = 0; k < 50; ++k) {
      const bool same = (k * 7 + f) % 3 != 0;
      pairs.push_back(Pair{f, "", "", same});
      scores.push_back(std::round((same ? gen(rng) : imp(rng)) * 20.f) / 20.f);
    }
  }
  scores[3] = kNegInf;  // a pair with no face
  Result<CrossValidation> cv = cross_validated_accuracy(pairs, scores);
  ASSERT_TRUE(cv.has_value()) << cv.error().to_string();
  const auto correct = [&](int fold, float t, bool in_fold) {
    int n = 0;
    for (std::size_t k = 0; k < pairs.size(); ++k) {
      if ((pairs[k].fold == fold) == in_fold && (scores[k] >= t) == pairs[k].same) {
        ++n;
      }
    }
    return n;
  };
  for (int f = 0; f < 4; ++f) {
    // Every achievable split of the training scores: at each score, and above all of them.
    int best = 0;
    for (float s : scores) {
      if (s != kNegInf) {
        best = std::max(best, correct(f, s, false));
        best = std::max(best, correct(f, std::nextafter(s, 2.f), false));
      }
    }
    const float t = cv->fold_threshold[static_cast<std::size_t>(f)];
    EXPECT_EQ(correct(f, t, false), best) << "fold " << f;
    EXPECT_DOUBLE_EQ(cv->fold_accuracy[static_cast<std::size_t>(f)], correct(f, t, true) / 50.0);
  }
}

TEST(EvalAccuracy, NoFaceScoresCountAsRejections) {
  std::vector<Pair> pairs =
      pairs_with({0, 0, 0, 0, 1, 1, 1, 1}, {true, true, false, false, true, true, false, false});
  std::vector<float> scores{0.9f, kNegInf, 0.1f, kNegInf, 0.9f, 0.8f, 0.1f, 0.2f};
  Result<CrossValidation> cv = cross_validated_accuracy(pairs, scores);
  ASSERT_TRUE(cv.has_value()) << cv.error().to_string();
  EXPECT_DOUBLE_EQ(cv->fold_accuracy[0], 0.75);  // the same pair without a face is wrong
  EXPECT_DOUBLE_EQ(cv->fold_accuracy[1], 1.0);
}

TEST(EvalAccuracy, RejectsBadInput) {
  std::vector<Pair> two_folds = pairs_with({0, 1}, {true, false});
  EXPECT_FALSE(cross_validated_accuracy(two_folds, std::vector<float>{0.5f}).has_value());
  EXPECT_FALSE(cross_validated_accuracy(two_folds, std::vector<float>{NAN, 0.f}).has_value());
  EXPECT_FALSE(cross_validated_accuracy(two_folds, std::vector<float>{INFINITY, 0.f}).has_value());
  std::vector<Pair> one_fold = pairs_with({0, 0}, {true, false});
  EXPECT_FALSE(cross_validated_accuracy(one_fold, std::vector<float>{1.f, 0.f}).has_value());
  std::vector<Pair> gap = pairs_with({0, 2}, {true, false});
  Result<CrossValidation> r = cross_validated_accuracy(gap, std::vector<float>{1.f, 0.f});
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code(), ErrorCode::kInvalidArgument);
}

// ---------------------------------------------------------------------------------------------
// ROC AUC

std::vector<float> normal_scores(std::size_t n, float mean, unsigned seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(mean, 1.f);
  std::vector<float> v(n);
  for (float& x : v) {
    x = d(rng);
  }
  return v;
}

TEST(RocAuc, PerfectlySeparableIsOneAndReversedIsZero) {
  std::vector<float> high{0.7f, 0.8f, 0.9f};
  std::vector<float> low{0.1f, 0.2f, 0.3f, 0.69f};
  EXPECT_DOUBLE_EQ(roc_auc(high, low).value(), 1.0);
  EXPECT_DOUBLE_EQ(roc_auc(low, high).value(), 0.0);
}

TEST(RocAuc, TiesCountOneHalf) {
  EXPECT_DOUBLE_EQ(roc_auc(std::vector<float>{1.f, 1.f}, std::vector<float>{1.f}).value(), 0.5);
  // Pairs (2,1) (2,0) (1,0) are won, (1,1) is tied: 3.5 of 4.
  EXPECT_DOUBLE_EQ(roc_auc(std::vector<float>{2.f, 1.f}, std::vector<float>{1.f, 0.f}).value(),
                   0.875);
  EXPECT_DOUBLE_EQ(roc_auc(std::vector<float>{kNegInf}, std::vector<float>{kNegInf}).value(), 0.5);
}

TEST(RocAuc, MatchesBruteForceWithManyTies) {
  std::mt19937 rng(3);
  std::uniform_int_distribution<int> g(0, 12);
  std::uniform_int_distribution<int> i(-3, 8);
  std::vector<float> gen(301);
  std::vector<float> imp(257);
  for (float& x : gen) {
    x = static_cast<float>(g(rng));
  }
  for (float& x : imp) {
    x = static_cast<float>(i(rng));
  }
  double wins = 0.0;
  for (float a : gen) {
    for (float b : imp) {
      wins += a > b ? 1.0 : a == b ? 0.5 : 0.0;
    }
  }
  EXPECT_NEAR(roc_auc(gen, imp).value(), wins / (301.0 * 257.0), 1e-12);
}

TEST(RocAuc, IdenticalDistributionsGiveOneHalf) {
  // Standard error of the AUC for 2000 + 2000 samples is about 0.009.
  Result<double> auc = roc_auc(normal_scores(2000, 0.f, 11), normal_scores(2000, 0.f, 12));
  ASSERT_TRUE(auc.has_value());
  EXPECT_NEAR(*auc, 0.5, 0.04);
}

TEST(RocAuc, GaussianShiftMatchesTheNormalCdf) {
  // Genuine N(1, 1) against impostor N(0, 1): AUC = Phi(1 / sqrt 2) = 0.76025.
  Result<double> auc = roc_auc(normal_scores(20000, 1.f, 21), normal_scores(20000, 0.f, 22));
  ASSERT_TRUE(auc.has_value());
  EXPECT_NEAR(*auc, 0.5 * std::erfc(-0.5), 0.01);
}

TEST(RocAuc, RejectsEmptyOrNaN) {
  EXPECT_FALSE(roc_auc(std::vector<float>{}, std::vector<float>{1.f}).has_value());
  EXPECT_FALSE(roc_auc(std::vector<float>{1.f}, std::vector<float>{NAN}).has_value());
}

// ---------------------------------------------------------------------------------------------
// Operating points and curves

TEST(EvalOperatingPoint, HandMadeImpostorListGivesTheKnownThreshold) {
  // 10000 impostors 0.0000 .. 0.9999: at FMR 1e-3 ten may be accepted (0.9990 .. 0.9999), so the
  // threshold is just above the eleventh highest, 0.9989.
  std::vector<float> imp(10000);
  for (int i = 0; i < 10000; ++i) {
    imp[static_cast<std::size_t>(i)] = static_cast<float>(i) / 10000.f;
  }
  std::shuffle(imp.begin(), imp.end(), std::mt19937(5));
  const float eleventh = 9989.f / 10000.f;
  std::vector<float> gen{0.5f, eleventh, std::nextafter(eleventh, 2.f), 1.f};
  std::vector<double> targets{1e-3, 1e-4, 1e-5};
  Result<std::vector<OperatingPoint>> ops = operating_points(gen, imp, targets);
  ASSERT_TRUE(ops.has_value()) << ops.error().to_string();
  const OperatingPoint& p = (*ops)[0];
  EXPECT_EQ(p.threshold, std::nextafter(eleventh, 2.f));
  EXPECT_EQ(p.false_matches, 10u);
  EXPECT_DOUBLE_EQ(p.fmr, 1e-3);
  EXPECT_DOUBLE_EQ(p.fnmr, 0.5);  // 0.5 and the score equal to the eleventh impostor
  EXPECT_EQ(p.impostor_count, 10000u);
  EXPECT_EQ(p.genuine_count, 4u);
  EXPECT_TRUE(p.resolvable);
  // 1e-4: one false match allowed, threshold just above the second highest (0.9998).
  EXPECT_EQ((*ops)[1].threshold, std::nextafter(9998.f / 10000.f, 2.f));
  EXPECT_EQ((*ops)[1].false_matches, 1u);
  EXPECT_TRUE((*ops)[1].resolvable);
  // 1e-5 on 10000 impostors: none allowed, so not resolvable; threshold above the highest.
  EXPECT_FALSE((*ops)[2].resolvable);
  EXPECT_EQ((*ops)[2].false_matches, 0u);
  EXPECT_EQ((*ops)[2].threshold, std::nextafter(0.9999f, 2.f));
}

TEST(EvalOperatingPoint, TiesAtTheBoundaryAreRejectedTogether) {
  // 1000 impostors, FMR 1e-3 allows one false match, but the two highest are tied at 0.9:
  // accepting one means accepting both, so both are rejected and the achieved FMR is 0.
  std::vector<float> imp(1000, 0.1f);
  imp[10] = 0.9f;
  imp[500] = 0.9f;
  std::vector<float> gen{0.9f, 0.95f};
  std::vector<double> targets{1e-3, 3e-3};
  Result<std::vector<OperatingPoint>> ops = operating_points(gen, imp, targets);
  ASSERT_TRUE(ops.has_value());
  EXPECT_EQ((*ops)[0].threshold, std::nextafter(0.9f, 2.f));
  EXPECT_EQ((*ops)[0].false_matches, 0u);
  EXPECT_DOUBLE_EQ((*ops)[0].fnmr, 0.5);
  // 3e-3 allows three: the two at 0.9 are accepted, the 998 ties at 0.1 are not.
  EXPECT_EQ((*ops)[1].threshold, std::nextafter(0.1f, 2.f));
  EXPECT_EQ((*ops)[1].false_matches, 2u);
  EXPECT_DOUBLE_EQ((*ops)[1].fmr, 2e-3);
  EXPECT_DOUBLE_EQ((*ops)[1].fnmr, 0.0);
}

TEST(EvalOperatingPoint, ResolvableNeedsOneOverTargetImpostors) {
  std::vector<float> gen{1.f};
  std::vector<double> target{1e-5};
  EXPECT_FALSE(operating_points(gen, std::vector<float>(99999, 0.f), target)->front().resolvable);
  EXPECT_TRUE(operating_points(gen, std::vector<float>(100000, 0.f), target)->front().resolvable);
}

TEST(EvalOperatingPoint, GaussianImpostorsGiveTheNormalQuantile) {
  // Impostors N(0, 1): the 1e-3 upper quantile is 3.0902 (sample standard error ~0.01).
  // Genuine N(3, 1): FNMR = Phi(3.0902 - 3) = 0.536.
  std::vector<float> imp = normal_scores(1000000, 0.f, 31);
  std::vector<float> gen = normal_scores(100000, 3.f, 32);
  std::vector<double> targets{1e-3};
  Result<std::vector<OperatingPoint>> ops = operating_points(gen, imp, targets);
  ASSERT_TRUE(ops.has_value());
  EXPECT_NEAR((*ops)[0].threshold, 3.0902, 0.05);
  EXPECT_NEAR((*ops)[0].fnmr, 0.536, 0.025);
  EXPECT_LE((*ops)[0].fmr, 1e-3);
  EXPECT_GE((*ops)[0].fmr, 0.999e-3);  // continuous scores: no ties to give away
}

TEST(EvalOperatingPoint, RejectsBadTargets) {
  std::vector<float> s{0.f};
  EXPECT_FALSE(operating_points(s, s, std::vector<double>{0.0}).has_value());
  EXPECT_FALSE(operating_points(s, s, std::vector<double>{1.5}).has_value());
  EXPECT_FALSE(operating_points(s, s, std::vector<double>{NAN}).has_value());
  Result<std::vector<OperatingPoint>> all = operating_points(s, s, std::vector<double>{1.0});
  ASSERT_TRUE(all.has_value());
  EXPECT_EQ(all->front().threshold, std::numeric_limits<float>::lowest());
  EXPECT_DOUBLE_EQ(all->front().fmr, 1.0);
}

TEST(RocCurve, IsMonotoneExactAndSpansFmrZeroToOne) {
  std::vector<float> imp = normal_scores(20000, 0.f, 41);
  std::vector<float> gen = normal_scores(3000, 2.5f, 42);
  for (float& x : imp) {
    x = std::round(x * 100.f) / 100.f;  // ties
  }
  Result<std::vector<CurvePoint>> curve = det_curve(gen, imp, 10);
  ASSERT_TRUE(curve.has_value()) << curve.error().to_string();
  ASSERT_GE(curve->size(), 20u);
  EXPECT_DOUBLE_EQ(curve->front().fmr, 0.0);
  EXPECT_DOUBLE_EQ(curve->back().fmr, 1.0);
  EXPECT_DOUBLE_EQ(curve->back().fnmr, 0.0);
  for (std::size_t k = 0; k < curve->size(); ++k) {
    const CurvePoint& p = (*curve)[k];
    if (k > 0) {
      EXPECT_GT(p.fmr, (*curve)[k - 1].fmr);
      EXPECT_LE(p.fnmr, (*curve)[k - 1].fnmr);
      EXPECT_LT(p.threshold, (*curve)[k - 1].threshold);
    }
    const auto fm =
        std::count_if(imp.begin(), imp.end(), [&](float v) { return v >= p.threshold; });
    const auto fnm =
        std::count_if(gen.begin(), gen.end(), [&](float v) { return v < p.threshold; });
    EXPECT_DOUBLE_EQ(p.fmr, static_cast<double>(fm) / 20000.0);
    EXPECT_DOUBLE_EQ(p.fnmr, static_cast<double>(fnm) / 3000.0);
  }
}

TEST(RocCurve, AgreesWithOperatingPoints) {
  std::vector<float> imp = normal_scores(50000, 0.f, 51);
  std::vector<float> gen = normal_scores(2000, 3.f, 52);
  std::vector<double> targets{1e-3, 1e-4};
  Result<std::vector<OperatingPoint>> ops = operating_points(gen, imp, targets);
  Result<std::vector<CurvePoint>> curve = det_curve(gen, imp, 10);
  ASSERT_TRUE(ops.has_value() && curve.has_value());
  // Log spacing at 10 per decade includes exactly 1e-3 and 1e-4 (up to rounding of k).
  for (const OperatingPoint& op : *ops) {
    auto it = std::find_if(curve->begin(), curve->end(),
                           [&](const CurvePoint& p) { return p.threshold == op.threshold; });
    ASSERT_NE(it, curve->end()) << op.target_fmr;
    EXPECT_DOUBLE_EQ(it->fnmr, op.fnmr);
    EXPECT_DOUBLE_EQ(it->fmr, op.fmr);
  }
}

TEST(EvalSummary, AgreesWithTheSeparateFunctions) {
  std::vector<float> imp = normal_scores(40000, 0.f, 81);
  std::vector<float> gen = normal_scores(1500, 2.f, 82);
  for (float& x : imp) {
    x = std::round(x * 200.f) / 200.f;  // ties
  }
  const std::vector<double> targets{1e-2, 1e-3, 1e-4, 1e-5};
  Result<ScoreSummary> sum = summarize_scores(gen, imp, targets, 10);
  ASSERT_TRUE(sum.has_value()) << sum.error().to_string();
  EXPECT_EQ(sum->genuine_count, 1500u);
  EXPECT_EQ(sum->impostor_count, 40000u);
  EXPECT_DOUBLE_EQ(sum->auc, roc_auc(gen, imp).value());
  const std::vector<OperatingPoint> ops = operating_points(gen, imp, targets).value();
  ASSERT_EQ(sum->operating_points.size(), ops.size());
  for (std::size_t k = 0; k < ops.size(); ++k) {
    EXPECT_EQ(sum->operating_points[k].threshold, ops[k].threshold) << k;
    EXPECT_EQ(sum->operating_points[k].false_matches, ops[k].false_matches) << k;
    EXPECT_DOUBLE_EQ(sum->operating_points[k].fnmr, ops[k].fnmr) << k;
    EXPECT_EQ(sum->operating_points[k].resolvable, ops[k].resolvable) << k;
  }
  const std::vector<CurvePoint> curve = det_curve(gen, imp, 10).value();
  ASSERT_EQ(sum->curve.size(), curve.size());
  for (std::size_t k = 0; k < curve.size(); ++k) {
    EXPECT_EQ(sum->curve[k].threshold, curve[k].threshold);
    EXPECT_DOUBLE_EQ(sum->curve[k].fmr, curve[k].fmr);
    EXPECT_DOUBLE_EQ(sum->curve[k].fnmr, curve[k].fnmr);
  }
}

TEST(EvalSummary, EqualErrorRateMatchesTheNormalCdf) {
  // Genuine N(2, 1) against impostor N(0, 1): the rates cross at 1, EER = Phi(-1) = 0.1587.
  const std::vector<double> none;
  Result<ScoreSummary> sum =
      summarize_scores(normal_scores(20000, 2.f, 91), normal_scores(20000, 0.f, 92), none);
  ASSERT_TRUE(sum.has_value());
  EXPECT_NEAR(sum->eer, 0.5 * std::erfc(1.0 / std::sqrt(2.0)), 0.01);
  Result<ScoreSummary> separable =
      summarize_scores(std::vector<float>{0.7f, 0.8f}, std::vector<float>{0.1f, 0.2f}, none);
  ASSERT_TRUE(separable.has_value());
  EXPECT_DOUBLE_EQ(separable->eer, 0.0);
  EXPECT_FALSE(
      summarize_scores(std::vector<float>{1.f}, std::vector<float>{0.f}, std::vector<double>{2.0})
          .has_value());
}

// ---------------------------------------------------------------------------------------------
// All-pairs scoring

struct RandomEmbeddings {
  std::vector<float> data;
  std::vector<int> identity;
};

RandomEmbeddings random_embeddings(std::size_t n, std::size_t dim, int people, unsigned seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(0.f, 1.f);
  std::uniform_int_distribution<int> who(0, people - 1);
  RandomEmbeddings e;
  e.data.resize(n * dim);
  for (std::size_t r = 0; r < n; ++r) {
    double norm = 0.0;
    for (std::size_t k = 0; k < dim; ++k) {
      float& x = e.data[r * dim + k];
      x = d(rng);
      norm += static_cast<double>(x) * x;
    }
    for (std::size_t k = 0; k < dim; ++k) {
      e.data[r * dim + k] = static_cast<float>(e.data[r * dim + k] / std::sqrt(norm));
    }
    // Identities are sparse, large and sometimes -1 (no face).
    e.identity.push_back(r % 17 == 5 ? -1 : 1000 + 37 * who(rng));
  }
  return e;
}

TEST(EvalAllPairs, MatchesANaiveDoubleLoop) {
  for (std::size_t dim : {std::size_t{1}, std::size_t{37}, std::size_t{128}}) {
    const std::size_t n = 203;  // not a multiple of any block size
    RandomEmbeddings e = random_embeddings(n, dim, 12, static_cast<unsigned>(dim));
    std::vector<float> gen;
    std::vector<float> imp;
    std::size_t skipped = 0;
    for (std::size_t i = 0; i < n; ++i) {
      if (e.identity[i] < 0) {
        ++skipped;
        continue;
      }
      for (std::size_t j = i + 1; j < n; ++j) {
        if (e.identity[j] < 0) {
          continue;
        }
        double dot = 0.0;
        for (std::size_t k = 0; k < dim; ++k) {
          dot += static_cast<double>(e.data[i * dim + k]) * e.data[j * dim + k];
        }
        (e.identity[i] == e.identity[j] ? gen : imp).push_back(static_cast<float>(dot));
      }
    }
    Result<AllPairsScores> r = all_pairs_scores(e.data, dim, e.identity, 1);
    ASSERT_TRUE(r.has_value()) << r.error().to_string();
    EXPECT_EQ(r->rows_skipped, skipped);
    EXPECT_EQ(r->rows_used, n - skipped);
    ASSERT_EQ(r->genuine.size(), gen.size());
    ASSERT_EQ(r->impostor.size(), imp.size());
    EXPECT_GT(gen.size(), 100u);
    for (std::size_t k = 0; k < gen.size(); ++k) {
      ASSERT_NEAR(r->genuine[k], gen[k], 1e-5) << "dim " << dim << " genuine " << k;
    }
    for (std::size_t k = 0; k < imp.size(); ++k) {
      ASSERT_NEAR(r->impostor[k], imp[k], 1e-5) << "dim " << dim << " impostor " << k;
    }
  }
}

TEST(EvalAllPairs, ThreadsDoNotChangeTheResult) {
  RandomEmbeddings e = random_embeddings(700, 64, 40, 9);
  Result<AllPairsScores> one = all_pairs_scores(e.data, 64, e.identity, 1);
  Result<AllPairsScores> three = all_pairs_scores(e.data, 64, e.identity, 3);
  ASSERT_TRUE(one.has_value() && three.has_value());
  EXPECT_EQ(one->genuine, three->genuine);
  EXPECT_EQ(one->impostor, three->impostor);
  const std::size_t used = one->rows_used;
  EXPECT_EQ(one->genuine.size() + one->impostor.size(), used * (used - 1) / 2);
}

TEST(EvalAllPairs, HandlesTinyInputsAndRejectsBadSizes) {
  Result<AllPairsScores> none = all_pairs_scores({}, 4, {}, 1);
  ASSERT_TRUE(none.has_value());
  EXPECT_TRUE(none->impostor.empty());
  std::vector<float> two{1.f, 0.f, 0.f, 1.f};
  Result<AllPairsScores> r = all_pairs_scores(two, 2, std::vector<int>{0, 1}, 0);
  ASSERT_TRUE(r.has_value());
  ASSERT_EQ(r->impostor.size(), 1u);
  EXPECT_FLOAT_EQ(r->impostor[0], 0.f);
  EXPECT_FALSE(all_pairs_scores(two, 3, std::vector<int>{0}, 1).has_value());
  EXPECT_FALSE(all_pairs_scores(two, 2, std::vector<int>{0, 1, 2}, 1).has_value());
  EXPECT_FALSE(all_pairs_scores(two, 0, std::vector<int>{0, 1}, 1).has_value());
}

// Who is taken for whom (eval calibrate's advice): person pairs above the threshold, grouped,
// the highest pair's rows, most pairs first; the same person's pairs and faceless rows are out.
TEST(EvalMatchedPeople, GroupsTheDifferentPeoplesPairsAboveTheThreshold) {
  const float c = std::cos(0.3f);
  const float s = std::sin(0.3f);
  // Rows: 0 and 1 are person 5 (identical), 2 is person 7 at an angle of 0.3 rad from them,
  // 3 is person 9 at 0.1 rad from row 2, row 4 has no face, row 5 is person 9 far away.
  const float c2 = std::cos(0.4f);
  const float s2 = std::sin(0.4f);
  std::vector<float> rows{1.f, 0.f, 1.f, 0.f, c, s, c2, s2, 1.f, 0.f, 0.f, 1.f};
  const std::vector<int> ids{5, 5, 7, 9, -1, 9};
  auto m = matched_people(rows, 2, ids, 0.9f);
  ASSERT_TRUE(m.has_value()) << m.error().to_string();
  ASSERT_EQ(m->size(), 3u);
  // 5-7: rows 0 and 1 against row 2, both at cos 0.3 = 0.955: two pairs.
  EXPECT_EQ((*m)[0].first, 5);
  EXPECT_EQ((*m)[0].second, 7);
  EXPECT_EQ((*m)[0].pairs, 2u);
  EXPECT_NEAR((*m)[0].highest, std::cos(0.3f), 1e-6);
  EXPECT_EQ((*m)[0].first_row, 0u);
  EXPECT_EQ((*m)[0].second_row, 2u);
  // 5-9: rows 0 and 1 against row 3, cos 0.4 = 0.921: two pairs, after 5-7's higher score;
  // 7-9: row 2 against row 3, cos 0.1 = 0.995, but one pair only, so last.
  EXPECT_EQ((*m)[1].first, 5);
  EXPECT_EQ((*m)[1].second, 9);
  EXPECT_EQ((*m)[1].pairs, 2u);
  EXPECT_EQ((*m)[1].second_row, 3u);
  EXPECT_EQ((*m)[2].first, 7);
  EXPECT_EQ((*m)[2].second, 9);
  EXPECT_EQ((*m)[2].pairs, 1u);
  EXPECT_NEAR((*m)[2].highest, std::cos(0.1f), 1e-6);

  auto none = matched_people(rows, 2, ids, 0.999f);
  ASSERT_TRUE(none.has_value());
  EXPECT_TRUE(none->empty());
  EXPECT_FALSE(matched_people(rows, 0, ids, 0.5f).has_value());
  EXPECT_FALSE(matched_people(rows, 2, std::vector<int>{5, 5}, 0.5f).has_value());
}

// ---------------------------------------------------------------------------------------------
// Plots

// A small well-formedness check: tags nest and close, attribute values are quoted, '&' starts an
// entity. Enough to catch what a hand-written SVG writer gets wrong.
bool well_formed_xml(const std::string& doc, std::string* why) {
  std::vector<std::string> stack;
  std::size_t i = 0;
  while (i < doc.size()) {
    if (doc[i] == '&') {
      if (!entity_at(doc, i)) {
        *why = "bare & at " + std::to_string(i);
        return false;
      }
      ++i;
      continue;
    }
    if (doc[i] != '<') {
      if (doc[i] == '>') {
        *why = "bare > at " + std::to_string(i);
        return false;
      }
      ++i;
      continue;
    }
    const std::size_t end = doc.find('>', i);
    if (end == std::string::npos) {
      *why = "unterminated tag";
      return false;
    }
    std::string tag = doc.substr(i + 1, end - i - 1);
    i = end + 1;
    if (tag.starts_with("?")) {
      continue;
    }
    if (std::count(tag.begin(), tag.end(), '"') % 2 != 0 || tag.find('<') != std::string::npos) {
      *why = "bad attributes in <" + tag + ">";
      return false;
    }
    if (tag.starts_with("/")) {
      if (stack.empty() || stack.back() != tag.substr(1)) {
        *why = "unbalanced </" + tag.substr(1) + ">";
        return false;
      }
      stack.pop_back();
      continue;
    }
    const bool self_closing = tag.ends_with("/");
    const std::string name = tag.substr(0, tag.find_first_of(" \t\n/"));
    if (!self_closing) {
      stack.push_back(name);
    }
  }
  if (!stack.empty()) {
    *why = "unclosed <" + stack.back() + ">";
    return false;
  }
  return true;
}

std::vector<DetSeries> sample_series() {
  std::vector<DetSeries> series;
  const std::vector<double> targets{1e-3, 1e-4, 1e-5};
  for (int m = 0; m < 2; ++m) {
    std::vector<float> imp = normal_scores(300000, 0.f, 60 + static_cast<unsigned>(m));
    std::vector<float> gen = normal_scores(5000, 3.5f + static_cast<float>(m), 70);
    DetSeries s;
    s.name = m == 0 ? "model <A> & \"B\"" : "fused (d' = 4.5)";
    s.points = det_curve(gen, imp, 20).value();
    s.operating_points = operating_points(gen, imp, targets).value();
    series.push_back(std::move(s));
  }
  return series;
}

class PlotDet : public ::testing::Test {
 protected:
  void SetUp() override { dir_ = testing::make_temp_dir("facelogin-eval-plot"); }
  void TearDown() override {
    std::error_code ec;
    if (std::getenv("FACELOGIN_KEEP_PLOTS") == nullptr) {
      fs::remove_all(dir_, ec);
    }
  }
  fs::path dir_;
};

TEST_F(PlotDet, WritesAWellFormedSvg) {
  PlotOptions o;
  o.title = "DET on synthetic scores";
  o.subtitle = "300,000 impostor and 5,000 genuine pairs per curve";
  const fs::path path = dir_ / "det.svg";
  Status s = write_det_plot(path, sample_series(), o);
  ASSERT_TRUE(s.ok()) << s.to_string();
  std::ifstream in(path);
  std::string doc((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_TRUE(doc.starts_with("<?xml")) << doc.substr(0, 40);
  EXPECT_NE(doc.find("<svg xmlns=\"http://www.w3.org/2000/svg\""), std::string::npos);
  EXPECT_TRUE(doc.ends_with("</svg>\n"));
  std::string why;
  EXPECT_TRUE(well_formed_xml(doc, &why)) << why;
  EXPECT_NE(doc.find("model &lt;A&gt; &amp; &quot;B&quot;"), std::string::npos);
  EXPECT_NE(doc.find("False match rate (FMR)"), std::string::npos);
  EXPECT_NE(doc.find("FMR 1e-5"), std::string::npos);
  EXPECT_EQ(std::count(doc.begin(), doc.end(), '\0'), 0);
  std::cout << "SVG written to " << path << " (FACELOGIN_KEEP_PLOTS=1 keeps it)\n";
}

TEST_F(PlotDet, WritesAPngWithTheCurvesColours) {
  const fs::path path = dir_ / "det.png";
  Status s = write_det_plot(path, sample_series(), PlotOptions{});
  ASSERT_TRUE(s.ok()) << s.to_string();
  cv::Mat img = cv::imread(path.string());
  ASSERT_FALSE(img.empty());
  EXPECT_EQ(img.cols, 960);
  EXPECT_EQ(img.rows, 720);
  // Both curve colours (first two of the palette, in BGR) are present.
  int blue = 0;
  int red = 0;
  for (int y = 0; y < img.rows; ++y) {
    for (int x = 0; x < img.cols; ++x) {
      const cv::Vec3b p = img.at<cv::Vec3b>(y, x);
      blue += (std::abs(p[0] - 180) < 20 && std::abs(p[1] - 119) < 20 && std::abs(p[2] - 31) < 20);
      red += (std::abs(p[0] - 40) < 20 && std::abs(p[1] - 39) < 20 && std::abs(p[2] - 214) < 20);
    }
  }
  EXPECT_GT(blue, 200);
  EXPECT_GT(red, 200);
  std::cout << "PNG written to " << path << " (FACELOGIN_KEEP_PLOTS=1 keeps it)\n";
}

TEST_F(PlotDet, RejectsBadRequests) {
  std::vector<DetSeries> series = sample_series();
  EXPECT_EQ(write_det_plot(dir_ / "det.pdf", series).code(), ErrorCode::kInvalidArgument);
  EXPECT_EQ(write_det_plot(dir_ / "det.svg", std::vector<DetSeries>{}).code(),
            ErrorCode::kInvalidArgument);
  PlotOptions tiny;
  tiny.width = 10;
  EXPECT_EQ(write_det_plot(dir_ / "det.svg", series, tiny).code(), ErrorCode::kInvalidArgument);
  EXPECT_EQ(write_det_plot(dir_ / "missing-dir" / "det.png", series).code(), ErrorCode::kIoError);
}

TEST_F(PlotDet, DrawsCurvesWithoutResolvablePointsOrWithZeroFnmr) {
  // A perfect recogniser (FNMR 0 everywhere past FMR 0) and too few impostors for any marker.
  std::vector<float> imp{0.1f, 0.2f, 0.3f};
  std::vector<float> gen{0.9f};
  DetSeries s;
  s.name = "perfect";
  s.points = det_curve(gen, imp).value();
  s.operating_points = operating_points(gen, imp, std::vector<double>{1e-3}).value();
  std::vector<DetSeries> series{s};
  EXPECT_TRUE(write_det_plot(dir_ / "p.svg", series).ok());
  EXPECT_TRUE(write_det_plot(dir_ / "p.png", series).ok());
}

// ---------------------------------------------------------------------------------------------
// Embedding cache

class EvalCache : public ::testing::Test {
 protected:
  void SetUp() override { dir_ = testing::make_temp_dir("facelogin-eval-cache"); }
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
  static EmbeddingCache sample() {
    EmbeddingCache c;
    c.recognizer_id = "dlib-resnet-v1";
    c.fingerprint = "sha256:abc;align=v2";
    c.dim = 3;
    c.entries["Ann/Ann_0001.jpg"] = std::vector<float>{0.6f, 0.8f, 0.f};
    c.entries["Ann/Ann_0002.jpg"] = std::vector<float>{0.f, 1.f, -0.f};
    c.entries["Bob/Bob_0001.jpg"] = std::nullopt;  // no face
    c.entries["Cy/Cy_0001.jpg"] = std::vector<float>{1.f, 0.f, std::nextafter(0.f, 1.f)};
    return c;
  }
  fs::path dir_;
};

TEST_F(EvalCache, RoundTrips) {
  const EmbeddingCache c = sample();
  const fs::path path = dir_ / "sub" / "cache.bin";
  ASSERT_TRUE(save_embedding_cache(path, c).ok());
  Result<EmbeddingCache> r = load_embedding_cache(path, c.recognizer_id, c.fingerprint);
  ASSERT_TRUE(r.has_value()) << r.error().to_string();
  EXPECT_EQ(r->recognizer_id, c.recognizer_id);
  EXPECT_EQ(r->fingerprint, c.fingerprint);
  EXPECT_EQ(r->dim, 3u);
  EXPECT_EQ(r->entries, c.entries);  // bit-exact floats, no-face markers kept
  EXPECT_FALSE(fs::exists(dir_ / "sub" / "cache.bin.tmp"));
}

TEST_F(EvalCache, IgnoresAnotherRecognisersCache) {
  const fs::path path = dir_ / "cache.bin";
  ASSERT_TRUE(save_embedding_cache(path, sample()).ok());
  Result<EmbeddingCache> other = load_embedding_cache(path, "sface-2021", "sha256:abc;align=v2");
  ASSERT_FALSE(other.has_value());
  EXPECT_EQ(other.error().code(), ErrorCode::kModelMismatch);
  Result<EmbeddingCache> changed = load_embedding_cache(path, "dlib-resnet-v1", "sha256:def");
  ASSERT_FALSE(changed.has_value());
  EXPECT_EQ(changed.error().code(), ErrorCode::kModelMismatch);
  Result<EmbeddingCache> missing = load_embedding_cache(dir_ / "none.bin", "x", "y");
  ASSERT_FALSE(missing.has_value());
  EXPECT_EQ(missing.error().code(), ErrorCode::kNotFound);
}

TEST_F(EvalCache, RejectsEveryTruncationAndEveryFlippedByte) {
  const EmbeddingCache c = sample();
  const fs::path good = dir_ / "good.bin";
  ASSERT_TRUE(save_embedding_cache(good, c).ok());
  std::ifstream in(good, std::ios::binary);
  const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const fs::path bad = dir_ / "bad.bin";
  const auto write = [&bad](const std::string& b) {
    std::ofstream out(bad, std::ios::binary | std::ios::trunc);
    out << b;
  };
  for (std::size_t len = 0; len < bytes.size(); ++len) {
    write(bytes.substr(0, len));
    Result<EmbeddingCache> r = load_embedding_cache(bad, c.recognizer_id, c.fingerprint);
    ASSERT_FALSE(r.has_value()) << "truncated to " << len;
    EXPECT_EQ(r.error().code(), ErrorCode::kCorrupt) << len;
  }
  for (std::size_t pos = 0; pos < bytes.size(); ++pos) {
    std::string b = bytes;
    b[pos] = static_cast<char>(b[pos] ^ 0x40);
    write(b);
    Result<EmbeddingCache> r = load_embedding_cache(bad, c.recognizer_id, c.fingerprint);
    ASSERT_FALSE(r.has_value()) << "flipped byte " << pos;
    EXPECT_EQ(r.error().code(), ErrorCode::kCorrupt) << pos;
  }
  write(bytes + "x");
  EXPECT_FALSE(load_embedding_cache(bad, c.recognizer_id, c.fingerprint).has_value());
}

TEST_F(EvalCache, RejectsEmbeddingsOfTheWrongLength) {
  EmbeddingCache c = sample();
  c.entries["Dee/Dee_0001.jpg"] = std::vector<float>{1.f};
  EXPECT_EQ(save_embedding_cache(dir_ / "c.bin", c).code(), ErrorCode::kInvalidArgument);
}

TEST_F(EvalCache, ScoresPairsWithNoFaceAsMinusInfinity) {
  const EmbeddingCache c = sample();
  std::vector<Pair> pairs{{0, "Ann/Ann_0001.jpg", "Ann/Ann_0002.jpg", true},
                          {0, "Ann/Ann_0001.jpg", "Bob/Bob_0001.jpg", false},
                          {0, "Cy/Cy_0001.jpg", "Ann/Ann_0001.jpg", false}};
  Result<std::vector<float>> s = score_pairs(pairs, c);
  ASSERT_TRUE(s.has_value()) << s.error().to_string();
  EXPECT_FLOAT_EQ((*s)[0], 0.8f);
  EXPECT_EQ((*s)[1], kNegInf);
  EXPECT_FLOAT_EQ((*s)[2], 0.6f);
  pairs.push_back({0, "Ann/Ann_0001.jpg", "Zed/Zed_0001.jpg", false});
  Result<std::vector<float>> missing = score_pairs(pairs, c);
  ASSERT_FALSE(missing.has_value());
  EXPECT_EQ(missing.error().code(), ErrorCode::kNotFound);
  EXPECT_NE(missing.error().message().find("Zed/Zed_0001.jpg"), std::string::npos);
}

// ---------------------------------------------------------------------------------------------
// check_first_pass

TEST(FirstPassCheck, CountsSecondPassesAndChangedDecisionsOverOrderedPairs) {
  // Rows 0 and 1 are one person, row 2 another, row 3 has no face. Only row 0's first-pass
  // template differs from its full one.
  const std::vector<float> full{1, 0, 1, 0, 0, 1, 0, 0};
  const std::vector<float> first{0.8f, 0.6f, 1, 0, 0, 1, 0, 0};
  const std::vector<int> identities{0, 0, 1, -1};
  for (int threads : {1, 2}) {
    auto wide = eval::check_first_pass(first, full, 2, identities, 0.9f, 0.15f, threads);
    ASSERT_TRUE(wide.has_value()) << wide.error().to_string();
    EXPECT_NEAR(wide->max_difference, 0.6f, 1e-6);  // (0, 2): 0.6 first pass, 0 full
    EXPECT_EQ(wide->genuine, 2u);
    EXPECT_EQ(wide->impostor, 4u);
    EXPECT_EQ(wide->genuine_second_pass, 2u);  // 0.8 and 1.0, both within 0.15 of 0.9
    EXPECT_EQ(wide->impostor_second_pass, 0u);
    EXPECT_EQ(wide->changed_decisions, 0u);
  }
  // A margin narrower than the difference: (0, 1) is rejected on the first pass (0.8) although
  // the full templates match (1.0).
  auto narrow = eval::check_first_pass(first, full, 2, identities, 0.9f, 0.05f);
  ASSERT_TRUE(narrow.has_value());
  EXPECT_EQ(narrow->genuine_second_pass, 0u);
  EXPECT_EQ(narrow->changed_decisions, 1u);
}

TEST(FirstPassCheck, RefusesMalformedInput) {
  const std::vector<float> two{1, 0, 0, 1};
  const std::vector<int> identities{0, 1};
  EXPECT_FALSE(eval::check_first_pass(two, two, 0, identities, 0.5f, 0.1f).has_value());
  EXPECT_FALSE(eval::check_first_pass(two, {two.data(), 2}, 2, identities, 0.5f, 0.1f)
                   .has_value());
  auto negative = eval::check_first_pass(two, two, 2, identities, 0.5f, -0.1f);
  ASSERT_FALSE(negative.has_value());
  EXPECT_EQ(negative.error().code(), ErrorCode::kInvalidArgument);
}

}  // namespace
}  // namespace facelogin::eval
