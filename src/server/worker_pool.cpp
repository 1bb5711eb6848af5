#include "server/worker_pool.h"

#include <fmt/format.h>

namespace facelogin::server {

Result<std::unique_ptr<WorkerPool>> WorkerPool::create(
    const std::shared_ptr<const Engine>& engine, Store& store, const ServiceOptions& options,
    const std::shared_ptr<const LivenessModels>& liveness, int workers, int queue_limit) {
  if (workers < 1 || queue_limit < 0) {
    return make_error(ErrorCode::kInvalidArgument,
                      "the worker pool needs at least one worker and a queue limit >= 0");
  }
  std::vector<WorkerSlot> slots;
  for (int i = 0; i < workers; ++i) {
    auto worker = engine->make_worker();
    if (!worker) {
      return make_error(worker.error());
    }
    WorkerSlot slot;
    slot.service = std::make_unique<FaceService>(engine, std::move(*worker), store, options);
    if (liveness) {
      auto scorer = liveness->make_scorer();
      if (!scorer) {
        return make_error(scorer.error());
      }
      slot.scorer = std::move(*scorer);
    }
    slots.push_back(std::move(slot));
  }
  return std::unique_ptr<WorkerPool>(new WorkerPool(std::move(slots), queue_limit));
}

WorkerPool::WorkerPool(std::vector<WorkerSlot> slots, int queue_limit)
    : slots_(std::move(slots)), queue_limit_(queue_limit) {
  for (auto& slot : slots_) {
    threads_.emplace_back([this, &slot] { run(slot); });
  }
}

WorkerPool::~WorkerPool() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  for (auto& t : threads_) {
    t.join();
  }
}

bool WorkerPool::try_submit(Job job) {
  {
    std::lock_guard lock(mu_);
    const int free_workers = size() - busy_ - static_cast<int>(queue_.size());
    if (stopping_ || (free_workers <= 0 && static_cast<int>(queue_.size()) >= queue_limit_)) {
      ++rejected_;
      return false;
    }
    queue_.push_back(std::move(job));
  }
  cv_.notify_one();
  return true;
}

void WorkerPool::run(WorkerSlot& slot) {
  for (;;) {
    Job job;
    {
      std::unique_lock lock(mu_);
      cv_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
      if (queue_.empty()) {
        return;  // stopping, and nothing left to do
      }
      job = std::move(queue_.front());
      queue_.pop_front();
      ++busy_;
    }
    try {
      job(slot);
    } catch (const std::exception& e) {
      // Jobs answer their own errors; this is a bug, and the request will time out.
      fmt::print(stderr, "facelogin serve: a recognition job failed: {}\n", e.what());
    }
    std::lock_guard lock(mu_);
    --busy_;
  }
}

int WorkerPool::busy() const {
  std::lock_guard lock(mu_);
  return busy_;
}

int WorkerPool::queued() const {
  std::lock_guard lock(mu_);
  return static_cast<int>(queue_.size());
}

std::uint64_t WorkerPool::rejected() const {
  std::lock_guard lock(mu_);
  return rejected_;
}

}  // namespace facelogin::server
