// libFuzzer target for WebSocket messages: Api::socket_message with fuzzed text and binary
// messages on a socket the harness opened properly (a flow started, the upgrade accepted), so
// that the fuzzer spends its time on the messages rather than on finding a valid flow id.
//
// Input: byte 0 picks the flow (below), byte 1 the upgrade's Origin and credentials; the rest
// is up to eight messages separated by a line "---", each starting with 't' (text; {{nonce}}
// is replaced by the attempt's nonce) or 'b' (binary: a camera frame). Each message must get
// exactly one reply, a JSON object with a documented "status" other than 500; after a reply
// that closes the socket, or after the flow closed it (socket_opened's closer), nothing more is
// sent, as in the HTTP layer.
//
// Run: FACELOGIN_MODEL_DIR=models build-fuzz/fuzz/socket_fuzzer CORPUS -dict=fuzz/api.dict

#include <cstddef>
#include <cstdint>
#include <string>

#include "api_harness.h"
#include "fuzz_util.h"

namespace {

using facelogin::fuzz::ApiHarness;

constexpr std::size_t kMaxMessages = 8;

struct Setup {
  const char* start;   // the request that starts the flow
  const char* socket;  // the socket's path, {{flow}} being the started flow
};

// Flows a socket can stream to (and one it cannot).
constexpr Setup kSetups[] = {
    // A bearer-session login attempt of an application (the socket's intended use).
    {"POST /api/v1/login/attempts HTTP/1.1\nContent-Type: application/json\n"
     "X-API-Key: {{key_all}}\n\n{\"user\": \"alice\", \"session\": \"bearer\"}",
     "/api/v1/login/attempts/{{flow}}/socket"},
    // Face-only (1:N) bearer attempt.
    {"POST /api/v1/login/attempts HTTP/1.1\nContent-Type: application/json\n"
     "X-API-Key: {{key_all}}\n\n{\"session\": \"bearer\"}",
     "/api/v1/login/attempts/{{flow}}/socket"},
    // A sign-up enrolment.
    {"POST /api/v1/enrollments HTTP/1.1\nContent-Type: application/json\n\n"
     "{\"user\": \"newcomer\"}",
     "/api/v1/enrollments/{{flow}}/socket"},
    // More faces for alice, by an application with a bearer session.
    {"POST /api/v1/enrollments HTTP/1.1\nContent-Type: application/json\n"
     "Authorization: Bearer {{alice_bearer}}\nX-API-Key: {{key_all}}\n\n"
     "{\"add\": true, \"session\": \"bearer\"}",
     "/api/v1/enrollments/{{flow}}/socket"},
    // A cookie-session attempt: its socket is refused.
    {"POST /api/v1/login/attempts HTTP/1.1\nContent-Type: application/json\n\n"
     "{\"user\": \"alice\"}",
     "/api/v1/login/attempts/{{flow}}/socket"},
};

std::string upgrade_head(const char* path, std::uint8_t variant) {
  std::string head = std::string("GET ") + path +
                     " HTTP/1.1\nHost: 127.0.0.1\nConnection: Upgrade\nUpgrade: websocket\n"
                     "Sec-WebSocket-Version: 13\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\n";
  switch (variant % 4) {
    case 1:
      head += "Origin: http://127.0.0.1\n";
      break;
    case 2:
      head += "Origin: https://evil.example\n";
      break;
    case 3:
      head += "Authorization: Bearer {{alice_bearer}}\nX-API-Key: {{key_all}}\n";
      break;
    default:
      break;
  }
  if (variant & 4) {
    head += "X-Forwarded-For: 192.0.2.77\n";  // another client than the flow's: refused
  }
  return head + "\n";
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  ApiHarness::instance();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 2) {
    return 0;
  }
  ApiHarness& harness = ApiHarness::instance();
  harness.restore(false);
  const Setup& setup = kSetups[data[0] % std::size(kSetups)];
  auto start = ApiHarness::parse_request(harness.substitute(setup.start));
  FUZZ_REQUIRE(start.has_value(), setup.start);
  const auto started = harness.call(std::move(*start));
  FUZZ_REQUIRE(started.result_int() == 201, started.body());

  auto upgrade = ApiHarness::parse_request(harness.substitute(upgrade_head(setup.socket, data[1])));
  FUZZ_REQUIRE(upgrade.has_value(), setup.socket);
  auto socket = harness.open_socket(std::move(*upgrade));
  if (!socket) {
    return 0;  // refused (checked by the harness): cookie attempts, other origins or clients
  }
  const std::string_view messages = facelogin::fuzz::as_text(data + 2, size - 2);
  std::size_t sent = 0;
  for (std::string_view part : facelogin::fuzz::split(messages, "\n---\n")) {
    if (part.empty() || *socket->closed || ++sent > kMaxMessages) {
      break;
    }
    const bool binary = part.front() == 'b';
    std::string text = binary ? std::string(part.substr(1)) : harness.substitute(part.substr(1));
    if (harness.message(*socket, std::move(text), binary).close) {
      break;
    }
  }
  return 0;
}
