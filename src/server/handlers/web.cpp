// WebSocket streaming of frames, and the web app's static files.
// Thin adapters: parse the request, call the service, reply (see server/api.h).

#include "server/api.h"

#include <fmt/format.h>

#include <fstream>
#include <iterator>

#include "server/api_util.h"

namespace facelogin::server {
namespace {

const char* content_type_for(const std::filesystem::path& path) {
  const std::string ext = path.extension().string();
  if (ext == ".html") return "text/html; charset=utf-8";
  if (ext == ".js") return "text/javascript; charset=utf-8";
  if (ext == ".css") return "text/css; charset=utf-8";
  if (ext == ".svg") return "image/svg+xml";
  if (ext == ".png") return "image/png";
  if (ext == ".json") return "application/json";
  if (ext == ".webmanifest") return "application/manifest+json";
  return "application/octet-stream";
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// WebSocket streaming: each binary message goes through the same handler as a POSTed frame.

void Api::socket_only(Call& call) {
  reply_error(call, Status(ErrorCode::kInvalidArgument,
                           "this endpoint is a WebSocket (send Upgrade: websocket)"));
}

std::optional<Response> Api::accept_socket(const Exchange& upgrade) {
  const Request& request = upgrade.request;
  const auto refuse = [&](const Status& status) {
    metrics_.count("facelogin_http_requests_total",
                   fmt::format("route=\"socket\",status=\"{}\"",
                               static_cast<unsigned>(http_status_for(status.code()))));
    return std::optional<Response>(error_response(status, request.version(), false));
  };
  std::vector<std::string> params;
  const std::string_view path = path_of(request);
  const bool login = match("/api/v1/login/attempts/{id}/socket", path, &params);
  if (!login && !match("/api/v1/enrollments/{id}/socket", path, &params)) {
    return refuse(Status(ErrorCode::kNotFound, "no WebSocket here"));
  }
  // Browsers send Origin with every WebSocket and let any page open one: only our own pages
  // (or non-browser clients, which send no Origin) may.
  const std::string origin = header(request, "Origin");
  const std::string host = header(request, "Host");
  if (!origin.empty() && origin != "http://" + host && origin != "https://" + host) {
    return refuse(Status(ErrorCode::kForbidden, "WebSocket from another origin"));
  }
  std::shared_ptr<FlowBase> flow;
  if (login) {
    auto attempt = logins_.find(params[0], upgrade.address);
    if (!attempt) {
      return refuse(Status(ErrorCode::kNotFound, "no such login attempt: start again"));
    }
    if (attempt->session_kind != "bearer") {
      // A WebSocket cannot set the session cookie: the web app posts its frames.
      return refuse(Status(ErrorCode::kInvalidArgument,
                           "cookie-session attempts send frames with POST; the WebSocket is for "
                           "bearer sessions"));
    }
    flow = std::move(attempt);
  } else {
    flow = enrollments_.find(params[0], upgrade.address);
    if (!flow) {
      return refuse(Status(ErrorCode::kNotFound, "no such enrolment: start again"));
    }
  }
  // One socket per flow, ever: idle sockets on one flow cannot fill the connection slots.
  if (flow->socket_taken.exchange(true)) {
    return refuse(Status(ErrorCode::kAlreadyExists,
                         "this flow already has its WebSocket: one per enrolment or attempt"));
  }
  metrics_.count("facelogin_http_requests_total", "route=\"socket\",status=\"101\"");
  return std::nullopt;
}

void Api::socket_opened(const Exchange& upgrade, std::function<void()> close) {
  std::vector<std::string> params;
  const std::string_view path = path_of(upgrade.request);
  std::shared_ptr<FlowBase> flow;
  if (match("/api/v1/login/attempts/{id}/socket", path, &params)) {
    flow = logins_.find(params[0], upgrade.address);
  } else if (match("/api/v1/enrollments/{id}/socket", path, &params)) {
    flow = enrollments_.find(params[0], upgrade.address);
  }
  if (flow == nullptr) {
    close();  // the flow ended between the upgrade and now
    return;
  }
  flow->set_socket_closer(std::move(close));
}

void Api::socket_message(const Exchange& upgrade, std::string message, bool binary,
                         std::string& state,
                         std::function<void(std::string text, bool close)> reply) {
  if (!binary) {
    // {"nonce": "..."}: binds the frames that follow to the attempt.
    json body = json::parse(message, nullptr, false);
    if (!body.is_object() || !body["nonce"].is_string()) {
      reply(json{{"status", 400},
                 {"error",
                  {{"code", "invalid_argument"},
                   {"message",
                    "text messages are {\"nonce\": \"...\"}; frames are "
                    "binary messages"}}}}
                .dump(),
            true);
      return;
    }
    // The socket lives only as long as its flow: messages keep no dead socket open.
    std::vector<std::string> params;
    const std::string_view path = path_of(upgrade.request);
    const bool alive = match("/api/v1/login/attempts/{id}/socket", path, &params)
                           ? logins_.find(params[0], upgrade.address) != nullptr
                           : match("/api/v1/enrollments/{id}/socket", path, &params) &&
                                 enrollments_.find(params[0], upgrade.address) != nullptr;
    if (!alive) {
      reply(json{{"status", 404},
                 {"error", {{"code", "not_found"}, {"message", "this attempt is over"}}}}
                .dump(),
            true);
      return;
    }
    state = body["nonce"].get<std::string>();
    reply(json{{"status", 200}, {"ok", true}}.dump(), false);
    return;
  }
  // The frame as if it had been posted, with the upgrade request's credentials.
  std::string target(path_of(upgrade.request));
  target.replace(target.size() - std::string_view("socket").size(), std::string::npos, "frames");
  Exchange exchange;
  exchange.request = Request(http::verb::post, target, 11);
  for (const auto& field : upgrade.request) {
    const auto name = field.name();
    if (name == http::field::cookie || name == http::field::authorization ||
        name == http::field::user_agent || field.name_string() == "X-API-Key") {
      exchange.request.insert(field.name_string(), field.value());
    }
  }
  exchange.request.set(http::field::content_type, "image/jpeg");  // decoding sniffs the format
  exchange.request.set("X-Attempt-Nonce", state);
  exchange.request.body() = std::move(message);
  exchange.address = upgrade.address;
  exchange.received = SteadyClock::now();
  handle(std::move(exchange), [reply = std::move(reply)](Response response) {
    json body = json::parse(response.body(), nullptr, false);
    if (!body.is_object()) {
      body = json::object();
    }
    body["status"] = response.result_int();
    const std::string s = body.value("state", "");
    const bool over = s == "accepted" || s == "rejected" || response.result_int() == 404;
    reply(body.dump(-1, ' ', false, json::error_handler_t::replace), over);
  });
}

// ---------------------------------------------------------------------------------------------
// The web app.

void Api::static_file(Call& call) {
  std::string path(path_of(call.exchange.request));
  if (path == "/" || path == "/enroll" || path == "/login" || path == "/account" ||
      path == "/admin") {
    path = path == "/" ? "/index.html" : path + ".html";
  }
  // Only plain names under the web directory: no "..", no hidden files, no odd characters.
  const bool safe = path.size() < 200 && path.find("..") == std::string::npos &&
                    path.find("/.") == std::string::npos &&
                    std::all_of(path.begin(), path.end(), [](char ch) {
                      return std::isalnum(static_cast<unsigned char>(ch)) || ch == '/' ||
                             ch == '.' || ch == '-' || ch == '_';
                    });
  // "//x" would make the path absolute and escape the directory; the resolved file must be
  // inside it in any case (a symbolic link out of it is not followed).
  std::error_code ec;
  const std::filesystem::path root = std::filesystem::weakly_canonical(options_.web_dir, ec);
  const std::filesystem::path file =
      safe && path.find("//") == std::string::npos
          ? std::filesystem::weakly_canonical(root / path.substr(1), ec)
          : std::filesystem::path();
  const auto [root_end, file_it] =
      std::mismatch(root.begin(), root.end(), file.begin(), file.end());
  if (file.empty() || ec || root_end != root.end() || !std::filesystem::is_regular_file(file, ec)) {
    return reply_error(call, Status(ErrorCode::kNotFound, "no such page"));
  }
  std::ifstream in(file, std::ios::binary);
  std::string content((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  Response response(http::status::ok, call.exchange.request.version());
  response.set(http::field::content_type, content_type_for(file));
  response.set(http::field::cache_control, "no-cache");
  response.body() = std::move(content);
  metrics_.count("facelogin_http_requests_total", "route=\"static\",status=\"200\"");
  call.reply(std::move(response));
}

}  // namespace facelogin::server
