#pragma once

// Replies held back until a given time, sent from one thread of their own so that holding a
// reply costs no worker (login frames decided early are held to a full frame's time: api.cpp).

#include <chrono>
#include <condition_variable>
#include <functional>
#include <map>
#include <mutex>
#include <thread>

namespace facelogin::server {

class DelayedReplies {
 public:
  using Clock = std::chrono::steady_clock;

  DelayedReplies();
  // Sends whatever is still held at once, then joins the thread.
  ~DelayedReplies();
  DelayedReplies(const DelayedReplies&) = delete;
  DelayedReplies& operator=(const DelayedReplies&) = delete;

  // Runs `send` at `when` (at once if that has passed), on the delay thread. Thread-safe.
  void send_at(Clock::time_point when, std::function<void()> send);

 private:
  void run();

  std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;
  std::multimap<Clock::time_point, std::function<void()>> due_;
  std::thread thread_;
};

}  // namespace facelogin::server
