// The server on a clock the test moves (ServerDeps::clock): flow expiry, abandoned attempts and
// lockout windows, without sleeping.

#include "server_fixture.h"

namespace facelogin {
namespace {

using namespace server_test;  // NOLINT: the fixture and its helpers
namespace http = boost::beast::http;

// Starts at the real time and moves only when told to.
class ManualClock final : public ServerClock {
 public:
  std::chrono::steady_clock::time_point steady() const override {
    return steady_start_ + std::chrono::milliseconds(offset_ms_.load());
  }
  std::int64_t unix_ms() const override { return unix_start_ms_ + offset_ms_.load(); }
  void advance(std::chrono::milliseconds by) { offset_ms_ += by.count(); }

 private:
  const std::chrono::steady_clock::time_point steady_start_ = std::chrono::steady_clock::now();
  const std::int64_t unix_start_ms_ = std::chrono::duration_cast<std::chrono::milliseconds>(
                                          std::chrono::system_clock::now().time_since_epoch())
                                          .count();
  std::atomic<std::int64_t> offset_ms_{0};
};

class ServerClockTest : public ServerTest {
 protected:
  void SetUp() override {
    ServerTest::SetUp();
    if (IsSkipped() || HasFatalFailure()) {
      return;
    }
    clock_ = std::make_shared<ManualClock>();
    deps_.clock = clock_;
    options_.flow_ttl = std::chrono::seconds(60);
    options_.login.liveness.deadline = std::chrono::seconds(60);
  }

  // Starts a login attempt for `user` and sends it `frames` frames of alice's live recording
  // (too few to decide); returns the attempt's id and nonce.
  std::pair<std::string, std::string> begin_login(const std::string& user, int frames) {
    Reply start = post_json(port_, "/api/v1/login/attempts", {{"user", user}});
    EXPECT_EQ(start.status, 201u) << start.raw;
    const std::string id = start.body.value("id", "");
    const std::string nonce = start.body.value("nonce", "");
    const auto files = recording("ClientRaw/0001", "0001_00_00_01_");
    for (int i = 0; i < frames && i < static_cast<int>(files.size()); ++i) {
      Reply r = call(port_, http::verb::post, "/api/v1/login/attempts/" + id + "/frames",
                     read_file(files[static_cast<std::size_t>(i)]), "image/jpeg",
                     {{"X-Attempt-Nonce", nonce}});
      EXPECT_EQ(r.status, 200u) << r.raw;
      EXPECT_EQ(r.body.value("state", ""), "pending") << r.raw;
    }
    return {id, nonce};
  }

  std::shared_ptr<ManualClock> clock_;
};

TEST_F(ServerClockTest, FlowsEndAtTheirTimeWithoutWaiting) {
  start();
  const auto [id, nonce] = begin_login("bob", 1);
  Reply enrolment = post_json(port_, "/api/v1/enrollments", {{"user", "carol"}});
  ASSERT_EQ(enrolment.status, 201u) << enrolment.raw;
  const std::string frame = read_file(recording("ClientRaw/0001", "0001_00_00_01_").front());

  clock_->advance(std::chrono::seconds(59));
  Reply still = call(port_, http::verb::post, "/api/v1/login/attempts/" + id + "/frames", frame,
                     "image/jpeg", {{"X-Attempt-Nonce", nonce}});
  EXPECT_EQ(still.status, 200u) << still.raw;

  clock_->advance(std::chrono::seconds(2));
  Reply late = call(port_, http::verb::post, "/api/v1/login/attempts/" + id + "/frames", frame,
                    "image/jpeg", {{"X-Attempt-Nonce", nonce}});
  EXPECT_EQ(late.status, 404u) << late.raw;
  Reply late_enrolment =
      call(port_, http::verb::post,
           "/api/v1/enrollments/" + enrolment.body.value("id", "") + "/frames", frame,
           "image/jpeg");
  EXPECT_EQ(late_enrolment.status, 404u) << late_enrolment.raw;
}

TEST_F(ServerClockTest, AbandonedAttemptsCountAsFailuresAndTheLockEndsOnTime) {
  start();
  // An attempt abandoned before any face was judged costs nothing.
  ASSERT_EQ(post_json(port_, "/api/v1/login/attempts", {{"user", "bob"}}).status, 201u);
  clock_->advance(options_.flow_ttl + std::chrono::seconds(1));
  server_->sweep();
  auto none = auth_store_->failure_state("addr:127.0.0.1");
  ASSERT_TRUE(none) << none.error().to_string();
  EXPECT_EQ(none->failures, 0);

  // Attempts that saw a frame and were left to expire count as failed logins: the free ones,
  // then one that locks.
  for (int i = 0; i <= options_.auth.free_failures; ++i) {
    begin_login("bob", 1);
    clock_->advance(options_.flow_ttl + std::chrono::seconds(1));
    server_->sweep();
  }
  auto address = auth_store_->failure_state("addr:127.0.0.1");
  ASSERT_TRUE(address) << address.error().to_string();
  EXPECT_EQ(address->failures, options_.auth.free_failures + 1);
  auto events = auth_store_->list_audit({.subject = "bob", .before_id = 0, .limit = 1});
  ASSERT_TRUE(events);
  ASSERT_FALSE(events->empty());
  EXPECT_EQ(events->front().outcome, "timed_out");
  Reply locked = post_json(port_, "/api/v1/login/attempts", {{"user", "bob"}});
  EXPECT_EQ(locked.status, 429u) << locked.raw;
  EXPECT_FALSE(locked.headers["Retry-After"].empty());

  // The lock ends on the server's clock, not the test's patience.
  clock_->advance(options_.auth.base_lock - std::chrono::seconds(5));
  EXPECT_EQ(post_json(port_, "/api/v1/login/attempts", {{"user", "bob"}}).status, 429u);
  clock_->advance(std::chrono::seconds(6));
  Reply again = post_json(port_, "/api/v1/login/attempts", {{"user", "bob"}});
  EXPECT_EQ(again.status, 201u) << again.raw;
}

// Issue 19: three Cancels locked the account and address. A cancel before any face was judged
// costs nothing; after one, it counts like the failure it would have been.
TEST_F(ServerClockTest, ACancelBeforeAnyFaceCostsNothingAndAfterOneCounts) {
  start();
  std::vector<std::uint8_t> blank;
  ASSERT_TRUE(cv::imencode(".jpg", cv::Mat(480, 640, CV_8UC3, cv::Scalar(90, 90, 90)), blank));
  const std::string no_face(blank.begin(), blank.end());
  const auto cancel = [&](const std::string& id, const std::string& nonce) {
    return call(port_, http::verb::delete_, "/api/v1/login/attempts/" + id, "", "",
                {{"X-Attempt-Nonce", nonce}});
  };
  for (int i = 0; i < options_.auth.free_failures + 2; ++i) {
    const auto [id, nonce] = begin_login("bob", 0);
    Reply frame = call(port_, http::verb::post, "/api/v1/login/attempts/" + id + "/frames",
                       no_face, "image/jpeg", {{"X-Attempt-Nonce", nonce}});
    ASSERT_EQ(frame.status, 200u) << frame.raw;
    EXPECT_EQ(frame.body["outcome"], "no_face") << frame.raw;
    EXPECT_EQ(cancel(id, "wrong").status, 404u);
    Reply cancelled = cancel(id, nonce);
    ASSERT_EQ(cancelled.status, 200u) << cancelled.raw;
    EXPECT_EQ(cancelled.body["counted_as_failure"], false);
    EXPECT_EQ(cancel(id, nonce).status, 404u);  // gone
  }
  EXPECT_EQ(auth_store_->failure_state("addr:127.0.0.1")->failures, 0);
  {  // The same left to expire: the sweep does not count it either.
    const auto [id, nonce] = begin_login("bob", 0);
    ASSERT_EQ(call(port_, http::verb::post, "/api/v1/login/attempts/" + id + "/frames", no_face,
                   "image/jpeg", {{"X-Attempt-Nonce", nonce}})
                  .status,
              200u);
    clock_->advance(options_.flow_ttl + std::chrono::seconds(1));
    server_->sweep();
    EXPECT_EQ(auth_store_->failure_state("addr:127.0.0.1")->failures, 0);
  }

  const auto [id, nonce] = begin_login("bob", 1);
  Reply cancelled = cancel(id, nonce);
  ASSERT_EQ(cancelled.status, 200u) << cancelled.raw;
  EXPECT_EQ(cancelled.body["counted_as_failure"], true);
  EXPECT_EQ(auth_store_->failure_state("addr:127.0.0.1")->failures, 1);
  auto events = auth_store_->list_audit({.subject = "bob", .before_id = 0, .limit = 1});
  ASSERT_TRUE(events);
  ASSERT_FALSE(events->empty());
  EXPECT_EQ(events->front().outcome, "cancelled");
  // Nor does the expiry sweep count the cancelled attempt a second time.
  clock_->advance(options_.flow_ttl + std::chrono::seconds(1));
  server_->sweep();
  EXPECT_EQ(auth_store_->failure_state("addr:127.0.0.1")->failures, 1);
}

}  // namespace
}  // namespace facelogin
