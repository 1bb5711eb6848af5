#pragma once

// The login server: HTTP/1.1 (Boost.Beast) with a JSON API under /api/v1, the web app's static
// files, /healthz, /readyz and /metrics. Recognition runs on a fixed pool of workers; the HTTP
// side only parses, routes and answers. See docs/server.md for the API.

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "facelogin/auth.h"
#include "facelogin/auth_store.h"
#include "facelogin/engine.h"
#include "facelogin/face_service.h"
#include "facelogin/liveness.h"
#include "facelogin/login_attempt.h"
#include "facelogin/gallery.h"
#include "facelogin/store.h"

namespace facelogin {

struct ServerOptions {
  std::string host = "127.0.0.1";
  std::uint16_t port = 8080;  // 0: any free port (see Server::port())
  // The web app's files; empty: the API only.
  std::filesystem::path web_dir;
  int workers = 0;       // recognition workers; 0: one per hardware thread
  int queue_limit = -1;  // frames waiting for a worker; -1: as many as workers
  int io_threads = 1;
  int max_connections = 256;
  int max_connections_per_address = 32;
  // Reverse proxies in front of the server (their IP addresses as written by the server, e.g.
  // "127.0.0.1"): their X-Forwarded-For names the client, for rate limits, lockout, flows and
  // the audit log. Empty: the TCP peer is the client.
  std::vector<std::string> trusted_proxies;
  std::size_t max_frame_bytes = 2 * 1024 * 1024;  // a camera frame (JPEG or PNG)
  std::size_t max_json_bytes = 16 * 1024;
  std::chrono::seconds request_timeout{15};  // to read one request, headers and body
  // A WebSocket with no message (a frame or the nonce) this long is closed; pings do not count.
  std::chrono::seconds socket_idle_timeout{15};
  // HTTPS: a PEM certificate chain and its private key (read from files, never from options).
  // Both or neither; with them cookies are secure as below. TLS 1.2 or newer.
  std::filesystem::path tls_cert_file;
  std::filesystem::path tls_key_file;
  // Cookies get the Secure attribute and the __Host- prefix, and responses carry HSTS. Set it
  // when clients reach the server over HTTPS (TLS here, or at a proxy in front).
  bool secure_cookies = false;
  // Anyone may enrol a new account (the web app's sign-up). Off: accounts are made with the CLI.
  bool open_registration = true;

  // Enrolment from the camera.
  int enroll_frames_needed = 5;
  // Accepted frames must span this many degrees of yaw or pitch (a few natural head movements),
  // so that the templates do not all come from one pose.
  float enroll_min_pose_spread = 6.f;
  std::chrono::seconds flow_ttl{60};  // an enrolment or login attempt not finished by then ends
  int max_flows = 1000;               // enrolments and attempts open at once, in all
  int max_flows_per_address = 10;     // ... and from one client address
  int max_frames_per_flow = 300;

  // [recognition] of the configuration file, for `serve` to pass to ServiceOptions (the server
  // itself takes them from ServerDeps::service): the decision threshold (cosine; NaN: the
  // recogniser's calibrated one) and whether the enrolled population may raise it.
  float threshold = std::numeric_limits<float>::quiet_NaN();
  bool population_threshold = true;

  LoginPolicy login;  // frames, liveness policy and deadline of a login attempt
  // Face-only (1:N) login is offered while the gallery's false-match rate stays within this:
  // templates x the recogniser's calibrated FMR per comparison <= identify_max_fmr. 0: never.
  double identify_max_fmr = 1e-3;
  // The in-memory 1:N gallery: precision and the size above which it searches approximately.
  GalleryOptions gallery;
  AuthOptions auth;
  // Starts of attempts and enrolments per client address and minute (in this process).
  int starts_per_minute = 30;
};

// The server's time: one source for flow expiry, attempt deadlines, lockouts, rate limits and
// sessions, so that tests can move it without sleeping. The default is the real clocks.
class ServerClock {
 public:
  virtual ~ServerClock() = default;
  // A monotonic clock: flows, deadlines, the timestamps of a stream's frames.
  virtual std::chrono::steady_clock::time_point steady() const = 0;
  // Unix milliseconds: lockouts, rate buckets, sessions and the audit log.
  virtual std::int64_t unix_ms() const = 0;
};

// The real clocks.
[[nodiscard]] std::shared_ptr<const ServerClock> system_server_clock();

struct ServerDeps {
  std::shared_ptr<const Engine> engine;
  Store* store = nullptr;
  AuthStore* auth_store = nullptr;
  // Required unless options.login.liveness.policy is kOff.
  std::shared_ptr<const LivenessModels> liveness;
  ServiceOptions service;
  std::shared_ptr<const ServerClock> clock;  // null: system_server_clock()
};

// "HOST:PORT", "[IPv6]:PORT" or ":PORT" (loopback) into options->host and port.
[[nodiscard]] Status parse_listen_address(const std::string& text, ServerOptions* options);

// Applies a TOML configuration file over `options` (see docs/server.md for the keys); its
// `data` directory, if set, goes to *data_dir. Errors: kInvalidArgument naming the file, line
// and key (syntax, unknown key, wrong type, out of range); `options` may then be half-applied.
// `database` (if not null) receives the file's `database` key: a PostgreSQL connection string
// (empty when the key is absent); `database_schema` its `database_schema` key (the PostgreSQL
// schema; empty when absent).
[[nodiscard]] Status apply_server_config(const std::filesystem::path& file, ServerOptions* options,
                                         std::filesystem::path* data_dir,
                                         std::string* database = nullptr,
                                         std::string* database_schema = nullptr);

class Server {
 public:
  virtual ~Server() = default;

  // Binds, starts the worker and I/O threads and returns; the server then runs until stop().
  // Errors: kInvalidArgument (options), kIoError (cannot listen), kModelError.
  [[nodiscard]] static Result<std::unique_ptr<Server>> start(const ServerOptions& options,
                                                             ServerDeps deps);

  // The port it listens on (the chosen one when options.port was 0).
  virtual std::uint16_t port() const = 0;
  // Stops accepting, closes connections and joins the threads. Idempotent.
  virtual void stop() = 0;
  // Blocks until stop() is called (from another thread or a signal handler's thread).
  virtual void wait() = 0;
  // Ends the flows past their time now (the server does it every two seconds): an attempt that
  // saw frames and was left undecided counts as a failed login. Thread-safe.
  virtual void sweep() = 0;
};

}  // namespace facelogin
