// The server's TOML configuration file (toml++ from Debian's libtomlplusplus-dev). Every key is
// optional; an unknown key or a value of the wrong type or range is an error naming it, so a
// typo never silently leaves a default in place. There are no secrets in it: the template key
// comes from FACELOGIN_KEY or its key file, the TLS key from its own file.

#include <fmt/format.h>

#include <cmath>
#include <toml++/toml.h>

#include <boost/asio/ip/address.hpp>
#include <charconv>
#include <set>

#include "facelogin/server.h"

namespace facelogin {
namespace {

// Reads typed values from one table and remembers which keys it was asked about.
class Section {
 public:
  Section(const toml::table* table, std::string name) : table_(table), name_(std::move(name)) {}

  template <typename T>
  Status get(const char* key, T* out, double min = -1e300, double max = 1e300) {
    known_.insert(key);
    if (table_ == nullptr) {
      return Status::Ok();
    }
    const toml::node* node = table_->get(key);
    if (node == nullptr) {
      return Status::Ok();
    }
    if constexpr (std::is_same_v<T, bool>) {
      if (auto v = node->value_exact<bool>()) {
        *out = *v;
        return Status::Ok();
      }
      return wrong(key, "true or false");
    } else if constexpr (std::is_same_v<T, std::string> ||
                         std::is_same_v<T, std::filesystem::path>) {
      if (auto v = node->value_exact<std::string>()) {
        *out = *v;
        return Status::Ok();
      }
      return wrong(key, "a string");
    } else {
      // Integers and floats; an integer is accepted where a float is expected.
      std::optional<double> v = node->value<double>();
      // TOML has nan and inf, which pass every comparison below (nan) or overflow the integer
      // conversion (both): refused first (found by config_fuzzer, issue 17).
      if (!v || !std::isfinite(*v)) {
        return wrong(key, "a finite number");
      }
      // The range before the whole-number check: converting 1e300 to an integer is undefined.
      if (*v < min || *v > max) {
        return Status(ErrorCode::kInvalidArgument,
                      fmt::format("{}: must be between {} and {}", where(key), min, max));
      }
      if (std::is_integral_v<T> && *v != std::trunc(*v)) {
        return wrong(key, "a whole number");
      }
      *out = static_cast<T>(*v);
      return Status::Ok();
    }
  }

  // A list of IP addresses (for trusted proxies).
  Status get_addresses(const char* key, std::vector<std::string>* out) {
    known_.insert(key);
    const toml::node* node = table_ != nullptr ? table_->get(key) : nullptr;
    if (node == nullptr) {
      return Status::Ok();
    }
    const toml::array* list = node->as_array();
    if (list == nullptr) {
      return wrong(key, "a list of IP addresses");
    }
    std::vector<std::string> addresses;
    for (const toml::node& item : *list) {
      auto text = item.value_exact<std::string>();
      boost::system::error_code ec;
      const auto address =
          text ? boost::asio::ip::make_address(*text, ec) : boost::asio::ip::address();
      if (!text || ec) {
        return wrong(key, "a list of IP addresses");
      }
      addresses.push_back(address.to_string());
    }
    *out = std::move(addresses);
    return Status::Ok();
  }

  // Errors for keys nobody asked about.
  Status check_unknown() const {
    if (table_ == nullptr) {
      return Status::Ok();
    }
    for (const auto& [key, node] : *table_) {
      if (!known_.contains(std::string(key.str())) && (!name_.empty() || !node.is_table())) {
        return Status(ErrorCode::kInvalidArgument,
                      fmt::format("unknown setting {}", where(std::string(key.str()))));
      }
    }
    return Status::Ok();
  }

 private:
  std::string where(const std::string& key) const {
    return name_.empty() ? key : fmt::format("{}.{}", name_, key);
  }
  Status wrong(const char* key, const char* expected) const {
    return Status(ErrorCode::kInvalidArgument,
                  fmt::format("{}: expected {}", where(key), expected));
  }

  const toml::table* table_;
  std::string name_;
  std::set<std::string> known_;
};

}  // namespace

Status parse_listen_address(const std::string& text, ServerOptions* options) {
  const std::size_t colon = text.rfind(':');
  if (colon == std::string::npos) {
    return Status(
        ErrorCode::kInvalidArgument,
        fmt::format("listen address '{}': expected HOST:PORT, e.g. 127.0.0.1:8080", text));
  }
  std::string host = text.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  const std::string port = text.substr(colon + 1);
  unsigned value = 0;
  const auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), value);
  if (port.empty() || ec != std::errc() || end != port.data() + port.size() || value > 65535) {
    return Status(ErrorCode::kInvalidArgument,
                  fmt::format("listen address '{}': the port must be a number 0-65535", text));
  }
  options->host = host.empty() ? "127.0.0.1" : host;
  options->port = static_cast<std::uint16_t>(value);
  return Status::Ok();
}

Status apply_server_config(const std::filesystem::path& file, ServerOptions* options,
                           std::filesystem::path* data_dir, std::string* database,
                           std::string* database_schema) {
  toml::table root;
  try {
    root = toml::parse_file(file.string());
  } catch (const toml::parse_error& e) {
    const auto& where = e.source().begin;
    return Status(
        ErrorCode::kInvalidArgument,
        fmt::format("{}:{}:{}: {}", file.string(), where.line, where.column, e.description()));
  }

  std::vector<Section> sections;
  const auto section = [&](const char* name) -> Section& {
    const toml::table* t = root[name].as_table();
    if (root.contains(name) && t == nullptr) {
      sections.emplace_back(nullptr, name);  // reported below as a wrong type
    } else {
      sections.emplace_back(t, name);
    }
    return sections.back();
  };
  sections.reserve(16);  // the references below stay valid
  Section& top = sections.emplace_back(&root, "");

  std::string listen;
  std::string policy;
  double lock_base_s = std::chrono::duration<double>(options->auth.base_lock).count();
  double lock_max_s = std::chrono::duration<double>(options->auth.max_lock).count();
  double deadline_s = std::chrono::duration<double>(options->login.liveness.deadline).count();
  std::int64_t request_timeout_s = options->request_timeout.count();
  std::int64_t socket_idle_timeout_s = options->socket_idle_timeout.count();
  std::int64_t flow_ttl_s = options->flow_ttl.count();
  std::int64_t cookie_ttl_s = options->auth.cookie_session_ttl.count();
  std::int64_t bearer_ttl_s = options->auth.bearer_session_ttl.count();
  std::size_t frame_kib = options->max_frame_bytes / 1024;
  std::filesystem::path data;
  std::string database_text;
  std::string database_schema_text;

  std::vector<Status> results;
  results.push_back(top.get("listen", &listen));
  results.push_back(top.get("data", &data));
  results.push_back(top.get("database", &database_text));
  results.push_back(top.get("database_schema", &database_schema_text));
  results.push_back(top.get("web", &options->web_dir));
  results.push_back(top.get("workers", &options->workers, 0, 256));
  results.push_back(top.get("io_threads", &options->io_threads, 1, 64));
  results.push_back(top.get("secure_cookies", &options->secure_cookies));
  results.push_back(top.get("open_registration", &options->open_registration));

  Section& tls = section("tls");
  results.push_back(tls.get("cert", &options->tls_cert_file));
  results.push_back(tls.get("key", &options->tls_key_file));

  Section& limits = section("limits");
  results.push_back(limits.get("max_connections", &options->max_connections, 1, 100000));
  results.push_back(limits.get_addresses("trusted_proxies", &options->trusted_proxies));
  results.push_back(
      limits.get("max_connections_per_address", &options->max_connections_per_address, 1, 100000));
  results.push_back(limits.get("request_timeout_s", &request_timeout_s, 1, 600));
  results.push_back(limits.get("socket_idle_timeout_s", &socket_idle_timeout_s, 1, 600));
  results.push_back(limits.get("max_frame_kib", &frame_kib, 16, 65536));
  results.push_back(limits.get("starts_per_minute", &options->starts_per_minute, 1, 100000));
  results.push_back(limits.get("max_flows", &options->max_flows, 1, 1000000));
  results.push_back(
      limits.get("max_flows_per_address", &options->max_flows_per_address, 1, 1000000));
  results.push_back(limits.get("queue_limit", &options->queue_limit, -1, 10000));

  Section& login = section("login");
  results.push_back(login.get("matching_frames", &options->login.matching_frames_needed, 1, 100));
  results.push_back(
      login.get("non_matching_frames", &options->login.non_matching_frames_allowed, 0, 1000));
  results.push_back(login.get("identify_max_fmr", &options->identify_max_fmr, 0, 1));
  results.push_back(login.get("flow_ttl_s", &flow_ttl_s, 5, 3600));

  Section& recognition = section("recognition");
  results.push_back(recognition.get("threshold", &options->threshold, -1, 1));
  results.push_back(recognition.get("population_threshold", &options->population_threshold));

  Section& liveness = section("liveness");
  results.push_back(liveness.get("policy", &policy));
  results.push_back(liveness.get("threshold", &options->login.liveness.threshold, 0, 1));
  results.push_back(
      liveness.get("strong_threshold", &options->login.liveness.strong_threshold, 0, 1));
  results.push_back(liveness.get("frames", &options->login.liveness.frames_needed, 1, 300));
  results.push_back(liveness.get("deadline_s", &deadline_s, 1, 600));

  Section& enrollment = section("enrollment");
  results.push_back(enrollment.get("frames", &options->enroll_frames_needed, 1, 30));
  results.push_back(enrollment.get("min_pose_spread", &options->enroll_min_pose_spread, 0, 90));

  Section& sessions = section("sessions");
  results.push_back(sessions.get("cookie_ttl_s", &cookie_ttl_s, 60, 30 * 86400));
  results.push_back(sessions.get("bearer_ttl_s", &bearer_ttl_s, 60, 30 * 86400));

  Section& search = section("search");
  std::string precision;
  auto approximate_above = static_cast<std::int64_t>(options->gallery.approximate_above);
  results.push_back(search.get("precision", &precision));
  results.push_back(search.get("approximate_above", &approximate_above, 0, 1'000'000'000));
  results.push_back(search.get("ef_search", &options->gallery.approximate.ef_search, 16, 4096));
  results.push_back(
      search.get("build_threads", &options->gallery.approximate.build_threads, 1, 256));

  Section& lockout = section("lockout");
  results.push_back(lockout.get("free_failures", &options->auth.free_failures, 1, 1000));
  results.push_back(lockout.get("base_lock_s", &lock_base_s, 1, 86400));
  results.push_back(lockout.get("max_lock_s", &lock_max_s, 1, 30 * 86400));

  for (const Status& s : results) {
    if (!s.ok()) {
      return Status(s.code(), fmt::format("{}: {}", file.string(), s.message()));
    }
  }
  static const std::set<std::string> kSections = {
      "tls",      "limits",   "login",  "recognition", "liveness",
      "enrollment", "sessions", "search", "lockout"};
  for (const auto& [key, node] : root) {
    if (node.is_table() && !kSections.contains(std::string(key.str()))) {
      return Status(ErrorCode::kInvalidArgument,
                    fmt::format("{}: unknown section [{}]", file.string(), key.str()));
    }
    if (!node.is_table() && kSections.contains(std::string(key.str()))) {
      return Status(ErrorCode::kInvalidArgument,
                    fmt::format("{}: {} must be a section", file.string(), key.str()));
    }
  }
  for (const Section& s : sections) {
    if (Status st = s.check_unknown(); !st.ok()) {
      return Status(st.code(), fmt::format("{}: {}", file.string(), st.message()));
    }
  }

  if (!listen.empty()) {
    if (Status s = parse_listen_address(listen, options); !s.ok()) {
      return Status(s.code(), fmt::format("{}: {}", file.string(), s.message()));
    }
  }
  if (!policy.empty()) {
    auto parsed = parse_liveness_policy(policy);
    if (!parsed) {
      return Status(ErrorCode::kInvalidArgument,
                    fmt::format("{}: liveness.policy: {}", file.string(), parsed.error().message()));
    }
    options->login.liveness.policy = *parsed;
  }
  if (!precision.empty()) {
    auto parsed = parse_gallery_precision(precision);
    if (!parsed) {
      return Status(ErrorCode::kInvalidArgument,
                    fmt::format("{}: search.precision: {}", file.string(), parsed.error().message()));
    }
    options->gallery.precision = *parsed;
  }
  options->gallery.approximate_above = static_cast<std::size_t>(approximate_above);
  if (!data.empty() && data_dir != nullptr) {
    *data_dir = data;
  }
  if (database != nullptr) {
    *database = database_text;
  }
  if (database_schema != nullptr) {
    *database_schema = database_schema_text;
  }
  options->request_timeout = std::chrono::seconds(request_timeout_s);
  options->socket_idle_timeout = std::chrono::seconds(socket_idle_timeout_s);
  options->flow_ttl = std::chrono::seconds(flow_ttl_s);
  options->max_frame_bytes = frame_kib * 1024;
  options->auth.cookie_session_ttl = std::chrono::seconds(cookie_ttl_s);
  options->auth.bearer_session_ttl = std::chrono::seconds(bearer_ttl_s);
  options->auth.base_lock =
      std::chrono::milliseconds(static_cast<std::int64_t>(lock_base_s * 1000));
  options->auth.max_lock = std::chrono::milliseconds(static_cast<std::int64_t>(lock_max_s * 1000));
  options->login.liveness.deadline =
      std::chrono::milliseconds(static_cast<std::int64_t>(deadline_s * 1000));
  return Status::Ok();
}

}  // namespace facelogin
