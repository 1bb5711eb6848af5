#include "server/api_util.h"

#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <span>

namespace facelogin::server {
namespace {

json box_json(const std::optional<Box>& box) {
  if (!box) {
    return nullptr;
  }
  return {{"x", box->x}, {"y", box->y}, {"width", box->width}, {"height", box->height}};
}

json quality_json(const QualityReport& q) {
  json issues = json::array();
  for (QualityIssue issue : q.issues) {
    issues.push_back(std::string(quality_issue_name(issue)));
  }
  return {{"issues", issues},
          {"pose", {{"yaw", q.pose.yaw}, {"pitch", q.pose.pitch}, {"roll", q.pose.roll}}}};
}

DecodeLimits frame_limits() {
  DecodeLimits limits;
  limits.max_pixels = 1920 * 1200;
  limits.max_side = 2048;
  limits.max_jpeg_scans = 32;
  limits.max_png_chunks = 1024;
  return limits;
}

}  // namespace

std::vector<std::string> split_path(std::string_view path) {
  std::vector<std::string> parts;
  std::size_t start = 1;
  while (start <= path.size()) {
    const std::size_t end = std::min(path.find('/', start), path.size());
    parts.emplace_back(path.substr(start, end - start));
    start = end + 1;
  }
  return parts;
}

bool match(const std::string& pattern, std::string_view path, std::vector<std::string>* params) {
  if (!path.starts_with('/')) {
    return false;  // split_path skips the first character, which must be the '/'
  }
  const auto want = split_path(pattern);
  const auto have = split_path(path);
  if (want.size() != have.size()) {
    return false;
  }
  std::vector<std::string> found;
  for (std::size_t i = 0; i < want.size(); ++i) {
    if (want[i].size() > 2 && want[i].front() == '{' && want[i].back() == '}') {
      if (have[i].empty()) {
        return false;
      }
      found.push_back(have[i]);
    } else if (want[i] != have[i]) {
      return false;
    }
  }
  *params = std::move(found);
  return true;
}

std::string_view path_of(const Request& request) {
  std::string_view target = request.target();
  return target.substr(0, target.find('?'));
}

std::string header(const Request& request, std::string_view name) {
  auto it = request.find(name);
  return it == request.end() ? std::string() : std::string(it->value());
}

Result<std::string> string_field(const json& body, const char* name, std::string fallback) {
  const auto it = body.find(name);
  if (it == body.end() || it->is_null()) {
    return fallback;
  }
  if (!it->is_string()) {
    return make_error(ErrorCode::kInvalidArgument, fmt::format("{} must be a string", name));
  }
  return it->get<std::string>();
}

Result<bool> bool_field(const json& body, const char* name, bool fallback) {
  const auto it = body.find(name);
  if (it == body.end() || it->is_null()) {
    return fallback;
  }
  if (!it->is_boolean()) {
    return make_error(ErrorCode::kInvalidArgument,
                      fmt::format("{} must be true or false", name));
  }
  return it->get<bool>();
}

std::optional<std::int64_t> parse_id(std::string_view text) {
  if (text.empty() || text.size() > 18 ||
      !std::all_of(text.begin(), text.end(), [](char c) { return c >= '0' && c <= '9'; })) {
    return std::nullopt;
  }
  std::int64_t value = 0;
  for (char c : text) {
    value = value * 10 + (c - '0');
  }
  return value;
}

json population_json(const PopulationStatus& p) {
  const PopulationEstimate& e = p.estimate;
  json out = {{"population_threshold", p.enabled},
              {"base_threshold", p.base_threshold},
              {"operating_threshold", p.operating_threshold},
              {"users", e.users},
              {"templates", e.templates},
              {"impostor_claims", e.claims},
              {"usable", e.usable},
              {"target_fmr", e.target_fmr},
              {"method", e.method}};
  out["fmr_at_base"] = p.fmr_at_base ? json(*p.fmr_at_base) : json(nullptr);
  out["fmr_at_operating"] = p.fmr_at_operating ? json(*p.fmr_at_operating) : json(nullptr);
  return out;
}

json frame_json(const ImageReport& report, const Image& image) {
  return {{"outcome", std::string(frame_outcome_name(report.outcome))},
          {"message", report.message},
          {"advice", frame_advice(report)},
          {"box", box_json(report.box)},
          {"frame", {{"width", image.width}, {"height", image.height}}},
          {"quality", quality_json(report.quality)}};
}

Result<Image> decode_frame(const Request& request) {
  const auto& body = request.body();
  return decode_image(
      std::span(reinterpret_cast<const std::uint8_t*>(body.data()), body.size()), frame_limits());
}

double seconds_since(SteadyClock::time_point t) {
  return std::chrono::duration<double>(SteadyClock::now() - t).count();
}

}  // namespace facelogin::server
