#pragma once

// The fixture of the server tests (server_*_test.cpp): a server over loopback on a temporary
// store, with real faces (NUAA subject 0001 is "alice"), and one-request helpers.

#include "facelogin/server.h"

#include <fmt/format.h>
#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include <atomic>
#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <boost/beast/websocket.hpp>
#include <fstream>
#include <iterator>
#include <map>
#include <random>
#include <nlohmann/json.hpp>
#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>
#include <thread>

#include "facelogin/auth.h"
#include "facelogin/auth_store.h"
#include "facelogin/liveness.h"
#include "server/api.h"
#include "facelogin/models.h"
#include "store_backends.h"
#include "synthetic_faces.h"
#include "test_data.h"
#include "test_engine.h"

namespace facelogin::server_test {

namespace fs = std::filesystem;
namespace beast = boost::beast;
namespace http = beast::http;
namespace net = boost::asio;
using json = nlohmann::json;

struct Reply {
  unsigned status = 0;
  json body;
  std::string raw;
  std::map<std::string, std::string> headers;
};

inline std::string read_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

// One request on a new connection.
inline Reply call(std::uint16_t port, http::verb method, const std::string& target,
           const std::string& body = "", const std::string& type = "",
           const std::map<std::string, std::string>& headers = {},
           const std::string& source = "127.0.0.1") {
  net::io_context ioc;
  beast::tcp_stream stream(ioc);
  // Any 127.x.y.z is this machine: a different source address is another client.
  stream.socket().open(net::ip::tcp::v4());
  stream.socket().bind(net::ip::tcp::endpoint(net::ip::make_address(source), 0));
  stream.connect(net::ip::tcp::endpoint(net::ip::make_address("127.0.0.1"), port));
  http::request<http::string_body> req(method, target, 11);
  req.set(http::field::host, "127.0.0.1");
  if (!type.empty()) {
    req.set(http::field::content_type, type);
  }
  for (const auto& [k, v] : headers) {
    req.set(k, v);
  }
  req.body() = body;
  req.prepare_payload();
  // A server that refuses a body (413) may answer and close before the client has written all
  // of it: the write then fails with a broken pipe, and the answer is still there to read.
  beast::error_code write_error;
  http::write(stream, req, write_error);
  beast::flat_buffer buffer;
  http::response_parser<http::string_body> parser;
  parser.body_limit(16 << 20);
  beast::error_code ec;
  http::read(stream, buffer, parser, ec);
  Reply r;
  if (ec) {
    r.status = 0;
    return r;
  }
  auto& res = parser.get();
  r.status = res.result_int();
  r.raw = res.body();
  for (const auto& field : res) {
    r.headers[std::string(field.name_string())] = std::string(field.value());
  }
  r.body = json::parse(r.raw, nullptr, false);
  return r;
}

inline Reply post_json(std::uint16_t port, const std::string& target, const json& body,
                const std::map<std::string, std::string>& headers = {}) {
  return call(port, http::verb::post, target, body.dump(), "application/json", headers);
}

class ServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    FACELOGIN_REQUIRE_DATA(data);
    FACELOGIN_REQUIRE_ENGINE(engine);
    nuaa_ = data / "nuaa";
    if (!fs::is_directory(nuaa_)) {
      GTEST_SKIP() << nuaa_ << " not found: skipping real-face test";
    }
    auto liveness = LivenessModels::load(*testing::model_dir());
    if (!liveness) {
      GTEST_SKIP() << "liveness models unavailable: " << liveness.error().message();
    }
    dir_ = testing::make_temp_dir("facelogin-server");
    SqliteStoreOptions store_options;
    store_options.key = std::string(32, '\x44');
    auto store = open_sqlite_store(dir_ / "facelogin.db", store_options);
    ASSERT_TRUE(store) << store.error().to_string();
    store_ = std::move(*store);
    auto auth = open_sqlite_auth_store(dir_ / "facelogin.db");
    ASSERT_TRUE(auth) << auth.error().to_string();
    auth_store_ = std::move(*auth);
    deps_.engine = engine;
    deps_.store = store_.get();
    deps_.auth_store = auth_store_.get();
    deps_.liveness = *liveness;
    options_.port = 0;
    options_.workers = 2;
    // Sanitizer builds run frames ten times slower than a camera; the deadline is about the
    // stream, not the machine.
    options_.login.liveness.deadline = std::chrono::seconds(120);
    options_.flow_ttl = std::chrono::seconds(180);
  }

  void TearDown() override {
    if (server_) {
      server_->stop();
    }
    server_.reset();
    if (!dir_.empty()) {
      fs::remove_all(dir_);
    }
  }

  // An application's API key, as `facelogin apikeys create` makes it.
  std::string make_key(const std::string& name, std::vector<std::string> scopes,
                       const std::string& liveness = "") {
    auto key = new_api_key();
    EXPECT_TRUE(key);
    ApiKeyRecord record;
    record.name = name;
    record.scopes = std::move(scopes);
    record.liveness = liveness;
    EXPECT_TRUE(auth_store_->create_api_key(record, token_hash(*key)));
    return *key;
  }

  // The key the helpers send with bearer-session requests.
  std::map<std::string, std::string> key_for(const std::string& session) {
    if (session != "bearer") {
      return {};
    }
    if (app_key_.empty()) {
      // Configured passive, as an application that runs its own camera loop and accepts that
      // risk would: under the default (adaptive) every bearer login steps up to the challenge,
      // which a recording cannot answer (AdaptiveStepsUpTheLoginsThatNeedIt).
      app_key_ = make_key("tests", {"login", "enroll"}, "passive");
    }
    return {{"X-API-Key", app_key_}};
  }

  void start() {
    auto server = Server::start(options_, deps_);
    ASSERT_TRUE(server) << server.error().to_string();
    server_ = std::move(*server);
    port_ = server_->port();
  }

  // The frames of one NUAA recording in camera order.
  std::vector<fs::path> recording(const std::string& folder, const std::string& prefix) {
    std::vector<fs::path> out;
    for (const auto& [n, path] : testing::recording_frames(nuaa_ / folder, prefix)) {
      out.push_back(path);
    }
    return out;
  }

  // Enrols `user` from a recording; returns the finish reply.
  Reply enrol(const std::string& user, const std::vector<fs::path>& frames,
              const std::string& session = "bearer") {
    EXPECT_FALSE(frames.empty()) << "no frames for this recording";
    Reply start = post_json(port_, "/api/v1/enrollments", {{"user", user}, {"session", session}},
                            key_for(session));
    EXPECT_EQ(start.status, 201u) << start.raw;
    const std::string id = start.body.value("id", "");
    bool ready = false;
    for (const auto& f : frames) {
      Reply r = call(port_, http::verb::post, "/api/v1/enrollments/" + id + "/frames", read_file(f),
                     "image/jpeg");
      EXPECT_EQ(r.status, 200u) << r.raw;
      if (r.body.value("ready", false)) {
        ready = true;
        break;
      }
    }
    EXPECT_TRUE(ready) << "enrolment never became ready";
    return call(port_, http::verb::post, "/api/v1/enrollments/" + id + "/finish");
  }

  // Plays a recording as a login attempt for `user`; returns the last frame's reply.
  Reply login(const std::string& user, const std::vector<fs::path>& frames,
              const std::string& session = "bearer") {
    EXPECT_FALSE(frames.empty()) << "no frames for this recording";
    Reply start = post_json(port_, "/api/v1/login/attempts", {{"user", user}, {"session", session}},
                            key_for(session));
    if (start.status != 201u) {
      return start;
    }
    const std::string id = start.body["id"];
    const std::string nonce = start.body["nonce"];
    Reply last;
    for (const auto& f : frames) {
      last = call(port_, http::verb::post, "/api/v1/login/attempts/" + id + "/frames", read_file(f),
                  "image/jpeg", {{"X-Attempt-Nonce", nonce}});
      if (last.status != 200u || last.body.value("state", "") != "pending") {
        break;
      }
    }
    return last;
  }

  fs::path nuaa_;
  fs::path dir_;
  std::unique_ptr<Store> store_;
  std::unique_ptr<AuthStore> auth_store_;
  ServerDeps deps_;
  ServerOptions options_;
  std::unique_ptr<Server> server_;
  std::uint16_t port_ = 0;
  std::string app_key_;
};

}  // namespace facelogin::server_test
