#pragma once

// The HTTP layer (Boost.Beast): connections, limits and timeouts. It knows nothing of faces; a
// Handler answers each request, possibly later and from another thread.

#include <atomic>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/beast/http.hpp>
#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "facelogin/status.h"

namespace facelogin::server {

namespace http = boost::beast::http;
using Request = http::request<http::string_body>;
using Response = http::response<http::string_body>;

struct Exchange {
  Request request;
  std::string address;  // the peer's IP address
  std::chrono::steady_clock::time_point received;
};

// Called exactly once per request, from any thread.
using Reply = std::function<void(Response)>;

class Handler {
 public:
  virtual ~Handler() = default;
  // The largest body accepted for this request line (the rest gets 413 before it is read).
  virtual std::size_t body_limit(const Request& header_only) const = 0;
  virtual void handle(Exchange exchange, Reply reply) = 0;
  // Adds the headers every response carries (security headers).
  virtual void finish(Response& response) const = 0;

  // WebSocket. An upgrade request is first offered here: nullopt accepts it, a response refuses
  // it (sent, then the connection closes).
  virtual std::optional<Response> accept_socket(const Exchange& upgrade) = 0;
  // Called when a socket accepted here is open: `close` ends it, from any thread, at most once
  // usefully (a socket must not outlive the flow it streams to).
  virtual void socket_opened(const Exchange& upgrade, std::function<void()> close) = 0;
  // The largest message a socket takes (a bigger one closes it).
  virtual std::size_t socket_message_limit() const = 0;
  // One message on an accepted socket; `state` lives as long as the socket. The reply is one
  // text message (then, with close = true, the socket closes); called exactly once, any thread.
  virtual void socket_message(const Exchange& upgrade, std::string message, bool binary,
                              std::string& state,
                              std::function<void(std::string text, bool close)> reply) = 0;
};

struct HttpLimits {
  int max_connections = 256;
  int max_connections_per_address = 32;  // not applied to trusted proxies
  // Reverse proxies whose X-Forwarded-For is believed: for their requests the client address is
  // the last address of that header that is not itself a trusted proxy.
  std::vector<std::string> trusted_proxies;
  std::chrono::seconds request_timeout{15};
  std::size_t max_header_bytes = 16 * 1024;
  // A WebSocket that carries no message this long is closed (transport pings do not count).
  std::chrono::seconds socket_idle_timeout{15};
};

// Open connections, in all and per client address. Thread-safe.
class ConnectionCount {
 public:
  // Counts one more for `address` unless a limit is reached (then false and nothing counted).
  bool acquire(const std::string& address, int max_total, int max_per_address);
  void acquire_unchecked(const std::string& address);
  void release(const std::string& address);
  int total() const;

 private:
  mutable std::mutex mu_;
  int total_ = 0;
  std::map<std::string, int> per_address_;
};

// Accepts connections on `endpoint` and serves them on `ioc`.
class HttpListener : public std::enable_shared_from_this<HttpListener> {
 public:
  // `tls` (kept by the caller for the listener's life): serve HTTPS with it; null: plain HTTP.
  [[nodiscard]] static Result<std::shared_ptr<HttpListener>> create(
      boost::asio::io_context& ioc, const boost::asio::ip::tcp::endpoint& endpoint,
      Handler& handler, HttpLimits limits, boost::asio::ssl::context* tls = nullptr);

  void start();
  void stop();
  std::uint16_t port() const { return port_; }
  int connections() const { return connections_->total(); }

 private:
  HttpListener(boost::asio::io_context& ioc, Handler& handler, HttpLimits limits);
  void accept();

  boost::asio::io_context& ioc_;
  boost::asio::ip::tcp::acceptor acceptor_;
  Handler& handler_;
  HttpLimits limits_;
  boost::asio::ssl::context* tls_ = nullptr;
  std::uint16_t port_ = 0;
  std::shared_ptr<ConnectionCount> connections_ = std::make_shared<ConnectionCount>();
};

// The client's address: `peer`, or, when `peer` is a trusted proxy, the right-most address of
// X-Forwarded-For that is not a trusted proxy (a client can write anything on the left).
std::string client_address(const Request& request, const std::string& peer,
                           const std::vector<std::string>& trusted_proxies);

// A JSON error body {"error": {"code": "...", "message": "..."}} with the HTTP status for the
// code (400, 401, 403, 404, 409, 413, 422, 429, 503, 500).
Response error_response(const Status& status, unsigned version, bool keep_alive);
http::status http_status_for(ErrorCode code);

}  // namespace facelogin::server
