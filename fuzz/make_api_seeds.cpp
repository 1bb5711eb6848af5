// Writes the seed corpora of api_fuzzer and socket_fuzzer (formats in api_fuzzer.cpp and
// socket_fuzzer.cpp): the requests tests/server_test.cpp makes (health, documents, sign-up,
// login by face and by recovery code, sessions, account, administration, WebSocket streaming,
// the refusals), as sequences that use the harness's fixtures. Frames are a small synthetic
// JPEG and PNG (no face) and, when the shared data is there (FACELOGIN_DATA_DIR, default
// ../shared/data), a real NUAA face shrunk to 320x240, so that seeds reach the recognition and
// liveness paths.
//
// Usage: api_fuzz_seeds API_DIR SOCKET_DIR   (created if absent)

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

namespace {

namespace fs = std::filesystem;

std::string encode(const cv::Mat& image, const char* ext, std::vector<int> params = {}) {
  std::vector<std::uint8_t> bytes;
  if (!cv::imencode(ext, image, bytes, params)) {
    std::fprintf(stderr, "cannot encode a %s frame\n", ext);
    std::exit(1);
  }
  return std::string(bytes.begin(), bytes.end());
}

// A real face, or empty when the shared data is absent.
std::string face_jpeg() {
  const char* env = std::getenv("FACELOGIN_DATA_DIR");
  const fs::path data = env != nullptr && *env != '\0' ? fs::path(env) : fs::path("../shared/data");
  const fs::path dir = data / "nuaa" / "ClientRaw" / "0001";
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) {
    return {};
  }
  std::vector<fs::path> files;
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    if (entry.path().extension() == ".jpg") {
      files.push_back(entry.path());
    }
  }
  if (files.empty()) {
    return {};
  }
  std::sort(files.begin(), files.end());
  cv::Mat image = cv::imread(files.front().string(), cv::IMREAD_COLOR);
  if (image.empty()) {
    return {};
  }
  cv::resize(image, image, cv::Size(320, 240), 0, 0, cv::INTER_AREA);
  return encode(image, ".jpg", {cv::IMWRITE_JPEG_QUALITY, 75});
}

void write(const fs::path& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  if (!out) {
    std::fprintf(stderr, "cannot write %s\n", path.c_str());
    std::exit(1);
  }
}

std::string json_post(const std::string& target, const std::string& body,
                      const std::string& headers = "") {
  return "POST " + target + " HTTP/1.1\nHost: 127.0.0.1\nContent-Type: application/json\n" +
         headers + "\n" + body;
}

std::string request(const std::string& method, const std::string& target,
                    const std::string& headers = "") {
  return method + " " + target + " HTTP/1.1\nHost: 127.0.0.1\n" + headers + "\n";
}

std::string frame_post(const std::string& target, const std::string& type,
                       const std::string& frame, const std::string& headers = "") {
  return "POST " + target + " HTTP/1.1\nHost: 127.0.0.1\nContent-Type: " + type + "\n" + headers +
         "\n" + frame;
}

std::string sequence(const std::vector<std::string>& requests) {
  std::string out;
  for (std::size_t i = 0; i < requests.size(); ++i) {
    out += (i ? "\n===\n" : "") + requests[i];
  }
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: %s API_CORPUS_DIR SOCKET_CORPUS_DIR\n", argv[0]);
    return 2;
  }
  const fs::path api_dir = argv[1];
  const fs::path socket_dir = argv[2];
  fs::create_directories(api_dir);
  fs::create_directories(socket_dir);

  // 160x120: YuNet fails on much smaller frames (a 500, reported as a finding), and a seed
  // that always fails keeps the fuzzer from getting anywhere.
  cv::Mat pattern(120, 160, CV_8UC3);
  for (int y = 0; y < pattern.rows; ++y) {
    for (int x = 0; x < pattern.cols; ++x) {
      pattern.at<cv::Vec3b>(y, x) = cv::Vec3b(static_cast<std::uint8_t>(x), static_cast<std::uint8_t>(2 * y),
                                              static_cast<std::uint8_t>((x * y) % 256));
    }
  }
  const std::string jpeg = encode(pattern, ".jpg", {cv::IMWRITE_JPEG_QUALITY, 50});
  const std::string png = encode(pattern, ".png");
  const std::string face = face_jpeg();
  const std::string& best = face.empty() ? jpeg : face;

  const std::string cookie = "Cookie: facelogin_session={{alice_cookie}}\n";
  const std::string csrf = "X-CSRF-Token: {{alice_csrf}}\n";
  const std::string bearer = "Authorization: Bearer {{alice_bearer}}\n";
  const std::string admin = "Cookie: theme=dark; facelogin_session={{root_cookie}}\n"
                            "X-CSRF-Token: {{root_csrf}}\n";
  const std::string key = "X-API-Key: {{key_all}}\n";
  const std::string nonce = "X-Attempt-Nonce: {{nonce}}\n";

  const std::vector<std::pair<std::string, std::string>> api = {
      {"healthz", request("GET", "/healthz")},
      {"readyz", request("GET", "/readyz")},
      {"metrics", request("GET", "/metrics")},
      {"openapi", request("GET", "/api/v1/openapi.json")},
      {"not_found", request("GET", "/api/v2/nothing?x=1")},
      {"method_not_allowed", request("PUT", "/api/v1/session", cookie)},
      {"wrong_type", "POST /api/v1/login/attempts HTTP/1.1\nContent-Type: text/plain\n\n{}"},
      {"bad_json", json_post("/api/v1/login/attempts", "{\"user\": ")},
      {"enroll_frame_finish",
       sequence({json_post("/api/v1/enrollments", R"({"user": "bob", "session": "cookie"})"),
                 frame_post("/api/v1/enrollments/{{flow}}/frames", "image/jpeg", best),
                 request("POST", "/api/v1/enrollments/{{flow}}/finish"),
                 request("DELETE", "/api/v1/enrollments/{{flow}}")})},
      {"enroll_png", sequence({json_post("/api/v1/enrollments", R"({"user": "dora"})"),
                               frame_post("/api/v1/enrollments/{{flow}}/frames", "image/png", png)})},
      {"enroll_add_bearer",
       sequence({json_post("/api/v1/enrollments", R"({"add": true, "session": "bearer"})",
                           bearer + key),
                 frame_post("/api/v1/enrollments/{{flow}}/frames", "image/jpeg", jpeg)})},
      {"login_frame",
       sequence({json_post("/api/v1/login/attempts", R"({"user": "alice"})"),
                 frame_post("/api/v1/login/attempts/{{flow}}/frames", "image/jpeg", best, nonce)})},
      {"login_bearer_key",
       sequence({json_post("/api/v1/login/attempts", R"({"user": "alice", "session": "bearer"})",
                           key),
                 frame_post("/api/v1/login/attempts/{{flow}}/frames", "image/jpeg", jpeg, nonce)})},
      {"login_face_only", json_post("/api/v1/login/attempts", "{}")},
      {"login_wrong_nonce",
       sequence({json_post("/api/v1/login/attempts", R"({"user": "alice"})"),
                 frame_post("/api/v1/login/attempts/{{flow}}/frames", "image/jpeg", jpeg,
                            "X-Attempt-Nonce: 00\n")})},
      {"recovery", json_post("/api/v1/login/recovery",
                             R"({"user": "alice", "code": "{{recovery}}", "session": "cookie"})")},
      {"recovery_wrong",
       sequence({json_post("/api/v1/login/recovery", R"({"user": "alice", "code": "x"})"),
                 json_post("/api/v1/login/recovery", R"({"user": "alice", "code": "y"})"),
                 json_post("/api/v1/login/recovery", R"({"user": "alice", "code": "z"})"),
                 json_post("/api/v1/login/recovery", R"({"user": "alice", "code": "w"})")})},
      {"recovery_bearer",
       json_post("/api/v1/login/recovery",
                 R"({"user": "alice", "code": "{{recovery}}", "session": "bearer"})", key)},
      {"session_cookie", request("GET", "/api/v1/session", cookie)},
      {"session_bearer", request("GET", "/api/v1/session", bearer)},
      {"logout_csrf", request("POST", "/api/v1/logout", cookie + csrf)},
      {"logout_no_csrf", request("POST", "/api/v1/logout", cookie)},
      {"account", request("GET", "/api/v1/account", cookie)},
      {"delete_face", request("DELETE", "/api/v1/account/faces/{{face}}", cookie + csrf)},
      {"revoke_session",
       request("DELETE", "/api/v1/account/sessions/{{session}}", bearer)},
      {"new_recovery_code", request("POST", "/api/v1/account/recovery-code", cookie + csrf)},
      {"delete_account", request("DELETE", "/api/v1/account", bearer)},
      {"admin_users", request("GET", "/api/v1/admin/users?q=AL%69", admin)},
      {"admin_disable_enable",
       sequence({request("POST", "/api/v1/admin/users/alice/disable", admin),
                 request("POST", "/api/v1/admin/users/alice/enable", key)})},
      {"admin_audit",
       request("GET", "/api/v1/admin/audit?subject=alice&before=100&limit=5", admin)},
      {"admin_stats", request("GET", "/api/v1/admin/stats", key)},
      {"admin_delete", request("DELETE", "/api/v1/admin/users/alice", admin)},
      {"admin_denied", request("GET", "/api/v1/admin/users", cookie)},
      {"revoked_key", request("GET", "/api/v1/admin/stats", "X-API-Key: {{key_revoked}}\n")},
      {"forwarded",
       json_post("/api/v1/login/attempts", R"({"user": "alice"})",
                 "X-Forwarded-For: 203.0.113.9, 10.9.8.7\nUser-Agent: fuzz/1.0\n")},
      {"socket_login",
       sequence({json_post("/api/v1/login/attempts", R"({"user": "alice", "session": "bearer"})",
                           key),
                 request("GET", "/api/v1/login/attempts/{{flow}}/socket",
                         "Connection: Upgrade\nUpgrade: websocket\nSec-WebSocket-Version: 13\n"
                         "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\n" + key) +
                     "t{\"nonce\": \"{{nonce}}\"}\n---\nb" + jpeg})},
      {"socket_plain_get", request("GET", "/api/v1/enrollments/abc/socket")},
  };
  for (const auto& [name, bytes] : api) {
    write(api_dir / name, bytes);
  }

  // socket_fuzzer: setup byte, variant byte, messages.
  const std::string hello = "t{\"nonce\": \"{{nonce}}\"}";
  const std::vector<std::pair<std::string, std::string>> socket = {
      {"login_nonce_frame", std::string("\x00\x00", 2) + hello + "\n---\nb" + best},
      {"login_no_nonce", std::string("\x00\x03", 2) + "b" + jpeg},
      {"login_bad_text", std::string("\x00\x01", 2) + "t[1, 2]\n---\ntnot json"},
      {"face_only", std::string("\x01\x00", 2) + hello + "\n---\nb" + jpeg + "\n---\nb" + png},
      {"enroll_frames", std::string("\x02\x01", 2) + "b" + best + "\n---\nb" + jpeg},
      {"enroll_add", std::string("\x03\x03", 2) + "b" + png},
      {"cookie_attempt", std::string("\x04\x00", 2) + hello},
      {"other_origin", std::string("\x00\x02", 2) + hello},
      {"other_client", std::string("\x02\x04", 2) + "b" + jpeg},
  };
  for (const auto& [name, bytes] : socket) {
    write(socket_dir / name, bytes);
  }
  std::printf("wrote %zu api and %zu socket seeds%s\n", api.size(), socket.size(),
              face.empty() ? " (no shared data: no real face)" : " (with a real face)");
  return 0;
}
