// The server's TOML configuration file and listen addresses.

#include <gtest/gtest.h>

#include <cmath>

#include <fstream>

#include "facelogin/server.h"
#include "test_data.h"

namespace facelogin {
namespace {

namespace fs = std::filesystem;

class ServerConfigTest : public ::testing::Test {
 protected:
  void SetUp() override { dir_ = testing::make_temp_dir("facelogin-config"); }
  void TearDown() override { fs::remove_all(dir_); }

  Status apply(const std::string& text) {
    const fs::path file = dir_ / "facelogin.toml";
    std::ofstream(file) << text;
    return apply_server_config(file, &options_, &data_, &database_, &schema_);
  }

  fs::path dir_;
  ServerOptions options_;
  fs::path data_;
  std::string database_;
  std::string schema_;
};

TEST_F(ServerConfigTest, EveryKeyLandsInTheOptions) {
  const Status s = apply(R"(
listen = "0.0.0.0:9443"
data = "/var/lib/facelogin"
database = "host=/run/postgresql dbname=facelogin"
database_schema = "login_eu"
web = "/usr/share/facelogin/web"
workers = 4
secure_cookies = true
open_registration = false

[tls]
cert = "/etc/facelogin/cert.pem"
key = "/etc/facelogin/key.pem"

[limits]
max_connections = 100
trusted_proxies = ["127.0.0.1", "::1"]
request_timeout_s = 10
max_frame_kib = 1024
starts_per_minute = 12
max_flows = 50

[login]
matching_frames = 4
non_matching_frames = 3
identify_max_fmr = 0
flow_ttl_s = 30

[recognition]
threshold = 0.85
population_threshold = false

[liveness]
policy = "off"
threshold = 0.5
strong_threshold = 0.8
frames = 12
deadline_s = 15.5

[enrollment]
frames = 7
min_pose_spread = 10

[sessions]
cookie_ttl_s = 3600
bearer_ttl_s = 600

[search]
precision = "fp16"
approximate_above = 500000
ef_search = 256
build_threads = 4

[lockout]
free_failures = 3
base_lock_s = 30
max_lock_s = 600
)");
  ASSERT_TRUE(s.ok()) << s.to_string();
  EXPECT_EQ(options_.host, "0.0.0.0");
  EXPECT_EQ(options_.port, 9443);
  EXPECT_EQ(data_, "/var/lib/facelogin");
  EXPECT_EQ(database_, "host=/run/postgresql dbname=facelogin");
  EXPECT_EQ(schema_, "login_eu");
  EXPECT_EQ(options_.web_dir, "/usr/share/facelogin/web");
  EXPECT_EQ(options_.workers, 4);
  EXPECT_TRUE(options_.secure_cookies);
  EXPECT_FALSE(options_.open_registration);
  EXPECT_EQ(options_.tls_cert_file, "/etc/facelogin/cert.pem");
  EXPECT_EQ(options_.tls_key_file, "/etc/facelogin/key.pem");
  EXPECT_EQ(options_.max_connections, 100);
  EXPECT_EQ(options_.trusted_proxies, (std::vector<std::string>{"127.0.0.1", "::1"}));
  EXPECT_EQ(options_.request_timeout, std::chrono::seconds(10));
  EXPECT_EQ(options_.max_frame_bytes, 1024u * 1024u);
  EXPECT_EQ(options_.starts_per_minute, 12);
  EXPECT_EQ(options_.max_flows, 50);
  EXPECT_EQ(options_.login.matching_frames_needed, 4);
  EXPECT_EQ(options_.login.non_matching_frames_allowed, 3);
  EXPECT_EQ(options_.identify_max_fmr, 0.0);
  EXPECT_EQ(options_.flow_ttl, std::chrono::seconds(30));
  EXPECT_FLOAT_EQ(options_.threshold, 0.85f);
  EXPECT_FALSE(options_.population_threshold);
  EXPECT_EQ(options_.login.liveness.policy, LivenessPolicy::kOff);
  EXPECT_FLOAT_EQ(options_.login.liveness.threshold, 0.5f);
  EXPECT_FLOAT_EQ(options_.login.liveness.strong_threshold, 0.8f);
  EXPECT_EQ(options_.login.liveness.frames_needed, 12);
  EXPECT_EQ(options_.login.liveness.deadline, std::chrono::milliseconds(15500));
  EXPECT_EQ(options_.enroll_frames_needed, 7);
  EXPECT_FLOAT_EQ(options_.enroll_min_pose_spread, 10.f);
  EXPECT_EQ(options_.auth.cookie_session_ttl, std::chrono::seconds(3600));
  EXPECT_EQ(options_.auth.bearer_session_ttl, std::chrono::seconds(600));
  EXPECT_EQ(options_.auth.free_failures, 3);
  EXPECT_EQ(options_.auth.base_lock, std::chrono::seconds(30));
  EXPECT_EQ(options_.auth.max_lock, std::chrono::seconds(600));
  EXPECT_EQ(options_.gallery.precision, GalleryPrecision::kFloat16);
  EXPECT_EQ(options_.gallery.approximate_above, 500000u);
  EXPECT_EQ(options_.gallery.approximate.ef_search, 256);
  EXPECT_EQ(options_.gallery.approximate.build_threads, 4);
}

TEST_F(ServerConfigTest, AnEmptyFileKeepsTheDefaults) {
  ASSERT_TRUE(apply("# nothing\n").ok());
  const ServerOptions defaults;
  EXPECT_EQ(options_.port, defaults.port);
  EXPECT_EQ(options_.login.liveness.policy, LivenessPolicy::kAdaptive);
  EXPECT_TRUE(std::isnan(options_.threshold));  // the recogniser's calibrated one
  EXPECT_TRUE(options_.population_threshold);
  EXPECT_TRUE(data_.empty());
}

TEST_F(ServerConfigTest, MistakesAreNamed) {
  const struct {
    const char* text;
    const char* expected;
  } cases[] = {
      {"listn = \"127.0.0.1:80\"\n", "unknown setting listn"},
      {"[liveness]\nthreshhold = 0.5\n", "unknown setting liveness.threshhold"},
      {"[livenes]\nthreshold = 0.5\n", "unknown section [livenes]"},
      {"workers = \"two\"\n", "workers: expected a finite number"},
      // Found by config_fuzzer (issue 17): nan passed every range check, and inf or 1e300 was
      // converted to an integer before the range was checked.
      {"[liveness]\nthreshold = nan\n", "liveness.threshold: expected a finite number"},
      {"[login]\nidentify_max_fmr = nan\n", "login.identify_max_fmr: expected a finite number"},
      {"[lockout]\nbase_lock_s = -nan\n", "lockout.base_lock_s: expected a finite number"},
      {"workers = inf\n", "workers: expected a finite number"},
      {"workers = 1e300\n", "workers: must be between"},
      {"workers = 2.5\n", "workers: expected a whole number"},
      {"[liveness]\nthreshold = 1.5\n", "liveness.threshold: must be between 0 and 1"},
      {"[liveness]\nstrong_threshold = 2\n",
       "liveness.strong_threshold: must be between 0 and 1"},
      {"[liveness]\npolicy = \"strict\"\n", "liveness.policy: unknown liveness policy 'strict'"},
      {"[recognition]\nthreshold = 1.2\n", "recognition.threshold: must be between -1 and 1"},
      {"[recognition]\nthreshold = nan\n", "recognition.threshold: expected a finite number"},
      {"[recognition]\nthreshhold = 0.8\n", "unknown setting recognition.threshhold"},
      {"secure_cookies = \"yes\"\n", "secure_cookies: expected true or false"},
      {"listen = \"localhost\"\n", "expected HOST:PORT"},
      {"listen = \"127.0.0.1:99999\"\n", "port must be a number"},
      {"tls = 3\n", "tls must be a section"},
      {"[limits]\ntrusted_proxies = [\"proxy.local\"]\n",
       "limits.trusted_proxies: expected a list of IP addresses"},
      {"workers = \n", "facelogin.toml:1:"},
      {"[search]\nprecision = \"int8\"\n", "search.precision: the gallery precision is fp32 or fp16"},
      {"[search]\napproximate_above = -1\n", "search.approximate_above: must be between 0"},
  };
  for (const auto& c : cases) {
    options_ = ServerOptions{};
    const Status s = apply(c.text);
    ASSERT_FALSE(s.ok()) << c.text;
    EXPECT_EQ(s.code(), ErrorCode::kInvalidArgument);
    EXPECT_NE(s.message().find(c.expected), std::string::npos) << s.message();
  }
  EXPECT_FALSE(apply_server_config(dir_ / "absent.toml", &options_, &data_).ok());
}

TEST(ServerConfigExample, TheDocumentedExampleParsesToTheDefaults) {
  ServerOptions options;
  std::filesystem::path data;
  const Status s = apply_server_config(
      std::filesystem::path(FACELOGIN_SOURCE_DIR) / "docs/facelogin.example.toml", &options, &data);
  ASSERT_TRUE(s.ok()) << s.to_string();
  const ServerOptions defaults;
  EXPECT_EQ(options.host, defaults.host);
  EXPECT_EQ(options.port, defaults.port);
  EXPECT_EQ(options.max_frame_bytes, defaults.max_frame_bytes);
  EXPECT_EQ(options.request_timeout, defaults.request_timeout);
  EXPECT_EQ(options.starts_per_minute, defaults.starts_per_minute);
  EXPECT_EQ(options.identify_max_fmr, defaults.identify_max_fmr);
  EXPECT_TRUE(std::isnan(options.threshold));
  EXPECT_EQ(options.population_threshold, defaults.population_threshold);
  EXPECT_EQ(options.login.liveness.deadline, defaults.login.liveness.deadline);
  EXPECT_FLOAT_EQ(options.login.liveness.threshold, defaults.login.liveness.threshold);
  EXPECT_EQ(options.login.liveness.frames_needed, defaults.login.liveness.frames_needed);
  EXPECT_EQ(options.enroll_frames_needed, defaults.enroll_frames_needed);
  EXPECT_FLOAT_EQ(options.enroll_min_pose_spread, defaults.enroll_min_pose_spread);
  EXPECT_EQ(options.auth.cookie_session_ttl, defaults.auth.cookie_session_ttl);
  EXPECT_EQ(options.auth.base_lock, defaults.auth.base_lock);
  EXPECT_EQ(options.auth.max_lock, defaults.auth.max_lock);
  EXPECT_EQ(options.queue_limit, defaults.queue_limit);
  EXPECT_EQ(options.max_flows_per_address, defaults.max_flows_per_address);
  EXPECT_EQ(options.max_connections_per_address, defaults.max_connections_per_address);
  EXPECT_TRUE(options.trusted_proxies.empty());
  EXPECT_EQ(options.gallery.precision, defaults.gallery.precision);
  EXPECT_EQ(options.gallery.approximate_above, defaults.gallery.approximate_above);
  EXPECT_EQ(options.gallery.approximate.ef_search, defaults.gallery.approximate.ef_search);
  EXPECT_EQ(options.gallery.approximate.build_threads,
            defaults.gallery.approximate.build_threads);
}

TEST(ListenAddress, Forms) {
  ServerOptions o;
  ASSERT_TRUE(parse_listen_address("[::1]:8443", &o).ok());
  EXPECT_EQ(o.host, "::1");
  EXPECT_EQ(o.port, 8443);
  ASSERT_TRUE(parse_listen_address(":0", &o).ok());
  EXPECT_EQ(o.host, "127.0.0.1");
  EXPECT_EQ(o.port, 0);
  EXPECT_FALSE(parse_listen_address("127.0.0.1:", &o).ok());
  EXPECT_FALSE(parse_listen_address("127.0.0.1:http", &o).ok());
}

}  // namespace
}  // namespace facelogin
