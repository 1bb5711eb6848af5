#pragma once

// Enrolments and login attempts in progress. Each is addressed by a random id, bound to the
// client address that started it, limited in time and frames, and processed one frame at a
// time. They live in this process: a client keeps talking to the server that started its flow.

#include <algorithm>
#include <atomic>
#include <functional>
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "facelogin/enrollment_session.h"
#include "facelogin/face_template.h"
#include "facelogin/liveness.h"
#include "facelogin/login_attempt.h"
#include "facelogin/server.h"

namespace facelogin::server {

using SteadyClock = std::chrono::steady_clock;

struct FlowBase {
  std::string id;
  std::string address;
  std::string session_kind;  // "cookie" or "bearer": what success issues
  bool live_check = true;    // liveness runs on this flow's frames (server or API key policy)
  LivenessPolicy policy = LivenessPolicy::kPassive;  // which (kOff iff !live_check)
  std::string actor;         // who started it, for the audit log
  SteadyClock::time_point started;
  SteadyClock::time_point expires;
  int frames = 0;
  // Held while a frame is processed: frames of one flow are taken one at a time.
  std::mutex busy;

  // The flow's WebSocket, if one was opened: at most one in its life, closed when it ends.
  std::atomic<bool> socket_taken{false};
  void set_socket_closer(std::function<void()> close) {
    std::lock_guard lock(socket_mu_);
    if (ended_) {
      close();
    } else {
      close_socket_ = std::move(close);
    }
  }
  // Ends the flow's socket (the registry calls it when the flow is removed).
  void end() {
    std::function<void()> close;
    {
      std::lock_guard lock(socket_mu_);
      ended_ = true;
      close.swap(close_socket_);
    }
    if (close) {
      close();
    }
  }

 private:
  std::mutex socket_mu_;
  std::function<void()> close_socket_;
  bool ended_ = false;
};

struct EnrollFlow : FlowBase {
  std::string user;
  bool add = false;  // adding faces to the signed-in account
  std::optional<EnrollmentSession> session;  // the rules: faces kept, readiness, the decision
};

struct LoginFlow : FlowBase {
  std::string nonce;
  std::optional<LoginAttempt> attempt;
};

// A map of flows by id with a global bound. Thread-safe.
template <typename Flow>
class FlowRegistry {
 public:
  // `clock`: the server's (its steady time), which must outlive the registry.
  explicit FlowRegistry(const ServerClock& clock) : clock_(clock) {}

  void put(std::shared_ptr<Flow> flow) {
    std::lock_guard lock(mu_);
    flows_[flow->id] = std::move(flow);
  }
  // The flow if it exists, has not expired and belongs to `address`.
  std::shared_ptr<Flow> find(const std::string& id, const std::string& address) {
    std::lock_guard lock(mu_);
    auto it = flows_.find(id);
    if (it == flows_.end() || it->second->address != address ||
        it->second->expires < clock_.steady()) {
      return nullptr;
    }
    return it->second;
  }
  // Removes the flow and closes its socket.
  void erase(const std::string& id) {
    std::shared_ptr<Flow> removed;
    {
      std::lock_guard lock(mu_);
      if (auto it = flows_.find(id); it != flows_.end()) {
        removed = std::move(it->second);
        flows_.erase(it);
      }
    }
    if (removed) {
      removed->end();
    }
  }
  // Removes and returns the expired flows (their sockets closed).
  std::vector<std::shared_ptr<Flow>> take_expired(SteadyClock::time_point now) {
    std::vector<std::shared_ptr<Flow>> out;
    {
      std::lock_guard lock(mu_);
      for (auto it = flows_.begin(); it != flows_.end();) {
        if (it->second->expires < now) {
          out.push_back(it->second);
          it = flows_.erase(it);
        } else {
          ++it;
        }
      }
    }
    for (const auto& flow : out) {
      flow->end();
    }
    return out;
  }
  std::size_t size() const {
    std::lock_guard lock(mu_);
    return flows_.size();
  }
  // Open (not expired) flows started from `address`.
  std::size_t count_for(const std::string& address) const {
    std::lock_guard lock(mu_);
    const auto now = clock_.steady();
    return static_cast<std::size_t>(std::count_if(flows_.begin(), flows_.end(), [&](const auto& f) {
      return f.second->address == address && f.second->expires >= now;
    }));
  }

 private:
  const ServerClock& clock_;
  mutable std::mutex mu_;
  std::map<std::string, std::shared_ptr<Flow>> flows_;
};

}  // namespace facelogin::server
