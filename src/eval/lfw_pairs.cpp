// Parsing of LFW View-2 pairs files.

#include <fmt/core.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <fstream>
#include <iterator>
#include <system_error>

#include "facelogin/eval.h"

namespace facelogin::eval {
namespace {

constexpr int kMaxImageNumber = 9999;
constexpr std::uintmax_t kMaxPairsFileBytes = 64u << 20;

// Splits on runs of spaces and tabs.
std::vector<std::string_view> split_fields(std::string_view line) {
  std::vector<std::string_view> fields;
  std::size_t i = 0;
  while (i < line.size()) {
    while (i < line.size() && (line[i] == ' ' || line[i] == '\t')) {
      ++i;
    }
    std::size_t start = i;
    while (i < line.size() && line[i] != ' ' && line[i] != '\t') {
      ++i;
    }
    if (i > start) {
      fields.push_back(line.substr(start, i - start));
    }
  }
  return fields;
}

// A strictly positive decimal integer of at most `max`, digits only (no sign, no spaces).
std::optional<int> parse_positive(std::string_view s, int max) {
  if (s.empty() || s.size() > 9) {
    return std::nullopt;
  }
  int value = 0;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), value);
  if (ec != std::errc() || end != s.data() + s.size() || value < 1 || value > max) {
    return std::nullopt;
  }
  return value;
}

bool valid_name(std::string_view name) {
  if (name.empty() || name.size() > 200 || name.front() == '.') {
    return false;
  }
  return std::all_of(name.begin(), name.end(),
                     [](char c) { return c > ' ' && c < 0x7f && c != '/' && c != '\\'; });
}

// Lines of `text`, without their "\n" or "\r\n" ends.
std::vector<std::string_view> split_lines(std::string_view text) {
  std::vector<std::string_view> lines;
  std::size_t start = 0;
  while (start < text.size()) {
    std::size_t end = text.find('\n', start);
    if (end == std::string_view::npos) {
      end = text.size();
    }
    std::string_view line = text.substr(start, end - start);
    if (!line.empty() && line.back() == '\r') {
      line.remove_suffix(1);
    }
    lines.push_back(line);
    start = end + 1;
  }
  return lines;
}

bool blank(std::string_view line) {
  return std::all_of(line.begin(), line.end(), [](char c) { return c == ' ' || c == '\t'; });
}

}  // namespace

std::string lfw_image_key(std::string_view name, int number) {
  return fmt::format("{0}/{0}_{1:04d}.jpg", name, number);
}

std::string_view key_identity(std::string_view key) {
  std::size_t slash = key.find('/');
  return slash == std::string_view::npos ? key : key.substr(0, slash);
}

Result<PairsProtocol> parse_pairs(std::string_view text) {
  std::vector<std::string_view> lines = split_lines(text);
  // Trailing blank lines are harmless (an editor's final newline, or several).
  while (!lines.empty() && blank(lines.back())) {
    lines.pop_back();
  }
  if (lines.empty()) {
    return make_error(ErrorCode::kInvalidArgument,
                      "line 1: missing header \"<folds> <pairs_per_fold>\" (the file is empty)");
  }
  std::vector<std::string_view> header = split_fields(lines[0]);
  std::optional<int> folds;
  std::optional<int> per_fold;
  if (header.size() == 2) {
    folds = parse_positive(header[0], 1000);
    per_fold = parse_positive(header[1], 1000000);
  }
  if (!folds || !per_fold) {
    return make_error(ErrorCode::kInvalidArgument,
                      fmt::format("line 1: expected the header \"<folds> <pairs_per_fold>\" (two "
                                  "positive integers), found \"{}\"",
                                  lines[0].substr(0, 80)));
  }
  const std::size_t expected =
      static_cast<std::size_t>(*folds) * static_cast<std::size_t>(*per_fold) * 2;
  const std::size_t found = lines.size() - 1;
  if (found > expected) {
    return make_error(ErrorCode::kInvalidArgument,
                      fmt::format("line {}: too many lines: the header \"{} {}\" announces {} "
                                  "pairs, the file has {} lines after it",
                                  expected + 2, *folds, *per_fold, expected, found));
  }

  PairsProtocol protocol;
  protocol.folds = *folds;
  protocol.pairs_per_fold = *per_fold;
  protocol.pairs.reserve(found);
  for (std::size_t k = 0; k < found; ++k) {
    const std::size_t line_number = k + 2;
    const std::size_t in_fold = k % (static_cast<std::size_t>(*per_fold) * 2);
    const bool same = in_fold < static_cast<std::size_t>(*per_fold);
    const int fold = static_cast<int>(k / (static_cast<std::size_t>(*per_fold) * 2));
    std::vector<std::string_view> f = split_fields(lines[line_number - 1]);
    const std::size_t want = same ? 3 : 4;
    if (f.size() != want) {
      return make_error(
          ErrorCode::kInvalidArgument,
          fmt::format("line {}: expected a {} line \"{}\" (fold {}, pair {} of {}), found {} "
                      "field{}",
                      line_number, same ? "same-person" : "different-person",
                      same ? "name i j" : "name1 i name2 j", fold + 1, in_fold + 1, 2 * *per_fold,
                      f.size(), f.size() == 1 ? "" : "s"));
    }
    std::string_view name_a = f[0];
    std::string_view name_b = same ? f[0] : f[2];
    std::optional<int> num_a = parse_positive(f[1], kMaxImageNumber);
    std::optional<int> num_b = parse_positive(same ? f[2] : f[3], kMaxImageNumber);
    if (!valid_name(name_a) || !valid_name(name_b)) {
      return make_error(ErrorCode::kInvalidArgument,
                        fmt::format("line {}: a name must be printable ASCII without '/', '\\' "
                                    "or a leading '.'",
                                    line_number));
    }
    if (!num_a || !num_b) {
      return make_error(ErrorCode::kInvalidArgument,
                        fmt::format("line {}: image numbers must be integers from 1 to {}",
                                    line_number, kMaxImageNumber));
    }
    if (same && *num_a == *num_b) {
      return make_error(
          ErrorCode::kInvalidArgument,
          fmt::format("line {}: a same-person pair names image {} twice", line_number, *num_a));
    }
    if (!same && name_a == name_b) {
      return make_error(
          ErrorCode::kInvalidArgument,
          fmt::format("line {}: a different-person pair names \"{}\" twice", line_number, name_a));
    }
    protocol.pairs.push_back(
        Pair{fold, lfw_image_key(name_a, *num_a), lfw_image_key(name_b, *num_b), same});
  }
  if (found < expected) {
    return make_error(ErrorCode::kInvalidArgument,
                      fmt::format("line {}: the file ends early: the header \"{} {}\" announces "
                                  "{} pairs, the file has {}",
                                  found + 2, *folds, *per_fold, expected, found));
  }
  return protocol;
}

Result<PairsProtocol> read_pairs_file(const std::filesystem::path& path) {
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec)) {
    return make_error(ErrorCode::kNotFound, fmt::format("pairs file {} not found", path.string()));
  }
  const std::uintmax_t size = std::filesystem::file_size(path, ec);
  if (ec || size > kMaxPairsFileBytes) {
    return make_error(ErrorCode::kIoError,
                      fmt::format("cannot read pairs file {}: {}", path.string(),
                                  ec ? ec.message() : "larger than 64 MiB"));
  }
  std::ifstream in(path, std::ios::binary);
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (in.bad()) {
    return make_error(ErrorCode::kIoError, fmt::format("cannot read pairs file {}", path.string()));
  }
  Result<PairsProtocol> parsed = parse_pairs(text);
  if (!parsed) {
    return make_error(parsed.error().code(),
                      fmt::format("{}: {}", path.string(), parsed.error().message()));
  }
  return parsed;
}

std::vector<std::string> unique_image_keys(std::span<const Pair> pairs) {
  std::vector<std::string> keys;
  keys.reserve(pairs.size() * 2);
  for (const Pair& p : pairs) {
    keys.push_back(p.first);
    keys.push_back(p.second);
  }
  std::sort(keys.begin(), keys.end());
  keys.erase(std::unique(keys.begin(), keys.end()), keys.end());
  return keys;
}

namespace {

// "<identity>/<file>" for every regular file of every identity folder below `dir` that `accept`
// takes (identity name, file name), sorted; symlinks are not followed.
template <typename Accept>
Result<std::vector<std::string>> list_by_identity(const std::filesystem::path& dir,
                                                  const Accept& accept) {
  std::error_code ec;
  if (!std::filesystem::is_directory(dir, ec)) {
    return make_error(ErrorCode::kNotFound, fmt::format("{} is not a directory", dir.string()));
  }
  std::vector<std::string> keys;
  for (std::filesystem::directory_iterator person(dir, ec), end; !ec && person != end;
       person.increment(ec)) {
    std::error_code kind;
    if (person->is_symlink(kind) || !person->is_directory(kind)) {
      continue;
    }
    const std::string name = person->path().filename().string();
    for (std::filesystem::directory_iterator file(person->path(), ec); !ec && file != end;
         file.increment(ec)) {
      const std::string f = file->path().filename().string();
      if (accept(name, f) && !file->is_symlink(kind) && file->is_regular_file(kind)) {
        keys.push_back(name + "/" + f);
      }
    }
  }
  if (ec) {
    return make_error(ErrorCode::kIoError,
                      fmt::format("cannot list {}: {}", dir.string(), ec.message()));
  }
  std::sort(keys.begin(), keys.end());
  return keys;
}

}  // namespace

Result<std::vector<std::string>> list_lfw_images(const std::filesystem::path& dir) {
  return list_by_identity(dir, [](std::string_view name, std::string_view file) {
    // name + "_" + 4 digits + ".jpg"
    if (file.size() != name.size() + 9 || !file.starts_with(name) ||
        file[name.size()] != '_' || !file.ends_with(".jpg")) {
      return false;
    }
    const std::string_view digits = file.substr(name.size() + 1, 4);
    return std::all_of(digits.begin(), digits.end(), [](char c) { return c >= '0' && c <= '9'; });
  });
}

Result<std::vector<std::string>> list_identity_images(const std::filesystem::path& dir) {
  return list_by_identity(dir, [](std::string_view, std::string_view file) {
    std::string lower(file);
    std::transform(lower.begin(), lower.end(), lower.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    return !lower.starts_with(".") &&
           (lower.ends_with(".jpg") || lower.ends_with(".jpeg") || lower.ends_with(".png"));
  });
}

}  // namespace facelogin::eval
