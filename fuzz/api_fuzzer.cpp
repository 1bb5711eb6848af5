// libFuzzer target for the server's API: fuzzed HTTP requests through Api::handle, the router
// and every handler, with real dependencies (fuzz/api_harness.h: engine, liveness models,
// SQLite stores, a worker pool, fixtures for the authenticated routes).
//
// An input is up to eight requests separated by a line "===". Each is a request head as it
// would arrive on the wire ("POST /api/v1/login/attempts HTTP/1.1", then header lines; "\n"
// line ends are accepted), a blank line, and the body (JSON, or the bytes of a camera frame).
// Placeholders such as {{alice_cookie}}, {{key_all}}, {{flow}} and {{nonce}} are replaced first
// (see api_harness.h), so a sequence can start a flow and then use it. Beast parses the head,
// as the server does; a head Beast refuses never reaches the Api and is skipped. An upgrade
// request (Upgrade: websocket) goes to accept_socket; its body is then a list of messages
// separated by a line "---", each starting with 't' (text) or 'b' (binary).
//
// Every reply is checked (ApiHarness::check_reply): one reply, never 500, JSON with the error
// shape, a documented status. A broken contract aborts, and libFuzzer saves the input.
//
// Run (after tools/setup.sh; see docs/fuzzing.md or tools/fuzz.sh):
//   FACELOGIN_MODEL_DIR=models build-fuzz/fuzz/api_fuzzer CORPUS -dict=fuzz/api.dict

#include <boost/beast/websocket/rfc6455.hpp>
#include <cstddef>
#include <cstdint>
#include <string>

#include "api_harness.h"
#include "fuzz_util.h"

namespace {

using facelogin::fuzz::ApiHarness;

constexpr std::size_t kMaxRequests = 8;
constexpr std::size_t kMaxMessages = 8;

void socket_messages(ApiHarness& harness, ApiHarness::Socket& socket, std::string_view body) {
  std::size_t sent = 0;
  for (std::string_view part : facelogin::fuzz::split(body, "\n---\n")) {
    if (part.empty() || *socket.closed || ++sent > kMaxMessages) {
      return;
    }
    const bool binary = part.front() == 'b';
    std::string text = binary ? std::string(part.substr(1)) : harness.substitute(part.substr(1));
    if (harness.message(socket, std::move(text), binary).close) {
      return;  // the server closed the socket
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  ApiHarness::instance();  // load the models before the first input is timed
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view input = facelogin::fuzz::as_text(data, size);
  ApiHarness& harness = ApiHarness::instance();
  harness.restore(input.find("{{recovery}}") != std::string_view::npos);
  std::size_t sent = 0;
  for (std::string_view raw : facelogin::fuzz::split(input, "\n===\n")) {
    if (++sent > kMaxRequests) {
      break;
    }
    auto request = ApiHarness::parse_request(harness.substitute(raw));
    if (!request) {
      continue;
    }
    if (boost::beast::websocket::is_upgrade(*request)) {
      const std::string body = std::move(request->body());
      request->body().clear();
      if (auto socket = harness.open_socket(std::move(*request))) {
        socket_messages(harness, *socket, body);
      }
      continue;
    }
    (void)harness.call(std::move(*request));
  }
  return 0;
}
