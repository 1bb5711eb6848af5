// Liveness evaluation: the NUAA-style layout, attempts, and APCER/BPCER (ISO/IEC 30107-3).

#include <fmt/core.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <optional>
#include <system_error>

#include "facelogin/eval.h"

namespace facelogin::eval {
namespace {

bool all_digits(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

// "<subject>_<glasses>_<type>_<session>_<frame>.jpg" with every field digits.
std::optional<SpoofFrame> parse_name(std::string_view subject_dir, std::string_view file) {
  if (!file.ends_with(".jpg")) {
    return std::nullopt;
  }
  file.remove_suffix(4);
  std::vector<std::string_view> fields;
  std::size_t start = 0;
  while (true) {
    const std::size_t pos = file.find('_', start);
    fields.push_back(file.substr(start, pos == std::string_view::npos ? pos : pos - start));
    if (pos == std::string_view::npos) {
      break;
    }
    start = pos + 1;
  }
  if (fields.size() != 5 || fields[0] != subject_dir ||
      !std::all_of(fields.begin(), fields.end(), all_digits) || fields[4].size() > 6) {
    return std::nullopt;
  }
  SpoofFrame f;
  f.subject = std::string(fields[0]);
  f.type = std::string(fields[2]);
  f.sequence = fmt::format("{}_{}_{}_{}", fields[0], fields[1], fields[2], fields[3]);
  std::from_chars(fields[4].data(), fields[4].data() + fields[4].size(), f.frame);
  return f;
}

}  // namespace

Result<std::vector<SpoofFrame>> list_spoof_frames(const std::filesystem::path& dir) {
  std::vector<SpoofFrame> frames;
  bool any_folder = false;
  std::error_code ec;
  for (const auto& [folder, live] :
       {std::pair{"ClientRaw", true}, std::pair{"ImposterRaw", false}}) {
    const std::filesystem::path root = dir / folder;
    if (!std::filesystem::is_directory(root, ec)) {
      continue;
    }
    any_folder = true;
    for (std::filesystem::directory_iterator subject(root, ec), end; !ec && subject != end;
         subject.increment(ec)) {
      std::error_code kind;
      if (subject->is_symlink(kind) || !subject->is_directory(kind)) {
        continue;
      }
      const std::string subject_name = subject->path().filename().string();
      for (std::filesystem::directory_iterator file(subject->path(), ec); !ec && file != end;
           file.increment(ec)) {
        if (!file->is_regular_file(kind)) {
          continue;
        }
        const std::string name = file->path().filename().string();
        if (auto f = parse_name(subject_name, name)) {
          f->key = fmt::format("{}/{}/{}", folder, subject_name, name);
          f->live = live;
          frames.push_back(std::move(*f));
        }
      }
    }
    if (ec) {
      return make_error(ErrorCode::kIoError,
                        fmt::format("cannot list {}: {}", root.string(), ec.message()));
    }
  }
  if (!any_folder) {
    return make_error(ErrorCode::kNotFound,
                      fmt::format("{} holds neither ClientRaw/ nor ImposterRaw/ (the NUAA layout)",
                                  dir.string()));
  }
  std::sort(frames.begin(), frames.end(), [](const SpoofFrame& a, const SpoofFrame& b) {
    if (a.live != b.live) {
      return a.live;
    }
    if (a.sequence != b.sequence) {
      return a.sequence < b.sequence;
    }
    return a.frame < b.frame;
  });
  return frames;
}

std::vector<SpoofAttempt> make_spoof_attempts(std::span<const SpoofFrame> frames,
                                              std::span<const float> scores,
                                              int frames_per_attempt) {
  std::vector<SpoofAttempt> attempts;
  const std::size_t n = std::max(1, frames_per_attempt);
  std::size_t i = 0;
  while (i < frames.size() && i < scores.size()) {
    std::size_t j = i;
    while (j < frames.size() && j < scores.size() && frames[j].live == frames[i].live &&
           frames[j].sequence == frames[i].sequence) {
      ++j;
    }
    const std::size_t length = j - i;
    const std::size_t count = length < n ? 1 : length / n;
    const std::size_t size = length < n ? length : n;
    for (std::size_t a = 0; a < count; ++a) {
      SpoofAttempt attempt;
      attempt.subject = frames[i].subject;
      attempt.live = frames[i].live;
      attempt.type = frames[i].type;
      double sum = 0;
      for (std::size_t k = i + a * size; k < i + (a + 1) * size; ++k) {
        attempt.frames.push_back(k);
        sum += scores[k];
      }
      attempt.score = static_cast<float>(sum / static_cast<double>(size));
      attempts.push_back(std::move(attempt));
    }
    i = j;
  }
  return attempts;
}

SpoofRates spoof_rates(std::span<const float> scores, std::span<const char> live,
                       std::span<const std::string> types, float threshold) {
  SpoofRates r;
  r.threshold = threshold;
  std::size_t rejected = 0;
  std::map<std::string, std::size_t> accepted;
  const std::size_t n = std::min({scores.size(), live.size(), types.size()});
  for (std::size_t i = 0; i < n; ++i) {
    const bool accept = scores[i] >= threshold;
    if (live[i] != 0) {
      ++r.bona_fide;
      rejected += accept ? 0 : 1;
    } else {
      ++r.attacks;
      ++r.attacks_by_type[types[i]];
      accepted[types[i]] += accept ? 1 : 0;
    }
  }
  r.bpcer = r.bona_fide == 0 ? 0.0 : static_cast<double>(rejected) / r.bona_fide;
  for (const auto& [type, count] : r.attacks_by_type) {
    const double apcer = static_cast<double>(accepted[type]) / static_cast<double>(count);
    r.apcer[type] = apcer;
    r.apcer_worst = std::max(r.apcer_worst, apcer);
  }
  return r;
}

Result<float> threshold_for_bpcer(std::span<const float> bona_fide, double max_bpcer) {
  if (bona_fide.empty()) {
    return make_error(ErrorCode::kInvalidArgument, "no bona fide scores to place a threshold");
  }
  if (!(max_bpcer >= 0.0 && max_bpcer < 1.0)) {
    return make_error(ErrorCode::kInvalidArgument, "the BPCER target must be in [0, 1)");
  }
  std::vector<float> sorted(bona_fide.begin(), bona_fide.end());
  if (std::any_of(sorted.begin(), sorted.end(), [](float s) { return std::isnan(s); })) {
    return make_error(ErrorCode::kInvalidArgument, "a bona fide score is NaN");
  }
  std::sort(sorted.begin(), sorted.end());
  // At most k scores may fall below the threshold: the threshold is the (k+1)-th lowest score.
  const auto k =
      static_cast<std::size_t>(std::floor(max_bpcer * static_cast<double>(sorted.size())));
  return sorted[std::min(k, sorted.size() - 1)];
}

}  // namespace facelogin::eval
