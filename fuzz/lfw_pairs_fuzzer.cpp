// libFuzzer target for the LFW View-2 pairs reader: parse_pairs on the input, read_pairs_file on
// the same bytes written to /dev/shm, and unique_image_keys on the result.
//
// Contract (include/facelogin/eval.h): success, or kInvalidArgument whose message starts with
// "line N:" (N at least 1 and at most one past the last line); read_pairs_file gives the same
// answer with the file's name in front. On success the header's counts hold (folds x pairs x 2
// pairs, in fold order, each fold's same pairs first), every key is "Name/Name_NNNN.jpg" with a
// name that cannot leave the images folder, same pairs share the name and differ in number,
// different pairs differ in name; unique_image_keys is sorted, without repeats, and holds
// exactly the keys of the pairs.
//
// Run: build-fuzz/fuzz/lfw_pairs_fuzzer CORPUS -dict=fuzz/lfw_pairs.dict

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <set>
#include <string>

#include "facelogin/eval.h"
#include "fuzz_util.h"

namespace {

namespace fz = facelogin::fuzz;
using facelogin::ErrorCode;
using facelogin::eval::Pair;

// "Name/Name_NNNN.jpg": returns the name and number, or false.
bool split_key(const std::string& key, std::string* name, int* number) {
  const std::size_t slash = key.find('/');
  if (slash == std::string::npos || slash == 0) {
    return false;
  }
  *name = key.substr(0, slash);
  const std::string expected_prefix = *name + "/" + *name + "_";
  if (!key.starts_with(expected_prefix) || !key.ends_with(".jpg") ||
      key.size() != expected_prefix.size() + 8) {
    return false;
  }
  const std::string digits = key.substr(expected_prefix.size(), 4);
  if (!std::all_of(digits.begin(), digits.end(), [](char c) { return c >= '0' && c <= '9'; })) {
    return false;
  }
  *number = std::stoi(digits);
  return true;
}

bool safe_name(const std::string& name) {
  return !name.empty() && name.size() <= 200 && name.front() != '.' &&
         std::all_of(name.begin(), name.end(),
                     [](char c) { return c > ' ' && c < 0x7f && c != '/' && c != '\\'; });
}

std::size_t count_lines(std::string_view text) {
  return static_cast<std::size_t>(std::count(text.begin(), text.end(), '\n')) + 1;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text = fz::as_text(data, size);
  const auto parsed = facelogin::eval::parse_pairs(text);

  const std::filesystem::path file = fz::scratch_dir() / "pairs.txt";
  fz::write_file(file, text);
  const auto read = facelogin::eval::read_pairs_file(file);
  FUZZ_REQUIRE(parsed.has_value() == read.has_value(), std::string(text.substr(0, 200)));

  if (!parsed) {
    const std::string& message = parsed.error().message();
    FUZZ_REQUIRE(parsed.error().code() == ErrorCode::kInvalidArgument, message);
    FUZZ_REQUIRE(message.starts_with("line "), message);
    const std::size_t colon = message.find(':');
    FUZZ_REQUIRE(colon != std::string::npos && colon > 5, message);
    const std::string number = message.substr(5, colon - 5);
    FUZZ_REQUIRE(std::all_of(number.begin(), number.end(), [](char c) { return c >= '0' && c <= '9'; }),
                 message);
    const std::size_t line = std::stoull(number);
    FUZZ_REQUIRE(line >= 1 && line <= count_lines(text) + 1, message);
    FUZZ_REQUIRE(read.error().code() == ErrorCode::kInvalidArgument &&
                     read.error().message() == file.string() + ": " + message,
                 read.error().message());
    return 0;
  }

  const auto& protocol = *parsed;
  FUZZ_REQUIRE(protocol.folds >= 1 && protocol.pairs_per_fold >= 1, "counts");
  const std::size_t per_fold = static_cast<std::size_t>(protocol.pairs_per_fold) * 2;
  FUZZ_REQUIRE(protocol.pairs.size() == static_cast<std::size_t>(protocol.folds) * per_fold,
               "pair count");
  FUZZ_REQUIRE(read->pairs.size() == protocol.pairs.size(), "read_pairs_file differs");
  std::set<std::string> keys;
  for (std::size_t k = 0; k < protocol.pairs.size(); ++k) {
    const Pair& p = protocol.pairs[k];
    FUZZ_REQUIRE(p.fold == static_cast<int>(k / per_fold), p.first);
    FUZZ_REQUIRE(p.same == (k % per_fold < static_cast<std::size_t>(protocol.pairs_per_fold)),
                 p.first);
    std::string name_a, name_b;
    int number_a = 0, number_b = 0;
    FUZZ_REQUIRE(split_key(p.first, &name_a, &number_a) && split_key(p.second, &name_b, &number_b),
                 p.first + " " + p.second);
    FUZZ_REQUIRE(safe_name(name_a) && safe_name(name_b), p.first + " " + p.second);
    FUZZ_REQUIRE(number_a >= 1 && number_a <= 9999 && number_b >= 1 && number_b <= 9999, p.first);
    if (p.same) {
      FUZZ_REQUIRE(name_a == name_b && number_a != number_b, p.first + " " + p.second);
    } else {
      FUZZ_REQUIRE(name_a != name_b, p.first + " " + p.second);
    }
    FUZZ_REQUIRE(facelogin::eval::key_identity(p.first) == name_a, p.first);
    const Pair& r = read->pairs[k];
    FUZZ_REQUIRE(r.first == p.first && r.second == p.second && r.same == p.same && r.fold == p.fold,
                 "read_pairs_file differs");
    keys.insert(p.first);
    keys.insert(p.second);
  }
  const std::vector<std::string> unique = facelogin::eval::unique_image_keys(protocol.pairs);
  FUZZ_REQUIRE(std::vector<std::string>(keys.begin(), keys.end()) == unique, "unique_image_keys");
  return 0;
}
