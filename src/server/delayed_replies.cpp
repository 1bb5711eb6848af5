#include "server/delayed_replies.h"

#include <utility>
#include <vector>

namespace facelogin::server {

DelayedReplies::DelayedReplies() : thread_([this] { run(); }) {}

DelayedReplies::~DelayedReplies() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

void DelayedReplies::send_at(Clock::time_point when, std::function<void()> send) {
  {
    std::lock_guard lock(mu_);
    due_.emplace(when, std::move(send));
  }
  cv_.notify_all();
}

void DelayedReplies::run() {
  std::unique_lock lock(mu_);
  for (;;) {
    if (stopping_) {
      break;
    }
    if (due_.empty()) {
      cv_.wait(lock);
      continue;
    }
    const auto when = due_.begin()->first;
    if (Clock::now() < when) {
      cv_.wait_until(lock, when);
      continue;
    }
    auto send = std::move(due_.begin()->second);
    due_.erase(due_.begin());
    lock.unlock();
    send();  // outside the lock: it may take a while, and send_at may be called meanwhile
    lock.lock();
  }
  // Stopping: nothing is held back any longer.
  auto rest = std::move(due_);
  lock.unlock();
  for (auto& [when, send] : rest) {
    send();
  }
}

}  // namespace facelogin::server
