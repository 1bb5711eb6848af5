// libFuzzer target for the server's TOML configuration (apply_server_config, toml++) and the
// listen-address parser it uses.
//
// The input is the file's text, written to a file in /dev/shm (the reader takes a path).
// Contract (include/facelogin/server.h): success, or kInvalidArgument whose message names the
// file; on success every option is within the range docs/server.md gives, trusted proxies are
// IP addresses in normal form, and a second application of the same file gives the same
// options. A short input is also given to parse_listen_address directly: success sets a host
// and a port of at most 65535; failure is kInvalidArgument and leaves the options alone.
//
// Run: build-fuzz/fuzz/config_fuzzer CORPUS -dict=fuzz/config.dict

#include <boost/asio/ip/address.hpp>
#include <cstddef>
#include <cstdint>
#include <string>

#include "facelogin/server.h"
#include "fuzz_util.h"

namespace {

namespace fz = facelogin::fuzz;
using facelogin::ErrorCode;
using facelogin::ServerOptions;

template <typename T>
bool within(T value, double low, double high) {
  return static_cast<double>(value) >= low && static_cast<double>(value) <= high;
}

void check_options(const ServerOptions& o, const std::string& text) {
  FUZZ_REQUIRE(within(o.workers, 0, 256) && within(o.io_threads, 1, 64), text);
  FUZZ_REQUIRE(within(o.max_connections, 1, 100000), text);
  FUZZ_REQUIRE(within(o.max_connections_per_address, 1, 100000), text);
  FUZZ_REQUIRE(within(o.request_timeout.count(), 1, 600), text);
  FUZZ_REQUIRE(within(o.socket_idle_timeout.count(), 1, 600), text);
  FUZZ_REQUIRE(within(o.max_frame_bytes, 16 * 1024, 65536.0 * 1024), text);
  FUZZ_REQUIRE(within(o.starts_per_minute, 1, 100000), text);
  FUZZ_REQUIRE(within(o.max_flows, 1, 1000000) && within(o.max_flows_per_address, 1, 1000000),
               text);
  FUZZ_REQUIRE(within(o.queue_limit, -1, 10000), text);
  FUZZ_REQUIRE(within(o.login.matching_frames_needed, 1, 100), text);
  FUZZ_REQUIRE(within(o.login.non_matching_frames_allowed, 0, 1000), text);
  FUZZ_REQUIRE(within(o.identify_max_fmr, 0, 1), text);
  FUZZ_REQUIRE(within(o.flow_ttl.count(), 5, 3600), text);
  FUZZ_REQUIRE(within(o.login.liveness.threshold, 0, 1), text);
  FUZZ_REQUIRE(within(o.login.liveness.frames_needed, 1, 300), text);
  FUZZ_REQUIRE(within(o.login.liveness.deadline.count(), 1000, 600000), text);
  FUZZ_REQUIRE(within(o.enroll_frames_needed, 1, 30), text);
  FUZZ_REQUIRE(within(o.enroll_min_pose_spread, 0, 90), text);
  FUZZ_REQUIRE(within(o.auth.cookie_session_ttl.count(), 60, 30 * 86400), text);
  FUZZ_REQUIRE(within(o.auth.bearer_session_ttl.count(), 60, 30 * 86400), text);
  FUZZ_REQUIRE(within(o.gallery.approximate_above, 0, 1e9), text);
  FUZZ_REQUIRE(within(o.gallery.approximate.ef_search, 16, 4096), text);
  FUZZ_REQUIRE(within(o.gallery.approximate.build_threads, 1, 256), text);
  FUZZ_REQUIRE(within(o.auth.free_failures, 1, 1000), text);
  FUZZ_REQUIRE(within(o.auth.base_lock.count(), 1000, 86400000), text);
  FUZZ_REQUIRE(within(o.auth.max_lock.count(), 1000, 30 * 86400000.0), text);
  for (const std::string& proxy : o.trusted_proxies) {
    boost::system::error_code ec;
    const auto address = boost::asio::ip::make_address(proxy, ec);
    FUZZ_REQUIRE(!ec && address.to_string() == proxy, proxy);
  }
}

bool same_options(const ServerOptions& a, const ServerOptions& b) {
  return a.host == b.host && a.port == b.port && a.web_dir == b.web_dir &&
         a.workers == b.workers && a.trusted_proxies == b.trusted_proxies &&
         a.max_frame_bytes == b.max_frame_bytes && a.flow_ttl == b.flow_ttl &&
         a.login.liveness.policy == b.login.liveness.policy &&
         a.login.liveness.deadline == b.login.liveness.deadline &&
         a.auth.base_lock == b.auth.base_lock && a.auth.max_lock == b.auth.max_lock &&
         a.gallery.precision == b.gallery.precision && a.tls_cert_file == b.tls_cert_file &&
         a.secure_cookies == b.secure_cookies && a.open_registration == b.open_registration;
}

void check_listen_address(const std::string& text) {
  ServerOptions options;
  options.host = "unchanged";
  options.port = 1;
  const facelogin::Status s = facelogin::parse_listen_address(text, &options);
  if (s.ok()) {
    // The host is the text before the last ':' (brackets of an IPv6 address taken off; empty
    // is loopback), the port the digits after it. (Comparing with the "unchanged" sentinel
    // instead was a false finding: "unchanged:0" is a valid address text.)
    const std::size_t colon = text.rfind(':');
    FUZZ_REQUIRE(colon != std::string::npos, text);
    std::string host = text.substr(0, colon);
    if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
      host = host.substr(1, host.size() - 2);
    }
    FUZZ_REQUIRE(options.host == (host.empty() ? "127.0.0.1" : host), text);
    FUZZ_REQUIRE(std::to_string(options.port) == text.substr(colon + 1) ||
                     text.substr(colon + 1).starts_with('0'),
                 text);
  } else {
    FUZZ_REQUIRE(s.code() == ErrorCode::kInvalidArgument && !s.message().empty(), s.message());
    FUZZ_REQUIRE(options.host == "unchanged" && options.port == 1, text);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string text(fz::as_text(data, size));
  if (size <= 200) {
    check_listen_address(text);
  }
  const std::filesystem::path file = fz::scratch_dir() / "facelogin.toml";
  fz::write_file(file, text);

  ServerOptions options;
  std::filesystem::path data_dir = "unset";
  std::string database = "unset";
  std::string schema = "unset";
  const facelogin::Status s =
      facelogin::apply_server_config(file, &options, &data_dir, &database, &schema);
  if (!s.ok()) {
    FUZZ_REQUIRE(s.code() == ErrorCode::kInvalidArgument, s.to_string());
    FUZZ_REQUIRE(s.message().starts_with(file.string()), s.message());
    return 0;
  }
  check_options(options, text);
  FUZZ_REQUIRE(database != "unset" && schema != "unset", text);

  // Applying the same file again over fresh options gives the same result.
  ServerOptions again;
  std::filesystem::path data_again = "unset";
  const facelogin::Status s2 = facelogin::apply_server_config(file, &again, &data_again);
  FUZZ_REQUIRE(s2.ok(), s2.to_string());
  FUZZ_REQUIRE(same_options(options, again) && data_dir == data_again, text);
  return 0;
}
