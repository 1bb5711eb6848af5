#include <fmt/format.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include <algorithm>
#include <array>

#include "facelogin/auth.h"

namespace facelogin {
namespace {

constexpr std::size_t kTokenBytes = 32;
constexpr std::size_t kMaxUserAgent = 200;

std::string to_hex(const unsigned char* data, std::size_t size) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out(size * 2, '0');
  for (std::size_t i = 0; i < size; ++i) {
    out[2 * i] = kDigits[data[i] >> 4];
    out[2 * i + 1] = kDigits[data[i] & 0xf];
  }
  return out;
}

std::int64_t system_now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string user_key(std::string_view user) { return fmt::format("user:{}", user); }
std::string address_key(std::string_view address) { return fmt::format("addr:{}", address); }
// Addresses hold no '/', so the pair key is unambiguous.
std::string pair_key(std::string_view user, std::string_view address) {
  return fmt::format("pair:{}/{}", address, user);
}

}  // namespace

Result<std::string> random_token() {
  std::array<unsigned char, kTokenBytes> bytes{};
  if (RAND_bytes(bytes.data(), static_cast<int>(bytes.size())) != 1) {
    return make_error(ErrorCode::kInternal, "the random generator failed");
  }
  return to_hex(bytes.data(), bytes.size());
}

Result<std::string> new_api_key() {
  auto token = random_token();
  if (!token) {
    return make_error(token.error());
  }
  return "flk_" + *token;
}

std::string token_hash(std::string_view token) {
  std::array<unsigned char, EVP_MAX_MD_SIZE> digest{};
  unsigned int size = 0;
  if (EVP_Digest(token.data(), token.size(), digest.data(), &size, EVP_sha256(), nullptr) != 1 ||
      size != 32) {
    // SHA-256 on memory cannot fail short of a broken OpenSSL; an empty hash matches nothing.
    return std::string();
  }
  return std::string(reinterpret_cast<const char*>(digest.data()), size);
}

bool constant_time_equal(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) {
    return false;
  }
  return a.empty() || CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

Authenticator::Authenticator(Store& store, AuthStore& auth_store, AuthOptions options, Clock now_ms)
    : store_(store),
      auth_store_(auth_store),
      options_(options),
      now_ms_(now_ms ? std::move(now_ms) : Clock(system_now_ms)) {}

std::int64_t Authenticator::lock_for(int failures) const {
  const int over = failures - options_.free_failures;
  if (over <= 0) {
    return 0;
  }
  // base, 2 base, 4 base, ... capped; the shift is bounded so it cannot overflow.
  const std::int64_t base = options_.base_lock.count();
  const std::int64_t lock = base << std::min(over - 1, 20);
  return std::min(lock, static_cast<std::int64_t>(options_.max_lock.count()));
}

Result<bool> Authenticator::known_context(std::string_view user, std::string_view address) const {
  if (user.empty() || address.empty()) {
    return false;
  }
  const std::int64_t since = now_ms_() / 1000 - options_.known_context_ttl.count();
  return auth_store_.has_session_from(user, address, since);
}

Result<bool> Authenticator::liveness_refused_recently(std::string_view user,
                                                      std::string_view address) const {
  if (user.empty() && address.empty()) {
    return false;
  }
  const std::int64_t since = now_ms_() - 1000 * options_.liveness_step_up_window.count();
  return auth_store_.liveness_refused_since(user, address, since);
}

Result<std::vector<std::string>> Authenticator::counters(std::string_view user,
                                                         std::string_view address,
                                                         AttemptKind kind) const {
  std::vector<std::string> keys;
  if (!address.empty()) {
    keys.push_back(address_key(address));
  }
  if (!user.empty() && !address.empty()) {
    keys.push_back(pair_key(user, address));
  }
  if (!user.empty() && kind == AttemptKind::kFace) {
    auto known = known_context(user, address);
    if (!known) {
      return make_error(known.error());
    }
    if (!*known) {
      keys.push_back(user_key(user));
    }
  }
  return keys;
}

Result<std::int64_t> Authenticator::locked_for_ms(std::string_view user, std::string_view address,
                                                  AttemptKind kind) const {
  auto keys = counters(user, address, kind);
  if (!keys) {
    return make_error(keys.error());
  }
  const std::int64_t now = now_ms_();
  std::int64_t remaining = 0;
  for (const std::string& key : *keys) {
    auto state = auth_store_.failure_state(key);
    if (!state) {
      return make_error(state.error());
    }
    remaining = std::max(remaining, state->locked_until_ms - now);
  }
  return std::max<std::int64_t>(remaining, 0);
}

Result<std::int64_t> Authenticator::record_failure(std::string_view user,
                                                   std::string_view address, AttemptKind kind) {
  auto keys = counters(user, address, kind);
  if (!keys) {
    return make_error(keys.error());
  }
  const std::int64_t now = now_ms_();
  const LockoutRule rule = [this](int failures) { return lock_for(failures); };
  std::int64_t locked_until = 0;
  for (const std::string& key : *keys) {
    auto state = auth_store_.record_failure(key, now, options_.forget_failures_after.count(), rule);
    if (!state) {
      return make_error(state.error());
    }
    locked_until = std::max(locked_until, state->locked_until_ms);
  }
  return std::max<std::int64_t>(locked_until - now, 0);
}

Status Authenticator::record_success(std::string_view user, std::string_view address) {
  if (Status s = auth_store_.clear_failures(user_key(user)); !s.ok()) {
    return s;
  }
  return address.empty() ? Status::Ok() : auth_store_.clear_failures(pair_key(user, address));
}

Result<IssuedSession> Authenticator::issue_session(std::string_view user, std::string_view kind,
                                                   std::string_view address,
                                                   std::string_view user_agent) {
  auto info = store_.get_user(user);
  if (!info) {
    return make_error(info.error());
  }
  if (info->disabled) {
    return make_error(ErrorCode::kForbidden, fmt::format("account '{}' is disabled", user));
  }
  auto token = random_token();
  if (!token) {
    return make_error(token.error());
  }
  const std::int64_t now_s = now_ms_() / 1000;
  const auto ttl = kind == "cookie" ? options_.cookie_session_ttl : options_.bearer_session_ttl;
  NewSession session;
  session.token_hash = token_hash(*token);
  session.user = std::string(user);
  session.kind = std::string(kind);
  session.created_at = now_s;
  session.expires_at = now_s + ttl.count();
  session.address = std::string(address);
  session.user_agent = std::string(user_agent.substr(0, kMaxUserAgent));
  auto id = auth_store_.create_session(session);
  if (!id) {
    return make_error(id.error());
  }
  IssuedSession issued;
  issued.id = *id;
  issued.token = std::move(*token);
  issued.csrf = kind == "cookie" ? csrf_for(issued.token) : std::string();
  issued.expires_at = session.expires_at;
  return issued;
}

Result<AuthenticatedSession> Authenticator::authenticate(std::string_view token) const {
  const auto unauthenticated = [] {
    return make_error(ErrorCode::kUnauthenticated, "not logged in, or the session has ended");
  };
  // Tokens we issue are 64 hex digits; anything else cannot be one and is not looked up.
  if (token.size() != 2 * kTokenBytes || !std::all_of(token.begin(), token.end(), [](char c) {
        return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
      })) {
    return unauthenticated();
  }
  auto session = auth_store_.find_session(token_hash(token));
  if (!session) {
    if (session.error().code() == ErrorCode::kNotFound) {
      return unauthenticated();
    }
    return make_error(session.error());
  }
  if (session->revoked || session->expires_at <= now_ms_() / 1000) {
    return unauthenticated();
  }
  auto user = store_.get_user(session->user);
  if (!user) {
    if (user.error().code() == ErrorCode::kNotFound) {
      return unauthenticated();
    }
    return make_error(user.error());
  }
  if (user->disabled) {
    return unauthenticated();
  }
  return AuthenticatedSession{std::move(*session), std::move(*user)};
}

std::string Authenticator::csrf_for(std::string_view token) {
  const std::string digest = token_hash(fmt::format("facelogin csrf\n{}", token));
  return to_hex(reinterpret_cast<const unsigned char*>(digest.data()), digest.size());
}

Status Authenticator::logout(std::string_view token) {
  auto current = authenticate(token);
  if (!current) {
    return current.error().code() == ErrorCode::kUnauthenticated ? Status::Ok() : current.error();
  }
  return auth_store_.revoke_session(current->session.user, current->session.id);
}

Status Authenticator::audit(AuditEvent event) {
  event.at_ms = now_ms_();
  return auth_store_.append_audit(event);
}

}  // namespace facelogin
