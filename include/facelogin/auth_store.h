#pragma once

// Storage of what the server needs besides faces: login sessions, the audit log, failure counters
// for lockout, and recovery codes. Like Store, an interface every backend implements (SQLite now,
// PostgreSQL later); all state lives here, not in a server process, so several servers on one
// database behave as one system.
//
// Secrets are never stored: sessions and recovery codes are kept as SHA-256 hashes of random
// tokens, so a copy of the database does not let anyone log in. Nothing here holds images or
// templates.

#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "facelogin/status.h"

namespace facelogin {

struct NewSession {
  std::string token_hash;  // SHA-256 of the token, 32 raw bytes
  std::string user;
  std::string kind;             // "cookie" (web app) or "bearer" (API clients)
  std::int64_t created_at = 0;  // Unix seconds
  std::int64_t expires_at = 0;
  std::string address;     // client address at login
  std::string user_agent;  // truncated by the caller
};

struct SessionRecord {
  std::int64_t id = 0;
  std::string user;
  std::string kind;
  std::int64_t created_at = 0;
  std::int64_t expires_at = 0;
  bool revoked = false;
  std::string address;
  std::string user_agent;
};

struct AuditEvent {
  std::int64_t id = 0;     // set by the store
  std::int64_t at_ms = 0;  // Unix milliseconds
  std::string event;       // "enroll", "login", "logout", "delete_account", ...
  std::string actor;       // who acted: a user name, "anonymous", "admin:NAME", "cli"
  std::string subject;     // the account concerned (may be empty)
  std::string address;     // client address
  std::string outcome;     // "ok", "rejected", "no_match", "locked_out", ...
  std::string detail;      // a JSON object: scores, reasons (never images or templates)
};

struct AuditQuery {
  std::string subject;         // empty: all
  std::int64_t before_id = 0;  // 0: newest first from the end; otherwise ids below this
  int limit = 100;             // 1..1000
};

// An application's API key. The key itself is shown once at creation; only its hash is kept.
struct ApiKeyRecord {
  std::int64_t id = 0;
  std::string name;                 // the application, e.g. "intranet"
  std::vector<std::string> scopes;  // "login", "enroll", "admin"
  std::string liveness;             // "adaptive", "passive", "active", "off", or "" (the deployment's)
  std::int64_t created_at = 0;
  bool revoked = false;

  bool has(std::string_view scope) const {
    for (const auto& s : scopes) {
      if (s == scope) {
        return true;
      }
    }
    return false;
  }
};

// Failed attempts for one key ("user:alice", "addr:192.0.2.1", "pair:192.0.2.1/alice").
struct FailureState {
  int failures = 0;                  // consecutive, since the last success or expiry
  std::int64_t locked_until_ms = 0;  // Unix ms; 0 or past: not locked
};

// How long a key is locked after its n-th consecutive failure (0: not locked).
using LockoutRule = std::function<std::int64_t(int failures)>;

// A token bucket of the start rate limit: `per_minute` tokens at most, refilled continuously.
struct RateBucket {
  double tokens = 0;
  std::int64_t updated_ms = 0;  // Unix ms
};

struct RateDecision {
  bool allowed = false;
  int retry_after_s = 0;  // when refused: seconds until a token is back (>= 1)
};

// One take from `bucket` at `now_ms` (nullopt: a new, full bucket): refills for the time since
// it was updated (never for time going backwards), then takes a token if there is one. Updates
// `bucket`. Every backend stores buckets and calls this, so all compute the same.
[[nodiscard]] RateDecision take_rate_token(std::optional<RateBucket>& bucket, std::int64_t now_ms,
                                           int per_minute);

// Buckets idle this long are full again and may be deleted.
inline constexpr std::int64_t kRateBucketIdleMs = 3'600'000;

// Thread-safe; each call is one transaction.
class AuthStore {
 public:
  virtual ~AuthStore() = default;

  // Errors: kNotFound (no such user), kAlreadyExists (hash collision: a bug or an attack).
  [[nodiscard]] virtual Result<std::int64_t> create_session(const NewSession& session) = 0;
  // The session with this token hash, revoked or expired ones included (the caller decides).
  // Errors: kNotFound.
  [[nodiscard]] virtual Result<SessionRecord> find_session(std::string_view token_hash) const = 0;
  // Revokes one session of `user` (kNotFound if it is not theirs), or all of them.
  [[nodiscard]] virtual Status revoke_session(std::string_view user, std::int64_t session_id) = 0;
  [[nodiscard]] virtual Status revoke_user_sessions(std::string_view user) = 0;
  // Live (not revoked, not expired at `now`) sessions of a user, newest first.
  [[nodiscard]] virtual Result<std::vector<SessionRecord>> user_sessions(
      std::string_view user, std::int64_t now) const = 0;
  // Whether `user` was given a session (any kind, ended or not) from `address` at or after
  // `since` (Unix seconds): the address is a context the account's owner has logged in from.
  [[nodiscard]] virtual Result<bool> has_session_from(std::string_view user,
                                                      std::string_view address,
                                                      std::int64_t since) const = 0;
  // Whether the audit log holds a login refused for liveness (outcome not_live, flat_motion or
  // still_image) at or after `since_ms` (Unix milliseconds) for `user` (if not empty) or from
  // `address` (if not empty): the adaptive liveness policy then asks for the challenge.
  [[nodiscard]] virtual Result<bool> liveness_refused_since(std::string_view user,
                                                            std::string_view address,
                                                            std::int64_t since_ms) const = 0;

  [[nodiscard]] virtual Status append_audit(const AuditEvent& event) = 0;
  [[nodiscard]] virtual Result<std::vector<AuditEvent>> list_audit(
      const AuditQuery& query) const = 0;

  // Counts a failure of `key` at `now_ms` and returns the new state; the lock time comes from
  // `rule(failures)`. Counters older than `forget_after_ms` start again from zero. Atomic, so two
  // servers counting at once never lose a failure.
  [[nodiscard]] virtual Result<FailureState> record_failure(std::string_view key,
                                                            std::int64_t now_ms,
                                                            std::int64_t forget_after_ms,
                                                            const LockoutRule& rule) = 0;
  [[nodiscard]] virtual Result<FailureState> failure_state(std::string_view key) const = 0;
  [[nodiscard]] virtual Status clear_failures(std::string_view key) = 0;

  // Start rate limit shared by every server on the database: one take_rate_token on `key`'s
  // bucket, atomically. Errors: kInvalidArgument (empty key, per_minute < 1).
  [[nodiscard]] virtual Result<RateDecision> take_rate_token(std::string_view key,
                                                             std::int64_t now_ms,
                                                             int per_minute) = 0;

  // Administrators: granted with the CLI (`facelogin users admin NAME`), never by default.
  // Errors: kNotFound (no such user).
  [[nodiscard]] virtual Status set_admin(std::string_view user, bool admin) = 0;
  [[nodiscard]] virtual Result<bool> is_admin(std::string_view user) const = 0;
  [[nodiscard]] virtual Result<std::vector<std::string>> admins() const = 0;
  // Audit events per (event, outcome) since `since_ms`, for the admin overview.
  [[nodiscard]] virtual Result<std::vector<std::pair<std::string, std::int64_t>>> audit_counts(
      std::int64_t since_ms) const = 0;

  // API keys. Errors: kAlreadyExists (name taken), kInvalidArgument (bad scope or policy).
  [[nodiscard]] virtual Result<std::int64_t> create_api_key(const ApiKeyRecord& key,
                                                            std::string_view key_hash) = 0;
  // The key with this hash (revoked ones included). Errors: kNotFound.
  [[nodiscard]] virtual Result<ApiKeyRecord> find_api_key(std::string_view key_hash) const = 0;
  [[nodiscard]] virtual Result<std::vector<ApiKeyRecord>> list_api_keys() const = 0;
  // Errors: kNotFound.
  [[nodiscard]] virtual Status revoke_api_key(std::string_view name) = 0;

  // Replaces the user's recovery code (its hash). Errors: kNotFound.
  [[nodiscard]] virtual Status set_recovery_code(std::string_view user,
                                                 std::string_view code_hash) = 0;
  // Uses the code once: true (and the code is deleted) if `code_hash` is the user's code.
  [[nodiscard]] virtual Result<bool> consume_recovery_code(std::string_view user,
                                                           std::string_view code_hash) = 0;
};

// The SQLite AuthStore on the same database file as the template store (it opens its own
// connection and shares the schema's migrations). Errors as open_sqlite_store.
[[nodiscard]] Result<std::unique_ptr<AuthStore>> open_sqlite_auth_store(
    const std::filesystem::path& path, int busy_timeout_ms = 5000);

}  // namespace facelogin
