// Tests for DelayedReplies (src/server/delayed_replies.h): replies held until their time, in
// time order, from any thread, and none lost at shutdown.

#include "server/delayed_replies.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <future>
#include <mutex>
#include <thread>
#include <vector>

namespace facelogin::server {
namespace {

using Clock = DelayedReplies::Clock;
using std::chrono::milliseconds;

TEST(DelayedReplies, SendsEachReplyNoEarlierThanItsTimeAndInTimeOrder) {
  DelayedReplies delayed;
  std::mutex mu;
  std::vector<int> order;
  std::vector<Clock::time_point> sent(3);
  std::promise<void> done;
  const auto start = Clock::now();
  const std::vector<milliseconds> after{milliseconds(60), milliseconds(20), milliseconds(40)};
  for (int i = 0; i < 3; ++i) {
    delayed.send_at(start + after[static_cast<std::size_t>(i)], [&, i] {
      std::lock_guard lock(mu);
      order.push_back(i);
      sent[static_cast<std::size_t>(i)] = Clock::now();
      if (order.size() == 3) {
        done.set_value();
      }
    });
  }
  ASSERT_EQ(done.get_future().wait_for(std::chrono::seconds(10)), std::future_status::ready);
  EXPECT_EQ(order, (std::vector<int>{1, 2, 0}));
  for (int i = 0; i < 3; ++i) {
    EXPECT_GE(sent[static_cast<std::size_t>(i)], start + after[static_cast<std::size_t>(i)]) << i;
  }
}

TEST(DelayedReplies, SendsATimeAlreadyPastAtOnce) {
  DelayedReplies delayed;
  std::promise<void> done;
  const auto start = Clock::now();
  delayed.send_at(start - milliseconds(5), [&] { done.set_value(); });
  ASSERT_EQ(done.get_future().wait_for(std::chrono::seconds(10)), std::future_status::ready);
  EXPECT_LT(Clock::now() - start, std::chrono::seconds(5));
}

TEST(DelayedReplies, SendsWhatIsStillHeldWhenItStops) {
  std::atomic<int> sent{0};
  const auto start = Clock::now();
  {
    DelayedReplies delayed;
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; ++t) {
      threads.emplace_back([&] {
        for (int i = 0; i < 25; ++i) {
          delayed.send_at(Clock::now() + std::chrono::hours(1), [&] { ++sent; });
        }
      });
    }
    for (auto& t : threads) {
      t.join();
    }
    EXPECT_EQ(sent.load(), 0);  // an hour away
  }
  EXPECT_EQ(sent.load(), 100);
  EXPECT_LT(Clock::now() - start, std::chrono::seconds(30));  // not after the hour
}

}  // namespace
}  // namespace facelogin::server
