#pragma once

// A fixed pool of recognition workers, each a thread with its own inference state (a
// FaceService and, when liveness is on, a LivenessScorer). Work beyond what the pool can start
// soon is refused at once, never queued without bound: the caller answers 503 with Retry-After.

#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "facelogin/engine.h"
#include "facelogin/face_service.h"
#include "facelogin/liveness.h"

namespace facelogin::server {

struct WorkerSlot {
  std::unique_ptr<FaceService> service;
  std::unique_ptr<LivenessScorer> scorer;  // null when no liveness models are loaded
};

class WorkerPool {
 public:
  using Job = std::function<void(WorkerSlot&)>;

  // `workers` threads; at most `queue_limit` jobs wait for a free worker. Errors: as
  // Engine::make_worker and LivenessModels::make_scorer.
  [[nodiscard]] static Result<std::unique_ptr<WorkerPool>> create(
      const std::shared_ptr<const Engine>& engine, Store& store, const ServiceOptions& options,
      const std::shared_ptr<const LivenessModels>& liveness, int workers, int queue_limit);

  WorkerPool(const WorkerPool&) = delete;
  WorkerPool& operator=(const WorkerPool&) = delete;
  // Finishes the jobs already accepted, then joins the threads.
  ~WorkerPool();

  // false when the pool is saturated (every worker busy and the queue full) or stopping.
  [[nodiscard]] bool try_submit(Job job);

  // The first worker's service and scorer, only to bind a LoginAttempt before its first frame:
  // each frame then switches it to the worker that runs it (LoginAttempt::use), so these are
  // never called through from another thread.
  FaceService& any_service() { return *slots_.front().service; }
  LivenessScorer* any_scorer() { return slots_.front().scorer.get(); }

  int size() const { return static_cast<int>(slots_.size()); }
  int busy() const;    // workers running a job now
  int queued() const;  // jobs waiting
  std::uint64_t rejected() const;

 private:
  WorkerPool(std::vector<WorkerSlot> slots, int queue_limit);
  void run(WorkerSlot& slot);

  std::vector<WorkerSlot> slots_;
  int queue_limit_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Job> queue_;
  int busy_ = 0;
  bool stopping_ = false;
  std::uint64_t rejected_ = 0;
  std::vector<std::thread> threads_;
};

}  // namespace facelogin::server
