#pragma once

// The server's API with real dependencies, for api_fuzzer and socket_fuzzer: the recognition
// engine and the liveness models from FACELOGIN_MODEL_DIR (default ./models), SQLite stores in a
// scratch directory, a worker pool of one, and the Api on top, driven the way the HTTP layer
// drives it (src/server/http.cpp) but without sockets.
//
// Fixtures, so that authenticated routes are reachable: the accounts "alice" (three faces) and
// "root" (an administrator), a cookie and a bearer session for each, and API keys with every
// scope, with "enroll" only, and a revoked one. Inputs name them with placeholders, replaced
// before a request is parsed:
//   {{alice_cookie}} {{alice_csrf}} {{alice_bearer}} {{root_cookie}} {{root_csrf}}
//   {{root_bearer}} {{key_all}} {{key_enroll}} {{key_revoked}} {{recovery}} (alice's recovery
//   code) {{face}} (one of alice's face ids) {{session}} (the id of alice's cookie session)
//   {{flow}} {{nonce}} (the "id" and "nonce" of the last reply that had them)
// restore() puts the fixtures back before each input (a previous input may have logged out,
// disabled or deleted them).
//
// Every reply is checked against the API's contract (check_reply): exactly one reply per
// request, never a 500, JSON bodies (errors as {"error": {"code", "message"}}), only the status
// codes docs/server.md lists.

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "facelogin/auth.h"
#include "facelogin/auth_store.h"
#include "facelogin/engine.h"
#include "facelogin/liveness.h"
#include "facelogin/server.h"
#include "facelogin/store.h"
#include "server/api.h"
#include "server/http.h"
#include "server/metrics.h"
#include "server/worker_pool.h"

namespace facelogin::fuzz {

class ApiHarness {
 public:
  // The peer every request comes from; it is a trusted proxy, so X-Forwarded-For in an input
  // picks the client address (client_address() is fuzzed along the way).
  static constexpr const char* kPeer = "10.9.8.7";

  // Loads everything on first use; exits with a message if the models or stores are missing.
  static ApiHarness& instance();

  // Before each input: expired flows swept, accounts, sessions and counters as described above.
  // `wants_recovery`: give alice a fresh recovery code for {{recovery}}.
  void restore(bool wants_recovery);

  // Replaces the placeholders.
  std::string substitute(std::string_view text) const;

  // Parses `raw` (placeholders replaced; "\n" line ends are made "\r\n") into a request the way
  // Beast does for the server: nullopt when Beast would refuse it (the server then answers 400
  // itself, without the Api). The body is everything after the blank line.
  static std::optional<server::Request> parse_request(std::string_view raw);

  // One request through the API as the HTTP layer sends it: the client address from the peer
  // and X-Forwarded-For, the body limit (413 before the Api sees the body), then Api::handle.
  // Waits for the reply, checks it, remembers {{flow}} and {{nonce}} from it. An upgrade request
  // goes to accept_socket instead; see open_socket.
  server::Response call(server::Request request);

  // A WebSocket: accept_socket, then socket_opened. nullopt when refused (the refusal checked).
  struct Socket {
    server::Exchange upgrade;
    std::string state;  // the per-socket state the HTTP layer keeps
    std::shared_ptr<bool> closed = std::make_shared<bool>(false);
  };
  std::optional<Socket> open_socket(server::Request request);
  // One message on an open socket; the reply (checked: JSON with a status, never 500) and
  // whether the socket is now closed.
  struct SocketReply {
    std::string text;
    bool close = false;
  };
  SocketReply message(Socket& socket, std::string message, bool binary);

  // Checks a reply of Api::handle (or of accept_socket) against the contract above.
  static void check_reply(const server::Request& request, const server::Response& response);

  server::Api& api() { return *api_; }

 private:
  ApiHarness() = default;
  void load();
  std::string issue(const std::string& user, const std::string& kind, std::string* csrf);
  void ensure_account(const std::string& name, int faces);
  server::Exchange exchange_for(server::Request request) const;
  void remember(const server::Response& response);

  ServerOptions options_;
  std::shared_ptr<const Engine> engine_;
  std::shared_ptr<const LivenessModels> liveness_;
  std::unique_ptr<Store> store_;
  std::unique_ptr<AuthStore> auth_store_;
  std::unique_ptr<Authenticator> auth_;
  server::Metrics metrics_;
  std::unique_ptr<server::WorkerPool> pool_;
  std::unique_ptr<server::Api> api_;

  std::map<std::string, std::string> fixtures_;  // placeholder name -> value (stable refs)
  std::string flow_;
  std::string nonce_;
  std::string& fixture(const std::string& name);
};

}  // namespace facelogin::fuzz
