// The server: WebSocket streaming, lockout and recovery paths, over loopback with real faces.

#include "server_fixture.h"

namespace facelogin {
namespace {

// The fixture, its helpers and its aliases (fs, beast, http, net, json).
using namespace server_test;  // NOLINT

TEST_F(ServerTest, WebSocketStreamsALoginForAnApplication) {
  start();
  ASSERT_EQ(enrol("alice", recording("ClientRaw/0001", "0001_00_00_01_")).status, 201u);
  Reply attempt = post_json(port_, "/api/v1/login/attempts",
                            {{"user", "alice"}, {"session", "bearer"}}, key_for("bearer"));
  ASSERT_EQ(attempt.status, 201u);
  const std::string path =
      "/api/v1/login/attempts/" + attempt.body["id"].get<std::string>() + "/socket";

  net::io_context ioc;
  beast::websocket::stream<beast::tcp_stream> ws(ioc);
  beast::get_lowest_layer(ws).connect(
      net::ip::tcp::endpoint(net::ip::make_address("127.0.0.1"), port_));
  ws.set_option(beast::websocket::stream_base::decorator(
      [&](beast::websocket::request_type& req) { req.set("X-API-Key", app_key_); }));
  ws.handshake("127.0.0.1", path);
  const auto exchange = [&](const std::string& message, bool binary) {
    ws.binary(binary);
    ws.write(net::buffer(message));
    beast::flat_buffer buffer;
    ws.read(buffer);
    return json::parse(beast::buffers_to_string(buffer.data()));
  };
  EXPECT_EQ(exchange(json{{"nonce", attempt.body["nonce"]}}.dump(), false)["ok"], true);
  json last;
  for (const auto& f : recording("ClientRaw/0001", "0001_00_00_02_")) {
    last = exchange(read_file(f), true);
    ASSERT_EQ(last["status"], 200) << last.dump();
    if (last["state"] != "pending") {
      break;
    }
  }
  EXPECT_EQ(last["state"], "accepted") << last.dump();
  EXPECT_EQ(last["session"]["token"].get<std::string>().size(), 64u);
  beast::flat_buffer rest;
  beast::error_code ec;
  ws.read(rest, ec);  // the server closes the socket after the decision
  EXPECT_EQ(ec, beast::websocket::error::closed);
}

TEST_F(ServerTest, WebSocketAbuseIsRefused) {
  options_.max_frame_bytes = 64 * 1024;
  start();
  Reply cookie_attempt = post_json(port_, "/api/v1/login/attempts", {{"user", "alice"}});
  Reply bearer_attempt = post_json(port_, "/api/v1/login/attempts",
                                   {{"user", "alice"}, {"session", "bearer"}}, key_for("bearer"));
  ASSERT_EQ(bearer_attempt.status, 201u);
  const auto socket_path = [](const Reply& r) {
    return "/api/v1/login/attempts/" + r.body["id"].get<std::string>() + "/socket";
  };
  const auto handshake = [&](const std::string& path, const std::string& origin) {
    net::io_context ioc;
    beast::websocket::stream<beast::tcp_stream> ws(ioc);
    beast::get_lowest_layer(ws).connect(
        net::ip::tcp::endpoint(net::ip::make_address("127.0.0.1"), port_));
    ws.set_option(
        beast::websocket::stream_base::decorator([&](beast::websocket::request_type& req) {
          if (!origin.empty()) {
            req.set(http::field::origin, origin);
          }
        }));
    beast::websocket::response_type res;
    beast::error_code ec;
    ws.handshake(res, "127.0.0.1", path, ec);
    return res.result_int();
  };
  EXPECT_EQ(handshake(socket_path(cookie_attempt), ""), 400u);  // cookie sessions post
  EXPECT_EQ(handshake(socket_path(bearer_attempt), "https://evil.example"), 403u);
  EXPECT_EQ(handshake("/api/v1/login/attempts/nope/socket", ""), 404u);
  EXPECT_EQ(handshake("/api/v1/account", ""), 404u);
  EXPECT_EQ(call(port_, http::verb::get, socket_path(bearer_attempt)).status, 400u);
  // Each case below takes a flow's one socket: a fresh attempt for each.
  const auto fresh_attempt = [&] {
    Reply r = post_json(port_, "/api/v1/login/attempts", {{"user", "alice"}, {"session", "bearer"}},
                        key_for("bearer"));
    EXPECT_EQ(r.status, 201u) << r.raw;
    return r;
  };

  // Frames before the nonce, a message over the limit, and junk text.
  {
    net::io_context ioc;
    beast::websocket::stream<beast::tcp_stream> ws(ioc);
    beast::get_lowest_layer(ws).connect(
        net::ip::tcp::endpoint(net::ip::make_address("127.0.0.1"), port_));
    ws.handshake("127.0.0.1", socket_path(bearer_attempt));
    ws.binary(true);
    ws.write(net::buffer(std::string("not a frame")));
    beast::flat_buffer buffer;
    ws.read(buffer);
    const json no_nonce = json::parse(beast::buffers_to_string(buffer.data()));
    EXPECT_EQ(no_nonce["status"], 404) << no_nonce.dump();  // and the socket closes
    beast::error_code ec;
    ws.read(buffer, ec);
    EXPECT_TRUE(ec);
  }
  {
    net::io_context ioc;
    beast::websocket::stream<beast::tcp_stream> ws(ioc);
    beast::get_lowest_layer(ws).connect(
        net::ip::tcp::endpoint(net::ip::make_address("127.0.0.1"), port_));
    ws.handshake("127.0.0.1", socket_path(fresh_attempt()));
    ws.binary(true);
    beast::error_code ec;
    ws.write(net::buffer(std::string(200 * 1024, 'x')), ec);
    beast::flat_buffer buffer;
    ws.read(buffer, ec);
    EXPECT_TRUE(ec) << "a message over the limit must close the socket";
  }
  {
    net::io_context ioc;
    beast::websocket::stream<beast::tcp_stream> ws(ioc);
    beast::get_lowest_layer(ws).connect(
        net::ip::tcp::endpoint(net::ip::make_address("127.0.0.1"), port_));
    ws.handshake("127.0.0.1", socket_path(fresh_attempt()));
    ws.text(true);
    ws.write(net::buffer(std::string("{\"nonce\": 42}")));
    beast::flat_buffer buffer;
    ws.read(buffer);
    EXPECT_EQ(json::parse(beast::buffers_to_string(buffer.data()))["status"], 400);
  }
  EXPECT_EQ(call(port_, http::verb::get, "/healthz").status, 200u);
}

TEST_F(ServerTest, NoPathAroundTheLockoutOrTheNamesOfAccounts) {
  start();
  Reply alice = enrol("alice", recording("ClientRaw/0001", "0001_00_00_01_"), "cookie");
  ASSERT_EQ(alice.status, 201u) << alice.raw;
  server_->stop();
  options_.max_frames_per_flow = 3;
  options_.max_flows_per_address = 3;
  start();

  // A browser still holding alice's cookie may start a new login without the CSRF header.
  const std::string cookie =
      alice.headers["Set-Cookie"].substr(0, alice.headers["Set-Cookie"].find(';'));
  EXPECT_EQ(
      post_json(port_, "/api/v1/login/attempts", {{"user", "alice"}}, {{"Cookie", cookie}}).status,
      201u);

  // An unknown name is not refused at its first frame: it runs like a wrong face.
  Reply carol = post_json(port_, "/api/v1/login/attempts", {{"user", "carol"}});
  ASSERT_EQ(carol.status, 201u);
  const auto frames = recording("ClientRaw/0001", "0001_00_00_02_");
  Reply first =
      call(port_, http::verb::post,
           "/api/v1/login/attempts/" + carol.body["id"].get<std::string>() + "/frames",
           read_file(frames[0]), "image/jpeg", {{"X-Attempt-Nonce", carol.body["nonce"]}});
  ASSERT_EQ(first.status, 200u) << first.raw;
  EXPECT_EQ(first.body["state"], "pending") << first.raw;
  EXPECT_TRUE(first.body.contains("liveness"));

  // Running an attempt into the frame cap counts as a failure.
  Reply capped = post_json(port_, "/api/v1/login/attempts", {{"user", "alice"}});
  ASSERT_EQ(capped.status, 201u);
  Reply over;
  for (int i = 0; i < 4; ++i) {
    over = call(port_, http::verb::post,
                "/api/v1/login/attempts/" + capped.body["id"].get<std::string>() + "/frames",
                "junk", "image/jpeg", {{"X-Attempt-Nonce", capped.body["nonce"]}});
  }
  EXPECT_EQ(over.status, 429u) << over.raw;
  auto failures = auth_store_->failure_state("pair:127.0.0.1/alice");
  ASSERT_TRUE(failures);
  EXPECT_EQ(failures->failures, 1);

  // Open flows per address are bounded: two are open (the capped one ended), one more fits.
  EXPECT_EQ(post_json(port_, "/api/v1/login/attempts", {{"user", "alice"}}).status, 201u);
  Reply fourth = post_json(port_, "/api/v1/login/attempts", {{"user", "alice"}});
  EXPECT_EQ(fourth.status, 429u) << fourth.raw;
}

TEST_F(ServerTest, AFaceOnlyLoginCannotEnterALockedAccount) {
  options_.login.liveness.policy = LivenessPolicy::kPassive;  // face-only: see above
  start();
  ASSERT_EQ(enrol("alice", recording("ClientRaw/0001", "0001_00_00_01_")).status, 201u);
  const std::int64_t now_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                                  std::chrono::system_clock::now().time_since_epoch())
                                  .count();
  // Locked for alice from this address (the pair's counter): the face-only attempt names her
  // only at the decision, and is refused there.
  ASSERT_TRUE(auth_store_->record_failure("pair:127.0.0.1/alice", now_ms, 86'400'000,
                                          [](int) { return 600'000; }));
  Reply face_only = login("", recording("ClientRaw/0001", "0001_00_00_02_"));
  ASSERT_EQ(face_only.status, 200u) << face_only.raw;
  EXPECT_EQ(face_only.body["state"], "rejected");
  EXPECT_EQ(face_only.body["reason"], "locked_out");
  EXPECT_FALSE(face_only.body.contains("session"));
}

TEST_F(ServerTest, EnrollingAnEnrolledFaceCountsAsAFailure) {
  start();
  ASSERT_EQ(enrol("alice", recording("ClientRaw/0001", "0001_00_00_01_")).status, 201u);
  Reply again = enrol("alice2", recording("ClientRaw/0001", "0001_00_00_02_"));
  EXPECT_EQ(again.status, 409u) << again.raw;
  EXPECT_EQ(again.body["error"]["code"], "duplicate_face");
  auto failures = auth_store_->failure_state("addr:127.0.0.1");
  ASSERT_TRUE(failures);
  EXPECT_EQ(failures->failures, 1);
}

TEST_F(ServerTest, RecoveryCodeLogsInOnce) {
  start();
  Reply enrolled = enrol("alice", recording("ClientRaw/0001", "0001_00_00_01_"));
  ASSERT_EQ(enrolled.status, 201u) << enrolled.raw;
  const std::string code = enrolled.body["recovery_code"];
  Reply wrong =
      post_json(port_, "/api/v1/login/recovery",
                {{"user", "alice"}, {"code", std::string(64, '0')}, {"session", "bearer"}},
                key_for("bearer"));
  EXPECT_EQ(wrong.status, 401u);
  Reply right =
      post_json(port_, "/api/v1/login/recovery",
                {{"user", "alice"}, {"code", code}, {"session", "bearer"}}, key_for("bearer"));
  ASSERT_EQ(right.status, 200u) << right.raw;
  EXPECT_FALSE(right.body["session"]["token"].get<std::string>().empty());
  Reply again =
      post_json(port_, "/api/v1/login/recovery",
                {{"user", "alice"}, {"code", code}, {"session", "bearer"}}, key_for("bearer"));
  EXPECT_EQ(again.status, 401u);
}

// ---------------------------------------------------------------------------------------------
// Issue 17: the findings of the adversarial review, each with the test that failed before it.

// Medium 1: an enrol-only key with liveness off, sent along with a cookie-session login, must
// not switch liveness off for that login (a printed photo got in).
TEST_F(ServerTest, AKeysLivenessPolicyAppliesOnlyToItsOwnScopes) {
  start();
  ASSERT_EQ(enrol("alice", recording("ClientRaw/0001", "0001_00_00_01_")).status, 201u);
  const std::string enrol_only = make_key("signup-kiosk", {"enroll"}, "off");
  Reply start = post_json(port_, "/api/v1/login/attempts", {{"user", "alice"}, {"session", "cookie"}},
                          {{"X-API-Key", enrol_only}});
  ASSERT_EQ(start.status, 201u) << start.raw;
  EXPECT_EQ(start.body["liveness"], true) << start.raw;
  EXPECT_EQ(start.body["policy"], "adaptive") << start.raw;  // the server's default
  Reply last;
  for (const auto& f : recording("ImposterRaw/0001", "0001_00_01_02_")) {
    last = call(port_, http::verb::post,
                "/api/v1/login/attempts/" + start.body["id"].get<std::string>() + "/frames",
                read_file(f), "image/jpeg",
                {{"X-Attempt-Nonce", start.body["nonce"]}, {"X-API-Key", enrol_only}});
    if (last.body.value("state", "") != "pending") {
      break;
    }
  }
  EXPECT_EQ(last.body["state"], "rejected") << last.raw;
  EXPECT_EQ(last.body["reason"], "not_live") << last.raw;
  // The same key does set the policy of what it may do: an enrolment.
  Reply enrolment = post_json(port_, "/api/v1/enrollments", {{"user", "kiosk-user"}},
                              {{"X-API-Key", enrol_only}});
  ASSERT_EQ(enrolment.status, 201u) << enrolment.raw;
  EXPECT_EQ(enrolment.body["liveness"], false);
}

// Medium 2: strangers at other addresses cannot lock the owner out.
TEST_F(ServerTest, StrangersElsewhereCannotLockTheOwnerOut) {
  options_.starts_per_minute = 3;
  start();
  // alice enrols from 127.0.0.1, which makes it a known context for her account.
  Reply enrolled = enrol("alice", recording("ClientRaw/0001", "0001_00_00_01_"), "cookie");
  ASSERT_EQ(enrolled.status, 201u) << enrolled.raw;
  const std::string code = enrolled.body["recovery_code"];
  const auto post_from = [&](const std::string& source, const std::string& target,
                             const json& body) {
    return call(port_, http::verb::post, target, body.dump(), "application/json", {}, source);
  };
  const json wrong = {{"user", "alice"}, {"code", std::string(64, '0')}};

  // Wrong recovery codes from six addresses: each is refused as wrong, none locks the account.
  for (int i = 2; i <= 7; ++i) {
    EXPECT_EQ(post_from(fmt::format("127.0.0.{}", i), "/api/v1/login/recovery", wrong).status,
              401u);
  }
  EXPECT_EQ(auth_store_->failure_state("user:alice")->failures, 0);
  // One address guessing on: after the free failures it is locked out of alice's recovery...
  unsigned status = 0;
  for (int i = 0; i < 8 && status != 429u; ++i) {
    status = post_from("127.0.0.2", "/api/v1/login/recovery", wrong).status;
  }
  EXPECT_EQ(status, 429u);
  // ...and the owner's correct code from a fresh address still works.
  Reply recovered = post_from("127.0.0.8", "/api/v1/login/recovery",
                              {{"user", "alice"}, {"code", code}});
  EXPECT_EQ(recovered.status, 200u) << recovered.raw;

  // Starts: the account's own rate (3 a minute here, one taken by her enrolment, which came from
  // an address she had no session from yet) holds for strangers' addresses...
  for (int i = 10; i <= 11; ++i) {
    EXPECT_EQ(post_from(fmt::format("127.0.0.{}", i), "/api/v1/login/attempts", {{"user", "alice"}})
                  .status,
              201u);
  }
  Reply limited = post_from("127.0.0.12", "/api/v1/login/attempts", {{"user", "alice"}});
  EXPECT_EQ(limited.status, 429u) << limited.raw;
  EXPECT_NE(limited.raw.find("account"), std::string::npos) << limited.raw;
  // ...but not for an address alice has logged in from.
  EXPECT_EQ(post_from("127.0.0.1", "/api/v1/login/attempts", {{"user", "alice"}}).status, 201u);

  // Face failures from strangers' addresses lock her face login for strangers' addresses only.
  const std::int64_t now_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                                  std::chrono::system_clock::now().time_since_epoch())
                                  .count();
  ASSERT_TRUE(auth_store_->record_failure("user:alice", now_ms, 86'400'000,
                                          [](int) { return 600'000; }));
  Reply stranger = post_from("127.0.0.14", "/api/v1/login/attempts", {{"user", "alice"}});
  EXPECT_EQ(stranger.status, 429u) << stranger.raw;
  EXPECT_EQ(post_from("127.0.0.8", "/api/v1/login/attempts", {{"user", "alice"}}).status, 201u)
      << "the address of her recovery login is a known context now";
}

// Low: a disabled account's recovery code is not used up by a refusal.
TEST_F(ServerTest, RecoveryForADisabledAccountKeepsTheCode) {
  start();
  Reply enrolled = enrol("alice", recording("ClientRaw/0001", "0001_00_00_01_"), "cookie");
  ASSERT_EQ(enrolled.status, 201u) << enrolled.raw;
  const std::string code = enrolled.body["recovery_code"];
  ASSERT_TRUE(store_->set_disabled("alice", true).ok());
  Reply refused = post_json(port_, "/api/v1/login/recovery", {{"user", "alice"}, {"code", code}});
  EXPECT_EQ(refused.status, 401u) << refused.raw;  // like an unknown account
  ASSERT_TRUE(store_->set_disabled("alice", false).ok());
  Reply ok = post_json(port_, "/api/v1/login/recovery", {{"user", "alice"}, {"code", code}});
  EXPECT_EQ(ok.status, 200u) << ok.raw;
}

// Low: only the owner's web session may replace the recovery code; ids are parsed strictly.
TEST_F(ServerTest, RecoveryCodeChangesNeedTheWebSessionAndIdsAreStrict) {
  start();
  Reply enrolled = enrol("alice", recording("ClientRaw/0001", "0001_00_00_01_"), "bearer");
  ASSERT_EQ(enrolled.status, 201u) << enrolled.raw;
  const std::map<std::string, std::string> bearer = {
      {"Authorization", "Bearer " + enrolled.body["session"]["token"].get<std::string>()}};
  Reply by_app = call(port_, http::verb::post, "/api/v1/account/recovery-code", "", "", bearer);
  EXPECT_EQ(by_app.status, 403u) << by_app.raw;
  // The old code still works, so it was not replaced.
  Reply recovered = post_json(port_, "/api/v1/login/recovery",
                              {{"user", "alice"}, {"code", enrolled.body["recovery_code"]}});
  ASSERT_EQ(recovered.status, 200u) << recovered.raw;
  const std::string cookie =
      recovered.headers["Set-Cookie"].substr(0, recovered.headers["Set-Cookie"].find(';'));
  const std::map<std::string, std::string> web = {
      {"Cookie", cookie}, {"X-CSRF-Token", recovered.body["session"]["csrf"]}};
  Reply by_owner = call(port_, http::verb::post, "/api/v1/account/recovery-code", "", "", web);
  EXPECT_EQ(by_owner.status, 200u) << by_owner.raw;
  EXPECT_FALSE(by_owner.body.value("recovery_code", "").empty());

  auto account = call(port_, http::verb::get, "/api/v1/account", "", "", bearer);
  ASSERT_EQ(account.status, 200u) << account.raw;
  const std::int64_t face = account.body["faces"][0]["id"];
  for (const std::string& bad : {std::to_string(face) + "abc", "+" + std::to_string(face),
                                 "-" + std::to_string(face), std::string("0x1"),
                                 std::string("99999999999999999999")}) {
    Reply r = call(port_, http::verb::delete_, "/api/v1/account/faces/" + bad, "", "", bearer);
    EXPECT_EQ(r.status, 400u) << bad << ": " << r.raw;
  }
  EXPECT_EQ(call(port_, http::verb::get, "/api/v1/account", "", "", bearer).body["faces"].size(),
            account.body["faces"].size());
}

// Low: wrong JSON types and tiny images are the client's fault (400), not the server's (500).
TEST_F(ServerTest, WrongTypesAndTinyImagesAreBadRequests) {
  start();
  for (const json& body : {json{{"user", "x"}, {"session", 5}}, json{{"user", "x"}, {"add", "yes"}},
                           json{{"user", 7}}, json{{"user", "x"}, {"session", json::array()}}}) {
    Reply r = post_json(port_, "/api/v1/enrollments", body);
    EXPECT_EQ(r.status, 400u) << body.dump() << ": " << r.raw;
  }
  Reply login_start = post_json(port_, "/api/v1/login/attempts", {{"user", "x"}, {"session", 5}});
  EXPECT_EQ(login_start.status, 400u) << login_start.raw;
  Reply recovery =
      post_json(port_, "/api/v1/login/recovery", {{"user", "x"}, {"code", "y"}, {"session", 5}});
  EXPECT_EQ(recovery.status, 400u) << recovery.raw;

  Reply enrolment = post_json(port_, "/api/v1/enrollments", {{"user", "tiny"}});
  ASSERT_EQ(enrolment.status, 201u) << enrolment.raw;
  const std::string frames = "/api/v1/enrollments/" + enrolment.body["id"].get<std::string>() +
                             "/frames";
  std::vector<std::uint8_t> jpeg;
  std::vector<std::uint8_t> png;
  cv::imencode(".jpg", cv::Mat(16, 16, CV_8UC3, cv::Scalar(90, 120, 200)), jpeg);
  cv::imencode(".png", cv::Mat(2, 2, CV_8UC3, cv::Scalar(90, 120, 200)), png);
  for (const auto& [bytes, type] : {std::pair{jpeg, "image/jpeg"}, std::pair{png, "image/png"}}) {
    Reply r = call(port_, http::verb::post, frames, std::string(bytes.begin(), bytes.end()), type);
    EXPECT_TRUE(r.status == 200u || r.status == 400u || r.status == 422u) << type << ": " << r.raw;
    EXPECT_NE(r.status, 500u);
  }
}

// Low: one body limit, answered with 413 whether the body is sized or chunked.
TEST_F(ServerTest, BodiesOverTheLimitGet413AndUnderItAreRead) {
  start();
  Reply enrolment = post_json(port_, "/api/v1/enrollments", {{"user", "big"}});
  ASSERT_EQ(enrolment.status, 201u) << enrolment.raw;
  const std::string frames = "/api/v1/enrollments/" + enrolment.body["id"].get<std::string>() +
                             "/frames";
  // 1.5 MiB is under the 2 MiB frame limit: read, and refused for what it is (not an image).
  Reply under = call(port_, http::verb::post, frames, std::string(1536 * 1024, 'x'), "image/jpeg");
  EXPECT_EQ(under.status, 400u) << under.raw;
  Reply over = call(port_, http::verb::post, frames,
                    std::string(options_.max_frame_bytes + 1, 'x'), "image/jpeg");
  EXPECT_EQ(over.status, 413u) << over.raw;
  EXPECT_EQ(over.body["error"]["code"], "image_too_large") << over.raw;
  // Chunked, without a Content-Length: the same limit, the same answer.
  net::io_context ioc;
  beast::tcp_stream stream(ioc);
  stream.connect(net::ip::tcp::endpoint(net::ip::make_address("127.0.0.1"), port_));
  http::request<http::string_body> req(http::verb::post, frames, 11);
  req.set(http::field::host, "127.0.0.1");
  req.set(http::field::content_type, "image/jpeg");
  req.chunked(true);
  req.body() = std::string(options_.max_frame_bytes + 1, 'x');
  beast::error_code ec;
  http::write(stream, req, ec);
  beast::flat_buffer buffer;
  http::response<http::string_body> res;
  http::read(stream, buffer, res, ec);
  EXPECT_EQ(res.result_int(), 413u) << ec.message();
}

// Medium 3: a progressive JPEG that repeats its scans is refused before decoding.
TEST_F(ServerTest, AJpegScanBombIsRefusedAtOnce) {
  start();
  const std::string bomb = testing::jpeg_scan_bomb(640, 480, 2000);
  ASSERT_FALSE(bomb.empty());
  ASSERT_LT(bomb.size(), options_.max_frame_bytes);  // within the body limit: only the scans tell
  Reply enrolment = post_json(port_, "/api/v1/enrollments", {{"user", "bomber"}});
  ASSERT_EQ(enrolment.status, 201u) << enrolment.raw;
  const auto t0 = std::chrono::steady_clock::now();
  Reply r = call(port_, http::verb::post,
                 "/api/v1/enrollments/" + enrolment.body["id"].get<std::string>() + "/frames", bomb,
                 "image/jpeg");
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_EQ(r.status, 413u) << r.raw;
  EXPECT_NE(r.raw.find("scans"), std::string::npos) << r.raw;
  EXPECT_LT(seconds, 5.0) << "the refusal must not decode the scans";
}

// Medium 4: a flow has one WebSocket, which closes when the flow ends or when it carries no
// message for the idle timeout (pings do not keep it open).
TEST_F(ServerTest, WebSocketsEndWithTheirFlowAndWhenIdle) {
  options_.socket_idle_timeout = std::chrono::seconds(1);
  start();
  const auto open_socket = [&](const std::string& path, beast::error_code& ec) {
    auto ioc = std::make_shared<net::io_context>();
    auto ws = std::make_shared<beast::websocket::stream<beast::tcp_stream>>(*ioc);
    beast::get_lowest_layer(*ws).connect(
        net::ip::tcp::endpoint(net::ip::make_address("127.0.0.1"), port_));
    beast::websocket::response_type res;
    ws->handshake(res, "127.0.0.1", path, ec);
    return std::pair{ioc, ws};
  };
  // Reads until the socket closes (true) or `limit` passes (false), pinging meanwhile.
  const auto closes_within = [](beast::websocket::stream<beast::tcp_stream>& ws,
                                std::chrono::seconds limit) {
    beast::get_lowest_layer(ws).expires_after(limit);
    beast::error_code ec;
    beast::flat_buffer buffer;
    ws.ping({}, ec);
    ws.read(buffer, ec);
    return ec && ec != beast::error::timeout;
  };

  Reply enrolment = post_json(port_, "/api/v1/enrollments", {{"user", "sockets"}});
  ASSERT_EQ(enrolment.status, 201u) << enrolment.raw;
  const std::string id = enrolment.body["id"];
  const std::string path = "/api/v1/enrollments/" + id + "/socket";
  beast::error_code ec;
  auto first = open_socket(path, ec);
  ASSERT_FALSE(ec) << ec.message();
  beast::error_code second_ec;
  auto second = open_socket(path, second_ec);
  EXPECT_TRUE(second_ec) << "a second socket on one flow must be refused";

  // Ending the flow closes its socket.
  ASSERT_EQ(call(port_, http::verb::delete_, "/api/v1/enrollments/" + id).status, 200u);
  EXPECT_TRUE(closes_within(*first.second, std::chrono::seconds(5)));

  // A socket that sends nothing is closed after the idle timeout although the client pings.
  Reply other = post_json(port_, "/api/v1/enrollments", {{"user", "idle"}});
  ASSERT_EQ(other.status, 201u) << other.raw;
  auto idle =
      open_socket("/api/v1/enrollments/" + other.body["id"].get<std::string>() + "/socket", ec);
  ASSERT_FALSE(ec) << ec.message();
  EXPECT_TRUE(closes_within(*idle.second, std::chrono::seconds(5)));
  EXPECT_EQ(call(port_, http::verb::get, "/healthz").status, 200u);
}

}  // namespace
}  // namespace facelogin
