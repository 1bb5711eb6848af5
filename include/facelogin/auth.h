#pragma once

// Sessions, lockout and audit on top of the stores: what turns "this face matched" into access
// an application can trust, and what keeps guessing expensive.
//
// - Tokens are 32 random bytes (OpenSSL's DRBG), shown to the client once as 64 hex digits and
//   stored only as their SHA-256, so a database copy opens no session. Token checks compare
//   hashes in constant time.
// - Lockout is progressive and counted in the AuthStore (shared by every server on the database):
//   after `free_failures` consecutive failures on a counter, each further failure locks it for
//   base_lock doubling up to max_lock. Every way in (1:1, 1:N, API clients, recovery codes)
//   checks and counts through here. Three counters, so that an attacker elsewhere cannot lock
//   the owner out (issue 17; docs/server.md, "Lockout"):
//     addr:A     everything address A does; locks A out of every account;
//     pair:A/U   attempts on account U from address A; locks U from A only;
//     user:U     face attempts on U from contexts its owner has not used (an address U had no
//                session from in the last known_context_ttl); locks U's face login from such
//                contexts only. The owner's known addresses and recovery codes are not held by
//                it: a correct recovery code works from any address that is not itself locked.
// - Every decision is appended to the audit log: who, when, from where, outcome, scores; never
//   images, templates or tokens.

#include <chrono>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "facelogin/auth_store.h"
#include "facelogin/store.h"

namespace facelogin {

// 32 random bytes as 64 lowercase hex digits. Errors: kInternal (the DRBG failed).
[[nodiscard]] Result<std::string> random_token();
// A new API key: "flk_" and 64 hex digits (32 random bytes). Errors: kInternal.
[[nodiscard]] Result<std::string> new_api_key();
// SHA-256 of `token`, 32 raw bytes.
[[nodiscard]] std::string token_hash(std::string_view token);
// Equal contents, in time that depends only on the lengths.
[[nodiscard]] bool constant_time_equal(std::string_view a, std::string_view b);

struct AuthOptions {
  std::chrono::seconds cookie_session_ttl{std::chrono::hours(8)};
  std::chrono::seconds bearer_session_ttl{std::chrono::hours(1)};
  int free_failures = 5;  // failures before the first lock
  std::chrono::milliseconds base_lock{std::chrono::minutes(1)};
  std::chrono::milliseconds max_lock{std::chrono::hours(1)};
  // A failure counter untouched this long (and not locked) starts again from zero.
  std::chrono::milliseconds forget_failures_after{std::chrono::hours(24)};
  // An address the account was given a session from within this long is a known context: the
  // account-wide counter neither counts its failures nor holds it.
  std::chrono::seconds known_context_ttl{std::chrono::hours(24 * 30)};
  // Under the adaptive liveness policy, a liveness refusal (not_live, flat_motion, still_image)
  // of the account or the address within this long makes the next logins ask for the challenge.
  std::chrono::seconds liveness_step_up_window{std::chrono::minutes(15)};
};

// What an attempt tries: the face (1:1 or 1:N) or a recovery code. Recovery codes are long
// random secrets, so guessing them is bounded per address and per (account, address), never for
// the account as a whole (which would let anyone lock the owner out of recovery).
enum class AttemptKind { kFace, kRecovery };

struct IssuedSession {
  std::int64_t id = 0;
  std::string token;  // give to the client once; never log
  std::string csrf;   // for cookie sessions: the header value unsafe requests must carry
  std::int64_t expires_at = 0;
};

struct AuthenticatedSession {
  SessionRecord session;
  UserInfo user;
};

// Thread-safe (the stores are).
class Authenticator {
 public:
  using Clock = std::function<std::int64_t()>;  // Unix milliseconds

  Authenticator(Store& store, AuthStore& auth_store, AuthOptions options = {}, Clock now_ms = {});

  // How long (ms) `address` may not make this kind of attempt on `user` (empty: face-only, no
  // account named yet): the address's lock, the pair's, and for face attempts from an unknown
  // context the account's. 0 if none holds.
  [[nodiscard]] Result<std::int64_t> locked_for_ms(std::string_view user, std::string_view address,
                                                   AttemptKind kind = AttemptKind::kFace) const;
  // Counts a failed attempt on the counters above; returns how long the same attempt is now
  // locked (0: not locked).
  [[nodiscard]] Result<std::int64_t> record_failure(std::string_view user,
                                                    std::string_view address,
                                                    AttemptKind kind = AttemptKind::kFace);
  // A successful login resets the account's counter and the pair's (the address keeps its own).
  [[nodiscard]] Status record_success(std::string_view user, std::string_view address = {});
  // Whether `user` has had a session from `address` within known_context_ttl.
  [[nodiscard]] Result<bool> known_context(std::string_view user, std::string_view address) const;
  // Whether a login of `user` (if not empty) or from `address` was refused for liveness within
  // liveness_step_up_window (the audit log says).
  [[nodiscard]] Result<bool> liveness_refused_recently(std::string_view user,
                                                       std::string_view address) const;

  // A new session for an enabled user. kind: "cookie" or "bearer".
  [[nodiscard]] Result<IssuedSession> issue_session(std::string_view user, std::string_view kind,
                                                    std::string_view address,
                                                    std::string_view user_agent);
  // The live session of `token`. Errors: kUnauthenticated (unknown, expired, revoked, or the
  // user was disabled or deleted).
  [[nodiscard]] Result<AuthenticatedSession> authenticate(std::string_view token) const;
  // The CSRF value bound to a cookie session's token (derived, so nothing more is stored).
  [[nodiscard]] static std::string csrf_for(std::string_view token);
  // Revokes the session of `token` (no error if it is already gone).
  [[nodiscard]] Status logout(std::string_view token);

  // Appends to the audit log with the current time. Best effort for callers that cannot do
  // anything about a failure; the Status says whether it was written.
  Status audit(AuditEvent event);

  std::int64_t now_ms() const { return now_ms_(); }
  const AuthOptions& options() const { return options_; }
  Store& store() { return store_; }
  AuthStore& auth_store() { return auth_store_; }

 private:
  std::int64_t lock_for(int failures) const;
  // The counters an attempt of `kind` on (user, address) is held by, and counts on.
  Result<std::vector<std::string>> counters(std::string_view user, std::string_view address,
                                            AttemptKind kind) const;

  Store& store_;
  AuthStore& auth_store_;
  AuthOptions options_;
  Clock now_ms_;
};

}  // namespace facelogin
