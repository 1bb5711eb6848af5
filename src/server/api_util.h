#pragma once

// What the API's handlers share: path matching, request fields, and the JSON shapes of frames
// and the population. Internal to src/server.

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "facelogin/face_service.h"
#include "facelogin/image.h"
#include "facelogin/population.h"
#include "server/flows.h"
#include "server/http.h"

namespace facelogin::server {

using json = nlohmann::json;
using Headers = std::vector<std::pair<std::string, std::string>>;

// "/api/v1/users/{id}" -> {"api", "v1", "users", "{id}"}
std::vector<std::string> split_path(std::string_view path);
// Matches `path` against a route pattern; fills the {placeholders}.
bool match(const std::string& pattern, std::string_view path, std::vector<std::string>* params);
// The request target without its query.
std::string_view path_of(const Request& request);
// A header's value, or "".
std::string header(const Request& request, std::string_view name);

// An optional field of a JSON request body: its value, `fallback` when absent or null, and a
// clear error (400) when it has another type (never nlohmann's type_error, a 500).
Result<std::string> string_field(const json& body, const char* name, std::string fallback);
Result<bool> bool_field(const json& body, const char* name, bool fallback);
// A numeric id from a path or query ("12"): digits only, no sign, prefix or suffix ("11abc" is
// not 11), within int64.
std::optional<std::int64_t> parse_id(std::string_view text);

// The enrolled population and the thresholds it gives, for the admin page and the audit log.
json population_json(const PopulationStatus& p);
// One camera frame's analysis as the web app shows it (outcome, advice, face box, quality).
json frame_json(const ImageReport& report, const Image& image);
// The camera frame in a request's body, decoded within a camera frame's limits: far tighter than
// a file on the command line, as a login needs no more than a 1920x1200 frame (the web app sends
// 640x480), and every pixel is decoding work a stranger can ask for (issue 17, the decode limits
// in docs/server.md). Errors: decode_image's.
Result<Image> decode_frame(const Request& request);

double seconds_since(SteadyClock::time_point t);

}  // namespace facelogin::server
