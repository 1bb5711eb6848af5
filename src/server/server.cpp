// Server: the I/O threads, the worker pool and the API, put together.

#include "facelogin/server.h"

#include <fmt/format.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/address.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <condition_variable>
#include <mutex>
#include <thread>

#include "server/api.h"
#include "server/http.h"
#include "server/metrics.h"
#include "server/worker_pool.h"

namespace facelogin {
namespace {

namespace net = boost::asio;
using server::Api;
using server::HttpListener;
using server::Metrics;
using server::WorkerPool;

class SystemClock final : public ServerClock {
 public:
  std::chrono::steady_clock::time_point steady() const override {
    return std::chrono::steady_clock::now();
  }
  std::int64_t unix_ms() const override {
    return std::chrono::duration_cast<std::chrono::milliseconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
  }
};

class ServerImpl final : public Server {
 public:
  ServerImpl(const ServerOptions& options, ServerDeps deps, std::unique_ptr<WorkerPool> pool)
      : options_(options),
        pool_(std::move(pool)),
        api_(std::make_unique<Api>(options, std::move(deps), *pool_, metrics_)),
        sweep_timer_(ioc_) {
    metrics_.gauge("facelogin_workers", "Recognition workers.",
                   [this] { return static_cast<double>(pool_->size()); });
    metrics_.gauge("facelogin_workers_busy", "Workers running a frame now.",
                   [this] { return static_cast<double>(pool_->busy()); });
    metrics_.gauge("facelogin_worker_queue", "Frames waiting for a worker.",
                   [this] { return static_cast<double>(pool_->queued()); });
    metrics_.gauge("facelogin_worker_rejections_total",
                   "Frames refused with 503 because every worker was busy.",
                   [this] { return static_cast<double>(pool_->rejected()); });
    metrics_.gauge("facelogin_connections", "Open HTTP connections.", [this] {
      return listener_ ? static_cast<double>(listener_->connections()) : 0.0;
    });
  }

  ~ServerImpl() override { stop(); }

  Status listen() {
    boost::system::error_code ec;
    const auto address = net::ip::make_address(options_.host, ec);
    if (ec) {
      return Status(ErrorCode::kInvalidArgument,
                    fmt::format("cannot listen on '{}': not an IP address", options_.host));
    }
    server::HttpLimits limits;
    limits.max_connections = options_.max_connections;
    limits.max_connections_per_address = options_.max_connections_per_address;
    limits.trusted_proxies = options_.trusted_proxies;
    limits.request_timeout = options_.request_timeout;
    limits.socket_idle_timeout = options_.socket_idle_timeout;
    if (!options_.tls_cert_file.empty()) {
      tls_ = std::make_unique<net::ssl::context>(net::ssl::context::tls_server);
      tls_->set_options(net::ssl::context::default_workarounds | net::ssl::context::no_sslv2 |
                        net::ssl::context::no_sslv3 | net::ssl::context::no_tlsv1 |
                        net::ssl::context::no_tlsv1_1 | net::ssl::context::single_dh_use);
      tls_->use_certificate_chain_file(options_.tls_cert_file.string(), ec);
      if (!ec) {
        tls_->use_private_key_file(options_.tls_key_file.string(), net::ssl::context::pem, ec);
      }
      if (ec) {
        return Status(ErrorCode::kInvalidArgument,
                      fmt::format("cannot use the TLS certificate {} and key {}: {}",
                                  options_.tls_cert_file.string(), options_.tls_key_file.string(),
                                  ec.message()));
      }
    }
    auto listener = HttpListener::create(ioc_, net::ip::tcp::endpoint(address, options_.port),
                                         *api_, limits, tls_.get());
    if (!listener) {
      return listener.error();
    }
    listener_ = std::move(*listener);
    listener_->start();
    schedule_sweep();
    for (int i = 0; i < std::max(1, options_.io_threads); ++i) {
      threads_.emplace_back([this] { ioc_.run(); });
    }
    return Status::Ok();
  }

  std::uint16_t port() const override { return listener_ ? listener_->port() : 0; }

  void stop() override {
    {
      std::lock_guard lock(mu_);
      if (stopped_) {
        return;
      }
      stopped_ = true;
    }
    if (listener_) {
      listener_->stop();
    }
    ioc_.stop();
    for (auto& t : threads_) {
      if (t.joinable()) {
        t.join();
      }
    }
    // Finish (and drop the answers of) frames already on workers before the API goes.
    pool_.reset();
    cv_.notify_all();
  }

  void wait() override {
    std::unique_lock lock(mu_);
    cv_.wait(lock, [this] { return stopped_; });
  }

  void sweep() override { api_->sweep(); }

 private:
  void schedule_sweep() {
    sweep_timer_.expires_after(std::chrono::seconds(2));
    sweep_timer_.async_wait([this](boost::system::error_code ec) {
      if (ec) {
        return;
      }
      api_->sweep();
      schedule_sweep();
    });
  }

  ServerOptions options_;
  net::io_context ioc_;
  Metrics metrics_;
  std::unique_ptr<WorkerPool> pool_;
  std::unique_ptr<Api> api_;
  net::steady_timer sweep_timer_;
  std::unique_ptr<net::ssl::context> tls_;
  std::shared_ptr<HttpListener> listener_;
  std::vector<std::thread> threads_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stopped_ = false;
};

}  // namespace

std::shared_ptr<const ServerClock> system_server_clock() {
  static const auto clock = std::make_shared<const SystemClock>();
  return clock;
}

Result<std::unique_ptr<Server>> Server::start(const ServerOptions& given, ServerDeps deps) {
  ServerOptions options = given;
  if (options.tls_cert_file.empty() != options.tls_key_file.empty()) {
    return make_error(ErrorCode::kInvalidArgument,
                      "TLS needs both a certificate file and a key file");
  }
  if (!options.tls_cert_file.empty()) {
    options.secure_cookies = true;
  }
  for (std::string& proxy : options.trusted_proxies) {
    boost::system::error_code ec;
    const auto address = net::ip::make_address(proxy, ec);
    if (ec) {
      return make_error(ErrorCode::kInvalidArgument,
                        fmt::format("trusted proxy '{}' is not an IP address", proxy));
    }
    proxy = address.to_string();  // the form peers are compared in
  }
  if (!deps.engine || deps.store == nullptr || deps.auth_store == nullptr) {
    return make_error(ErrorCode::kInvalidArgument, "the server needs an engine and both stores");
  }
  if (options.login.liveness.policy != LivenessPolicy::kOff && !deps.liveness) {
    return make_error(ErrorCode::kModelError,
                      "the liveness policy needs the liveness models (MiniFASNet); fetch them "
                      "or run with --liveness off");
  }
  if (options.enroll_frames_needed < 1 || options.max_flows < 1 ||
      options.max_frames_per_flow < 1 || options.max_connections < 1 ||
      options.starts_per_minute < 1) {
    return make_error(ErrorCode::kInvalidArgument, "server limits must be positive");
  }
  const int workers = options.workers > 0
                          ? options.workers
                          : std::max(1, static_cast<int>(std::thread::hardware_concurrency()));
  const int queue = options.queue_limit >= 0 ? options.queue_limit : workers;
  if (!deps.service.gallery) {
    // One in-memory 1:N gallery for all workers: one copy of the templates, one reload per change.
    deps.service.gallery = std::make_shared<GalleryCache>(options.gallery);
  }
  auto pool =
      WorkerPool::create(deps.engine, *deps.store, deps.service, deps.liveness, workers, queue);
  if (!pool) {
    return make_error(pool.error());
  }
  auto server = std::make_unique<ServerImpl>(options, std::move(deps), std::move(*pool));
  if (Status s = server->listen(); !s.ok()) {
    return make_error(std::move(s));
  }
  return std::unique_ptr<Server>(std::move(server));
}

}  // namespace facelogin
