// The server against bad and hostile input, TLS, connection limits, proxies and saturation;
// and two servers on one database.

#include "server_fixture.h"

namespace facelogin {
namespace {

// The fixture, its helpers and its aliases (fs, beast, http, net, json).
using namespace server_test;  // NOLINT

TEST_F(ServerTest, BadInputGetsClearErrorsAndChangesNothing) {
  options_.max_frame_bytes = 300 * 1024;
  start();
  EXPECT_EQ(post_json(port_, "/api/v1/enrollments", {{"user", "-bad"}}).status, 400u);
  EXPECT_EQ(post_json(port_, "/api/v1/enrollments", {{"name", "alice"}}).status, 400u);
  EXPECT_EQ(
      call(port_, http::verb::post, "/api/v1/enrollments", "{not json", "application/json").status,
      400u);
  // A form post (what a cross-site page could send without a preflight) is refused.
  EXPECT_EQ(call(port_, http::verb::post, "/api/v1/enrollments", "user=alice",
                 "application/x-www-form-urlencoded")
                .status,
            400u);

  Reply start = post_json(port_, "/api/v1/enrollments", {{"user", "alice"}});
  ASSERT_EQ(start.status, 201u);
  const std::string frames =
      "/api/v1/enrollments/" + start.body["id"].get<std::string>() + "/frames";
  Reply junk = call(port_, http::verb::post, frames, "not an image at all", "image/jpeg");
  EXPECT_EQ(junk.status, 400u) << junk.raw;
  EXPECT_EQ(junk.body["error"]["code"], "bad_image");
  Reply huge = call(port_, http::verb::post, frames, std::string(400 * 1024, 'x'), "image/jpeg");
  EXPECT_EQ(huge.status, 413u);
  Reply early = call(port_, http::verb::post,
                     "/api/v1/enrollments/" + start.body["id"].get<std::string>() + "/finish");
  EXPECT_EQ(early.status, 400u) << early.raw;
  EXPECT_EQ(
      call(port_, http::verb::post, "/api/v1/enrollments/nope/frames", "x", "image/jpeg").status,
      404u);
  auto users = store_->list_users();
  ASSERT_TRUE(users);
  EXPECT_TRUE(users->empty());

  // A login frame without the attempt's nonce is not taken.
  Reply attempt = post_json(port_, "/api/v1/login/attempts", {{"user", "alice"}});
  ASSERT_EQ(attempt.status, 201u);
  const auto photo = recording("ClientRaw/0001", "0001_00_00_02_").front();
  Reply no_nonce =
      call(port_, http::verb::post,
           "/api/v1/login/attempts/" + attempt.body["id"].get<std::string>() + "/frames",
           read_file(photo), "image/jpeg", {{"X-Attempt-Nonce", "guess"}});
  EXPECT_EQ(no_nonce.status, 404u);
  // A bearer token that is not one.
  EXPECT_EQ(call(port_, http::verb::get, "/api/v1/account", "", "",
                 {{"Authorization", "Bearer " + std::string(64, 'f')}})
                .status,
            401u);
}

// A JPEG whose frame header claims `width` x `height` (the data stays that of a small image).
std::string with_jpeg_size(std::string jpeg, std::uint16_t width, std::uint16_t height) {
  for (std::size_t i = 2; i + 9 < jpeg.size(); ++i) {
    if (static_cast<unsigned char>(jpeg[i]) == 0xFF &&
        (static_cast<unsigned char>(jpeg[i + 1]) == 0xC0 ||
         static_cast<unsigned char>(jpeg[i + 1]) == 0xC2)) {
      jpeg[i + 5] = static_cast<char>(height >> 8);
      jpeg[i + 6] = static_cast<char>(height & 0xFF);
      jpeg[i + 7] = static_cast<char>(width >> 8);
      jpeg[i + 8] = static_cast<char>(width & 0xFF);
      return jpeg;
    }
  }
  ADD_FAILURE() << "no SOF marker";
  return jpeg;
}

TEST_F(ServerTest, HostileInputIsRefusedAndTheServerKeepsServing) {
  options_.request_timeout = std::chrono::seconds(1);
  options_.web_dir = fs::path(FACELOGIN_SOURCE_DIR) / "web";
  start();
  EXPECT_EQ(call(port_, http::verb::get, "/").status, 200u);
  EXPECT_EQ(call(port_, http::verb::get, "/app.js").headers["Content-Type"],
            "text/javascript; charset=utf-8");
  // Path traversal and hidden files on the static side: the web directory sits in the source
  // tree, next to files that must not be served.
  for (const char* target : {"/../CMakeLists.txt", "/%2e%2e/CMakeLists.txt", "/..%2fCMakeLists.txt",
                             "/.git/config", "/web/../../etc/passwd", "//etc/passwd",
                             "/api/v1/../../CMakeLists.txt", "/index.html%00"}) {
    Reply r = call(port_, http::verb::get, target);
    EXPECT_EQ(r.status, 404u) << target;
    EXPECT_EQ(r.raw.find("cmake_minimum_required"), std::string::npos) << target;
  }
  // Injection strings in every field of the JSON bodies.
  const std::vector<std::string> nasty = {"alice'; DROP TABLE users; --",
                                          "<script>x</script>",
                                          std::string("al\0ice", 7),
                                          std::string(5000, 'a'),
                                          "../../etc/passwd",
                                          "%s%n%s",
                                          "\u202e"};
  for (const auto& s : nasty) {
    EXPECT_EQ(post_json(port_, "/api/v1/enrollments", {{"user", s}}).status, 400u) << s;
    EXPECT_EQ(post_json(port_, "/api/v1/login/attempts", {{"user", s}}).status, 400u) << s;
    EXPECT_EQ(
        post_json(port_, "/api/v1/login/attempts", {{"user", "alice"}, {"session", s}}).status,
        400u)
        << s;
    EXPECT_EQ(post_json(port_, "/api/v1/login/recovery", {{"user", s}, {"code", s}}).status, 400u)
        << s;
    if (s.size() < 100 && s.find('\0') == std::string::npos) {
      EXPECT_EQ(call(port_, http::verb::get, "/api/v1/account", "", "",
                     {{"Authorization", "Bearer " + s}})
                    .status,
                401u);
    }
  }
  EXPECT_EQ(post_json(port_, "/api/v1/enrollments", json::array({1, 2})).status, 400u);
  EXPECT_EQ(post_json(port_, "/api/v1/enrollments", {{"user", 42}}).status, 400u);

  // Truncated and bomb images.
  Reply start = post_json(port_, "/api/v1/enrollments", {{"user", "alice"}});
  ASSERT_EQ(start.status, 201u);
  const std::string frames =
      "/api/v1/enrollments/" + start.body["id"].get<std::string>() + "/frames";
  const std::string jpeg = read_file(recording("ClientRaw/0001", "0001_00_00_01_").front());
  Reply truncated =
      call(port_, http::verb::post, frames, jpeg.substr(0, jpeg.size() / 3), "image/jpeg");
  EXPECT_EQ(truncated.status, 400u) << truncated.raw;
  Reply bomb =
      call(port_, http::verb::post, frames, with_jpeg_size(jpeg, 60000, 60000), "image/jpeg");
  EXPECT_EQ(bomb.status, 413u) << bomb.raw;
  EXPECT_EQ(bomb.body["error"]["code"], "image_too_large");

  // A slow client (headers never finished) is cut off after the request timeout.
  {
    net::io_context ioc;
    net::ip::tcp::socket socket(ioc);
    socket.connect(net::ip::tcp::endpoint(net::ip::make_address("127.0.0.1"), port_));
    net::write(socket,
               net::buffer(std::string("POST /api/v1/enrollments HTTP/1.1\r\nHost: x\r\n")));
    std::this_thread::sleep_for(std::chrono::milliseconds(1500));
    char byte = 0;
    boost::system::error_code ec;
    socket.read_some(net::buffer(&byte, 1), ec);
    EXPECT_TRUE(ec) << "the server kept a stalled request open";
  }
  // Garbage instead of HTTP, and headers too large.
  {
    net::io_context ioc;
    net::ip::tcp::socket socket(ioc);
    socket.connect(net::ip::tcp::endpoint(net::ip::make_address("127.0.0.1"), port_));
    net::write(socket, net::buffer(std::string("\x16\x03\x01 not http at all\r\n\r\n")));
    char byte = 0;
    boost::system::error_code ec;
    socket.read_some(net::buffer(&byte, 1), ec);
    EXPECT_TRUE(ec);
  }
  Reply big_header =
      call(port_, http::verb::get, "/healthz", "", "", {{"X-Filler", std::string(32 * 1024, 'x')}});
  EXPECT_EQ(big_header.status, 431u);

  // Nothing was stored, and the server still answers.
  auto users = store_->list_users();
  ASSERT_TRUE(users);
  EXPECT_TRUE(users->empty());
  EXPECT_EQ(call(port_, http::verb::get, "/healthz").status, 200u);
}

// A self-signed certificate for localhost, written as PEM files.
void write_self_signed(const fs::path& cert_file, const fs::path& key_file) {
  EVP_PKEY* key = EVP_EC_gen("P-256");
  ASSERT_NE(key, nullptr);
  X509* cert = X509_new();
  X509_set_version(cert, 2);
  ASN1_INTEGER_set(X509_get_serialNumber(cert), 1);
  X509_gmtime_adj(X509_getm_notBefore(cert), 0);
  X509_gmtime_adj(X509_getm_notAfter(cert), 3600);
  X509_set_pubkey(cert, key);
  X509_NAME* name = X509_get_subject_name(cert);
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                             reinterpret_cast<const unsigned char*>("localhost"), -1, -1, 0);
  X509_set_issuer_name(cert, name);
  ASSERT_GT(X509_sign(cert, key, EVP_sha256()), 0);
  FILE* f = std::fopen(cert_file.c_str(), "w");
  PEM_write_X509(f, cert);
  std::fclose(f);
  f = std::fopen(key_file.c_str(), "w");
  PEM_write_PrivateKey(f, key, nullptr, nullptr, 0, nullptr, nullptr);
  std::fclose(f);
  X509_free(cert);
  EVP_PKEY_free(key);
}

TEST_F(ServerTest, ServesHttpsWithAConfiguredCertificate) {
  options_.tls_cert_file = dir_ / "cert.pem";
  options_.tls_key_file = dir_ / "key.pem";
  write_self_signed(options_.tls_cert_file, options_.tls_key_file);
  start();

  net::io_context ioc;
  net::ssl::context tls(net::ssl::context::tls_client);
  tls.load_verify_file(options_.tls_cert_file.string());
  tls.set_verify_mode(net::ssl::verify_peer);
  beast::ssl_stream<beast::tcp_stream> stream(ioc, tls);
  beast::get_lowest_layer(stream).connect(
      net::ip::tcp::endpoint(net::ip::make_address("127.0.0.1"), port_));
  stream.handshake(net::ssl::stream_base::client);
  http::request<http::string_body> req(http::verb::get, "/healthz", 11);
  req.set(http::field::host, "localhost");
  http::write(stream, req);
  beast::flat_buffer buffer;
  http::response<http::string_body> res;
  http::read(stream, buffer, res);
  EXPECT_EQ(res.result_int(), 200u);
  EXPECT_EQ(res[http::field::strict_transport_security], "max-age=31536000");

  // Plain HTTP on the TLS port gets no answer, and the server carries on.
  EXPECT_EQ(call(port_, http::verb::get, "/healthz").status, 0u);

  // Half a pair of files is refused at start.
  server_->stop();
  options_.tls_key_file.clear();
  auto bad = Server::start(options_, deps_);
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().code(), ErrorCode::kInvalidArgument);
}

TEST_F(ServerTest, ConnectionsAreLimitedPerAddress) {
  options_.max_connections_per_address = 2;
  start();
  net::io_context ioc;
  std::vector<net::ip::tcp::socket> held;
  for (int i = 0; i < 2; ++i) {
    held.emplace_back(ioc);
    held.back().connect(net::ip::tcp::endpoint(net::ip::make_address("127.0.0.1"), port_));
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(200));     // accepted and counted
  EXPECT_EQ(call(port_, http::verb::get, "/healthz").status, 0u);  // a third from 127.0.0.1
  EXPECT_EQ(call(port_, http::verb::get, "/healthz", "", "", {}, "127.0.0.2").status, 200u);
  held.clear();
  std::this_thread::sleep_for(std::chrono::milliseconds(200));  // closed and released
  EXPECT_EQ(call(port_, http::verb::get, "/healthz").status, 200u);
}

TEST(ClientAddress, OnlyATrustedProxyMayNameTheClient) {
  server::Request request(http::verb::get, "/", 11);
  request.insert("X-Forwarded-For", "198.51.100.9, 203.0.113.7");
  request.insert("X-Forwarded-For", "10.0.0.2");
  const std::vector<std::string> proxies = {"127.0.0.1", "10.0.0.2"};
  // From the proxy: the right-most address that is not a proxy (the left is the client's say).
  EXPECT_EQ(server::client_address(request, "127.0.0.1", proxies), "203.0.113.7");
  // From anyone else the header means nothing.
  EXPECT_EQ(server::client_address(request, "192.0.2.50", proxies), "192.0.2.50");
  EXPECT_EQ(server::client_address(request, "127.0.0.1", {}), "127.0.0.1");
  server::Request junk(http::verb::get, "/", 11);
  junk.insert("X-Forwarded-For", "not-an-address");
  EXPECT_EQ(server::client_address(junk, "127.0.0.1", proxies), "127.0.0.1");
  server::Request none(http::verb::get, "/", 11);
  EXPECT_EQ(server::client_address(none, "127.0.0.1", proxies), "127.0.0.1");
  // A proxy written in another form is still the proxy (auth_fuzzer, issue 17).
  server::Request scoped(http::verb::get, "/", 11);
  scoped.insert("X-Forwarded-For", "2001:db8::7, ::2%eth0, 0:0::2");
  EXPECT_EQ(server::client_address(scoped, "::2", {"::2"}), "2001:db8::7");
}

TEST_F(ServerTest, BehindATrustedProxyLimitsApplyToTheRealClient) {
  options_.trusted_proxies = {"127.0.0.1"};
  options_.starts_per_minute = 1;
  start();
  const auto start_as = [&](const std::string& client, const std::string& source) {
    return call(port_, http::verb::post, "/api/v1/login/attempts",
                json{{"user", "u" + client.substr(client.rfind('.') + 1)}}.dump(),
                "application/json", {{"X-Forwarded-For", client}}, source);
  };
  EXPECT_EQ(start_as("203.0.113.7", "127.0.0.1").status, 201u);
  EXPECT_EQ(start_as("203.0.113.8", "127.0.0.1").status, 201u);  // another client
  EXPECT_EQ(start_as("203.0.113.7", "127.0.0.1").status, 429u);  // the first one again
  // A client that is not the proxy cannot pick its address.
  EXPECT_EQ(start_as("203.0.113.9", "127.0.0.2").status, 201u);
  EXPECT_EQ(start_as("203.0.113.10", "127.0.0.2").status, 429u);
}

TEST_F(ServerTest, SaturatedWorkersAnswer503QuicklyInsteadOfQueueing) {
  options_.workers = 1;
  options_.queue_limit = 0;
  options_.starts_per_minute = 1000;
  start();
  const auto frames = recording("ClientRaw/0001", "0001_00_00_02_");
  constexpr int kClients = 8;
  std::vector<std::pair<std::string, std::string>> attempts;
  for (int i = 0; i < kClients; ++i) {
    Reply a = post_json(port_, "/api/v1/login/attempts", {{"user", "alice"}});
    ASSERT_EQ(a.status, 201u);
    attempts.emplace_back(a.body["id"], a.body["nonce"]);
  }
  std::atomic<int> ok{0};
  std::atomic<int> busy{0};
  std::vector<std::thread> threads;
  const std::string frame = read_file(frames[0]);
  for (int i = 0; i < kClients; ++i) {
    threads.emplace_back([&, i] {
      Reply r =
          call(port_, http::verb::post, "/api/v1/login/attempts/" + attempts[i].first + "/frames",
               frame, "image/jpeg", {{"X-Attempt-Nonce", attempts[i].second}});
      if (r.status == 503u) {
        EXPECT_EQ(r.headers["Retry-After"], "1");
        ++busy;
      } else if (r.status == 200u) {
        ++ok;
      }
    });
  }
  for (auto& t : threads) {
    t.join();
  }
  EXPECT_GE(ok.load(), 1);
  EXPECT_GE(busy.load(), 1);
  EXPECT_EQ(ok.load() + busy.load(), kClients);
}

// ---------------------------------------------------------------------------------------------
// Two servers on one database (issue 5): each with its own stores (own connections), workers and
// flows, as two `facelogin serve` processes would be. What one does, the other honours at once.

class TwoServersTest : public ServerTest, public ::testing::WithParamInterface<std::string> {
 protected:
  void SetUp() override {
    ServerTest::SetUp();
    if (IsSkipped() || HasFatalFailure()) {
      return;
    }
    FACELOGIN_REQUIRE_BACKEND(db_);
    for (int i = 0; i < 2; ++i) {
      auto store = db_.open_store(std::string(32, '\x44'));
      ASSERT_TRUE(store) << store.error().to_string();
      auto auth = db_.open_auth_store();
      ASSERT_TRUE(auth) << auth.error().to_string();
      ServerDeps deps = deps_;
      deps.store = store->get();
      deps.auth_store = auth->get();
      stores_.push_back(std::move(*store));
      auths_.push_back(std::move(*auth));
      ServerOptions options = options_;
      options.starts_per_minute = 12;
      auto server = Server::start(options, deps);
      ASSERT_TRUE(server) << server.error().to_string();
      ports_.push_back((*server)->port());
      servers_.push_back(std::move(*server));
    }
    // The fixture's helpers (API keys for bearer sessions) work on the shared database.
    auth_store_ = std::move(auths_[0]);
    auths_[0] = nullptr;
  }

  void TearDown() override {
    for (auto& s : servers_) {
      s->stop();
    }
    servers_.clear();
    ServerTest::TearDown();
  }

  void use(int server) { port_ = ports_[static_cast<std::size_t>(server)]; }

  testing::BackendDb db_{GetParam()};
  std::vector<std::unique_ptr<Store>> stores_;
  std::vector<std::unique_ptr<AuthStore>> auths_;
  std::vector<std::unique_ptr<Server>> servers_;
  std::vector<std::uint16_t> ports_;
};

TEST_P(TwoServersTest, EnrolmentsSessionsLockoutsRateLimitsAndGalleriesHoldAcrossServers) {
  // Enrolled on the first server, alice logs in on the second.
  use(0);
  Reply enrolled = enrol("alice", recording("ClientRaw/0001", "0001_00_00_01_"));
  ASSERT_EQ(enrolled.status, 201u) << enrolled.raw;
  use(1);
  Reply login_b = login("alice", recording("ClientRaw/0001", "0001_00_00_02_"));
  ASSERT_EQ(login_b.body["state"], "accepted") << login_b.raw;
  const std::string token = login_b.body["session"]["token"];
  const std::map<std::string, std::string> bearer = {{"Authorization", "Bearer " + token}};

  // Her session from the second server works on the first; logging out on the first ends it on
  // the second.
  Reply session_a = call(ports_[0], http::verb::get, "/api/v1/session", "", "", bearer);
  ASSERT_EQ(session_a.status, 200u) << session_a.raw;
  EXPECT_EQ(session_a.body["user"], "alice");
  ASSERT_EQ(call(ports_[0], http::verb::post, "/api/v1/logout", "", "", bearer).status, 200u);
  EXPECT_EQ(call(ports_[1], http::verb::get, "/api/v1/session", "", "", bearer).status, 401u);

  // Face-only login on the second server finds alice; after bob enrols on the first, the
  // second server's in-memory gallery follows (it reloads when the store's generation moves)
  // and finds bob (NUAA subject 0005) by his face alone.
  Reply alice_by_face = login("", recording("ClientRaw/0001", "0001_00_00_02_"));
  ASSERT_EQ(alice_by_face.body["state"], "accepted") << alice_by_face.raw;
  EXPECT_EQ(alice_by_face.body["session"]["user"], "alice");
  use(0);
  ASSERT_EQ(enrol("bob", recording("ClientRaw/0005", "0005_00_00_01_")).status, 201u);
  use(1);
  Reply bob_by_face = login("", recording("ClientRaw/0005", "0005_00_00_02_"));
  ASSERT_EQ(bob_by_face.body["state"], "accepted") << bob_by_face.raw;
  EXPECT_EQ(bob_by_face.body["session"]["user"], "bob");

  // Wrong recovery codes on alternate servers lock this address out of her account on both.
  unsigned last = 0;
  for (int i = 0; i < 6; ++i) {
    last = post_json(ports_[static_cast<std::size_t>(i % 2)], "/api/v1/login/recovery",
                     {{"user", "alice"}, {"code", std::string(64, '0')}, {"session", "bearer"}},
                     key_for("bearer"))
               .status;
  }
  EXPECT_EQ(last, 401u);
  for (std::uint16_t port : ports_) {
    Reply locked = post_json(port, "/api/v1/login/attempts",
                             {{"user", "alice"}, {"session", "bearer"}}, key_for("bearer"));
    EXPECT_EQ(locked.status, 429u) << locked.raw;
    EXPECT_TRUE(locked.headers.count("Retry-After")) << locked.raw;
  }

  // One address's starts are counted by both servers together (12 a minute here): alternating
  // between them does not double the allowance.
  int accepted = 0;
  unsigned refused = 0;
  for (int i = 0; i < 16 && refused == 0; ++i) {
    const json body = {{"user", "visitor" + std::to_string(i)}, {"session", "cookie"}};
    Reply r = call(ports_[static_cast<std::size_t>(i % 2)], http::verb::post,
                   "/api/v1/login/attempts", body.dump(), "application/json", {}, "127.0.0.9");
    if (r.status == 201u) {
      ++accepted;
    } else {
      refused = r.status;
    }
  }
  EXPECT_EQ(accepted, 12);
  EXPECT_EQ(refused, 429u);
}

INSTANTIATE_TEST_SUITE_P(Backends, TwoServersTest, ::testing::ValuesIn(testing::store_backends()),
                         testing::backend_param_name);

}  // namespace
}  // namespace facelogin
