#include "server/http.h"

#include <fmt/format.h>

#include <algorithm>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/ssl.hpp>
#include <boost/beast/websocket.hpp>
#include <boost/beast/websocket/ssl.hpp>
#include <nlohmann/json.hpp>
#include <optional>

namespace facelogin::server {
namespace {

namespace beast = boost::beast;
namespace net = boost::asio;
using tcp = net::ip::tcp;

using TlsStream = beast::ssl_stream<beast::tcp_stream>;
namespace websocket = beast::websocket;

// A WebSocket taken over from an HTTP connection: each message goes to the handler, whose one
// text answer is written before the next message is read (so a client cannot queue work).
template <typename Stream>
class SocketSession : public std::enable_shared_from_this<SocketSession<Stream>> {
 public:
  SocketSession(Stream&& stream, Handler& handler, Exchange upgrade,
                std::shared_ptr<ConnectionCount> count, std::chrono::seconds idle_timeout)
      : ws_(std::move(stream)),
        handler_(handler),
        upgrade_(std::move(upgrade)),
        count_(std::move(count)),
        idle_timer_(ws_.get_executor()),
        idle_timeout_(idle_timeout) {
    count_->acquire_unchecked(upgrade_.address);  // the HTTP connection releases its own
  }
  ~SocketSession() { count_->release(upgrade_.address); }

  void run() {
    // The WebSocket keeps its own timeouts (handshake, transport idle); pings keep a socket
    // alive there, so an idle timer of our own counts only application messages.
    beast::get_lowest_layer(ws_).expires_never();
    ws_.set_option(websocket::stream_base::timeout::suggested(beast::role_type::server));
    ws_.read_message_max(handler_.socket_message_limit());
    std::weak_ptr<SocketSession> weak = this->shared_from_this();
    handler_.socket_opened(upgrade_, [weak] {
      if (auto self = weak.lock()) {
        net::post(self->ws_.get_executor(), [self] { self->end(); });
      }
    });
    arm_idle_timer();
    ws_.async_accept(upgrade_.request, [self = this->shared_from_this()](beast::error_code ec) {
      if (!ec) {
        self->read();
      } else {
        self->idle_timer_.cancel();
      }
    });
  }

 private:
  // Closes the socket (on its executor): the flow ended, or no message came in time. A message
  // still with the handler gets its answer first (the decision that ended the flow, typically).
  void end() {
    if (ended_) {
      return;
    }
    if (busy_) {
      end_after_reply_ = true;
      return;
    }
    ended_ = true;
    idle_timer_.cancel();
    beast::error_code ec;
    beast::get_lowest_layer(ws_).socket().shutdown(tcp::socket::shutdown_both, ec);
    beast::get_lowest_layer(ws_).close();
  }

  void arm_idle_timer() {
    idle_timer_.expires_after(idle_timeout_);
    idle_timer_.async_wait([weak = std::weak_ptr<SocketSession>(this->shared_from_this())](
                               beast::error_code ec) {
      if (ec) {
        return;  // re-armed or cancelled
      }
      if (auto self = weak.lock()) {
        self->end();
      }
    });
  }

  void read() {
    ws_.async_read(buffer_, [self = this->shared_from_this()](beast::error_code ec, std::size_t) {
      if (ec) {
        self->idle_timer_.cancel();
        return;  // closed, timed out, or a message over the limit: the socket is done
      }
      self->arm_idle_timer();
      self->busy_ = true;
      std::string message = beast::buffers_to_string(self->buffer_.data());
      self->buffer_.consume(self->buffer_.size());
      self->handler_.socket_message(self->upgrade_, std::move(message), self->ws_.got_binary(),
                                    self->state_, [self](std::string text, bool close) {
                                      net::post(self->ws_.get_executor(),
                                                [self, text = std::move(text), close]() mutable {
                                                  self->write(std::move(text), close);
                                                });
                                    });
    });
  }

  void write(std::string text, bool close) {
    busy_ = false;
    close = close || end_after_reply_;
    auto message = std::make_shared<std::string>(std::move(text));
    ws_.text(true);
    ws_.async_write(net::buffer(*message), [self = this->shared_from_this(), message, close](
                                               beast::error_code ec, std::size_t) {
      if (ec) {
        return;
      }
      if (close) {
        self->ws_.async_close(websocket::close_code::normal, [self](beast::error_code) {});
        return;
      }
      self->read();
    });
  }

  websocket::stream<Stream> ws_;
  beast::flat_buffer buffer_;
  Handler& handler_;
  Exchange upgrade_;
  std::string state_;  // the handler's per-socket state (the attempt's nonce)
  std::shared_ptr<ConnectionCount> count_;
  net::steady_timer idle_timer_;
  std::chrono::seconds idle_timeout_;
  // On the socket's strand only: a message is with the handler; end() waits for its answer.
  bool busy_ = false;
  bool end_after_reply_ = false;
  bool ended_ = false;
};

// One connection: read a request, hand it to the handler, write its answer, repeat while the
// client keeps the connection alive. Stream is beast::tcp_stream, or TlsStream over it.
template <typename Stream>
class Connection : public std::enable_shared_from_this<Connection<Stream>> {
 public:
  template <typename... TlsContext>
  Connection(tcp::socket socket, Handler& handler, HttpLimits limits,
             std::shared_ptr<ConnectionCount> count, TlsContext&... tls)
      : stream_(std::move(socket), tls...),
        handler_(handler),
        limits_(limits),
        count_(std::move(count)) {
    boost::system::error_code ec;
    const auto remote = beast::get_lowest_layer(stream_).socket().remote_endpoint(ec);
    address_ = ec ? std::string("unknown") : remote.address().to_string();
  }
  ~Connection() { count_->release(address_); }

  void start() {
    net::dispatch(stream_.get_executor(), [self = this->shared_from_this()] {
      if constexpr (std::is_same_v<Stream, TlsStream>) {
        beast::get_lowest_layer(self->stream_).expires_after(self->limits_.request_timeout);
        self->stream_.async_handshake(net::ssl::stream_base::server, [self](beast::error_code ec) {
          if (ec) {
            return self->shutdown();  // not TLS, or a bad client
          }
          self->read_header();
        });
      } else {
        self->read_header();
      }
    });
  }

 private:
  void read_header() {
    parser_.emplace();
    parser_->header_limit(static_cast<std::uint32_t>(limits_.max_header_bytes));
    // No body limit while the header is read: Beast would otherwise check Content-Length
    // against its 1 MiB default during the header and drop the connection without a word. The
    // route's own limit is set (and answered with 413) once the header is in.
    parser_->body_limit(boost::none);
    beast::get_lowest_layer(stream_).expires_after(limits_.request_timeout);
    http::async_read_header(stream_, buffer_, *parser_,
                            [self = this->shared_from_this()](beast::error_code ec, std::size_t) {
                              self->on_header(ec);
                            });
  }

  void on_header(beast::error_code ec) {
    if (ec) {
      return close(ec == http::error::header_limit  ? http::status::request_header_fields_too_large
                   : ec == http::error::body_limit ? http::status::payload_too_large
                                                   : http::status::unknown);
    }
    const Request& header = parser_->get();
    const std::size_t limit = handler_.body_limit(header);
    if (auto length = parser_->content_length(); length && *length > limit) {
      return close(http::status::payload_too_large);
    }
    parser_->body_limit(limit);
    http::async_read(
        stream_, buffer_, *parser_,
        [self = this->shared_from_this()](beast::error_code e, std::size_t) { self->on_body(e); });
  }

  void on_body(beast::error_code ec) {
    if (ec) {
      return close(ec == http::error::body_limit ? http::status::payload_too_large
                                                 : http::status::unknown);
    }
    beast::get_lowest_layer(stream_)
        .expires_never();  // the handler may take a while; the worker pool bounds it
    Exchange exchange{parser_->release(), address_, std::chrono::steady_clock::now()};
    exchange.address = client_address(exchange.request, address_, limits_.trusted_proxies);
    if (websocket::is_upgrade(exchange.request)) {
      if (std::optional<Response> refusal = handler_.accept_socket(exchange)) {
        refusal->version(exchange.request.version());
        refusal->keep_alive(false);
        return write(std::move(*refusal));
      }
      std::make_shared<SocketSession<Stream>>(std::move(stream_), handler_, std::move(exchange),
                                              count_, limits_.socket_idle_timeout)
          ->run();
      return;  // the socket session owns the stream now
    }
    const unsigned version = exchange.request.version();
    const bool keep_alive = exchange.request.keep_alive();
    auto self = this->shared_from_this();
    handler_.handle(std::move(exchange), [self, version, keep_alive](Response response) {
      response.version(version);
      response.keep_alive(keep_alive && response.keep_alive());
      net::post(self->stream_.get_executor(),
                [self, r = std::move(response)]() mutable { self->write(std::move(r)); });
    });
  }

  void write(Response response) {
    handler_.finish(response);
    response.prepare_payload();
    auto message = std::make_shared<Response>(std::move(response));
    beast::get_lowest_layer(stream_).expires_after(limits_.request_timeout);
    http::async_write(
        stream_, *message,
        [self = this->shared_from_this(), message](beast::error_code ec, std::size_t) {
          if (ec || !message->keep_alive()) {
            return self->shutdown();
          }
          self->read_header();
        });
  }

  // Ends the connection, first telling the client why when there is something to say (a body
  // or header too large) rather than dropping it silently.
  void close(http::status status) {
    if (status == http::status::unknown) {
      return shutdown();
    }
    const Status error(status == http::status::payload_too_large ? ErrorCode::kImageTooLarge
                                                                 : ErrorCode::kInvalidArgument,
                       status == http::status::payload_too_large
                           ? "request body too large for this endpoint"
                           : "request headers too large");
    Response response = error_response(error, 11, false);
    response.result(status);
    write(std::move(response));
  }

  void shutdown() {
    beast::error_code ec;
    auto& lowest = beast::get_lowest_layer(stream_);
    lowest.socket().shutdown(tcp::socket::shutdown_both, ec);
    lowest.close();
  }

  Stream stream_;
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::string_body>> parser_;
  Handler& handler_;
  HttpLimits limits_;
  std::shared_ptr<ConnectionCount> count_;
  std::string address_;
};

}  // namespace

std::string client_address(const Request& request, const std::string& peer,
                           const std::vector<std::string>& trusted_proxies) {
  const auto trusted = [&](const std::string& a) {
    return std::find(trusted_proxies.begin(), trusted_proxies.end(), a) != trusted_proxies.end();
  };
  if (!trusted(peer)) {
    return peer;
  }
  // All X-Forwarded-For fields, in order, as one comma-separated list.
  std::vector<std::string> hops;
  for (const auto& field : request) {
    if (!beast::iequals(field.name_string(), "X-Forwarded-For")) {
      continue;
    }
    std::string_view rest = field.value();
    while (!rest.empty()) {
      const std::size_t comma = std::min(rest.find(','), rest.size());
      std::string_view hop = rest.substr(0, comma);
      rest = comma < rest.size() ? rest.substr(comma + 1) : std::string_view();
      while (!hop.empty() && hop.front() == ' ') hop.remove_prefix(1);
      while (!hop.empty() && hop.back() == ' ') hop.remove_suffix(1);
      hops.emplace_back(hop);
    }
  }
  for (auto it = hops.rbegin(); it != hops.rend(); ++it) {
    boost::system::error_code ec;
    auto parsed = net::ip::make_address(*it, ec);
    if (ec) {
      // Not an IP address (garbage, "unknown"): the proxy's own address is the best we know.
      return peer;
    }
    // Compared and returned in one form: "::2%eth0" or "0:0::2" is the proxy "::2", not a
    // client (found by auth_fuzzer, issue 17).
    if (parsed.is_v6()) {
      auto v6 = parsed.to_v6();
      v6.scope_id(0);
      parsed = v6;
    }
    const std::string address = parsed.to_string();
    if (trusted(address)) {
      continue;
    }
    return address;
  }
  return peer;
}

bool ConnectionCount::acquire(const std::string& address, int max_total, int max_per_address) {
  std::lock_guard lock(mu_);
  auto it = per_address_.find(address);
  const int mine = it == per_address_.end() ? 0 : it->second;
  if (total_ >= max_total || mine >= max_per_address) {
    return false;
  }
  ++total_;
  ++per_address_[address];
  return true;
}

void ConnectionCount::acquire_unchecked(const std::string& address) {
  std::lock_guard lock(mu_);
  ++total_;
  ++per_address_[address];
}

void ConnectionCount::release(const std::string& address) {
  std::lock_guard lock(mu_);
  --total_;
  if (auto it = per_address_.find(address); it != per_address_.end() && --it->second <= 0) {
    per_address_.erase(it);
  }
}

int ConnectionCount::total() const {
  std::lock_guard lock(mu_);
  return total_;
}

http::status http_status_for(ErrorCode code) {
  switch (code) {
    case ErrorCode::kOk:
      return http::status::ok;
    case ErrorCode::kInvalidArgument:
    case ErrorCode::kBadImage:
      return http::status::bad_request;
    case ErrorCode::kImageTooLarge:
      return http::status::payload_too_large;
    case ErrorCode::kNoFace:
    case ErrorCode::kSeveralFaces:
    case ErrorCode::kPoorQuality:
    case ErrorCode::kDifferentPeople:
      return http::status::unprocessable_entity;
    case ErrorCode::kNotFound:
      return http::status::not_found;
    case ErrorCode::kAlreadyExists:
    case ErrorCode::kDuplicateFace:
    case ErrorCode::kModelMismatch:
      return http::status::conflict;
    case ErrorCode::kUnauthenticated:
      return http::status::unauthorized;
    case ErrorCode::kForbidden:
      return http::status::forbidden;
    case ErrorCode::kTooManyRequests:
      return http::status::too_many_requests;
    case ErrorCode::kBusy:
    case ErrorCode::kUnavailable:
      return http::status::service_unavailable;
    case ErrorCode::kModelError:
    case ErrorCode::kIoError:
    case ErrorCode::kCorrupt:
    case ErrorCode::kInternal:
      return http::status::internal_server_error;
  }
  return http::status::internal_server_error;
}

Response error_response(const Status& status, unsigned version, bool keep_alive) {
  Response response(http_status_for(status.code()), version);
  response.set(http::field::content_type, "application/json");
  response.keep_alive(keep_alive);
  nlohmann::json body;
  body["error"]["code"] = std::string(error_code_name(status.code()));
  // Server faults are logged, not described to the client.
  body["error"]["message"] = http_status_for(status.code()) == http::status::internal_server_error
                                 ? std::string("internal server error")
                                 : status.message();
  response.body() = body.dump();
  return response;
}

Result<std::shared_ptr<HttpListener>> HttpListener::create(net::io_context& ioc,
                                                           const tcp::endpoint& endpoint,
                                                           Handler& handler, HttpLimits limits,
                                                           net::ssl::context* tls) {
  std::shared_ptr<HttpListener> listener(new HttpListener(ioc, handler, limits));
  listener->tls_ = tls;
  boost::system::error_code ec;
  listener->acceptor_.open(endpoint.protocol(), ec);
  if (!ec) {
    listener->acceptor_.set_option(net::socket_base::reuse_address(true), ec);
  }
  if (!ec) {
    listener->acceptor_.bind(endpoint, ec);
  }
  if (!ec) {
    listener->acceptor_.listen(net::socket_base::max_listen_connections, ec);
  }
  if (ec) {
    return make_error(ErrorCode::kIoError,
                      fmt::format("cannot listen on {}:{}: {}", endpoint.address().to_string(),
                                  endpoint.port(), ec.message()));
  }
  listener->port_ = listener->acceptor_.local_endpoint().port();
  return listener;
}

HttpListener::HttpListener(net::io_context& ioc, Handler& handler, HttpLimits limits)
    : ioc_(ioc), acceptor_(net::make_strand(ioc)), handler_(handler), limits_(limits) {}

void HttpListener::start() { accept(); }

void HttpListener::stop() {
  net::post(acceptor_.get_executor(), [self = shared_from_this()] {
    boost::system::error_code ec;
    self->acceptor_.close(ec);
  });
}

void HttpListener::accept() {
  acceptor_.async_accept(net::make_strand(ioc_), [self = shared_from_this()](beast::error_code ec,
                                                                             tcp::socket socket) {
    if (ec == net::error::operation_aborted || !self->acceptor_.is_open()) {
      return;
    }
    if (!ec) {
      boost::system::error_code remote_ec;
      const auto remote = socket.remote_endpoint(remote_ec);
      const std::string address = remote_ec ? "unknown" : remote.address().to_string();
      const auto& proxies = self->limits_.trusted_proxies;
      const bool proxy = std::find(proxies.begin(), proxies.end(), address) != proxies.end();
      if (!self->connections_->acquire(
              address, self->limits_.max_connections,
              proxy ? self->limits_.max_connections : self->limits_.max_connections_per_address)) {
        // Over a limit: close at once rather than hold the socket (the client retries).
        boost::system::error_code ignored;
        socket.close(ignored);
      } else {
        if (self->tls_ != nullptr) {
          std::make_shared<Connection<TlsStream>>(std::move(socket), self->handler_, self->limits_,
                                                  self->connections_, *self->tls_)
              ->start();
        } else {
          std::make_shared<Connection<beast::tcp_stream>>(std::move(socket), self->handler_,
                                                          self->limits_, self->connections_)
              ->start();
        }
      }
    }
    self->accept();
  });
}

}  // namespace facelogin::server
