// The SQLite implementation of AuthStore: sessions, audit log, failure counters and recovery
// codes, in the tables of schema version 3 (see sqlite_db.cpp). Same threading model as the
// template store: one connection, every method holds mu_ for its whole transaction.

#include <fmt/format.h>

#include <algorithm>
#include <mutex>
#include <utility>

#include "facelogin/auth_store.h"
#include "facelogin/store.h"
#include "storage/sqlite_db.h"
#include "storage/store_rules.h"

namespace facelogin {
namespace {

using storage::DbHandle;
using storage::Statement;
using storage::Transaction;

using storage::check_failure_key;
using storage::check_token_hash;
using storage::join_scopes;
using storage::next_failure_state;
using storage::kMaxFieldLength;
using storage::split_scopes;
constexpr std::size_t kMaxDetailLength = 8192;

std::span<const std::uint8_t> bytes(std::string_view s) {
  return {reinterpret_cast<const std::uint8_t*>(s.data()), s.size()};
}

ApiKeyRecord read_api_key(const Statement& stmt) {
  ApiKeyRecord k;
  k.id = stmt.int64(0);
  k.name = stmt.text(1);
  k.scopes = split_scopes(stmt.text(2));
  k.liveness = stmt.text(3);
  k.created_at = stmt.int64(4);
  k.revoked = stmt.int64(5) != 0;
  return k;
}

constexpr const char* kApiKeyColumns =
    "SELECT id, name, scopes, liveness, created_at, revoked FROM api_keys";

SessionRecord read_session(const Statement& stmt) {
  SessionRecord s;
  s.id = stmt.int64(0);
  s.user = stmt.text(1);
  s.kind = stmt.text(2);
  s.created_at = stmt.int64(3);
  s.expires_at = stmt.int64(4);
  s.revoked = stmt.int64(5) != 0;
  s.address = stmt.text(6);
  s.user_agent = stmt.text(7);
  return s;
}

constexpr const char* kSessionColumns =
    "SELECT s.id, u.name, s.kind, s.created_at, s.expires_at, s.revoked, s.address, "
    "s.user_agent FROM sessions s JOIN users u ON u.id = s.user_id";

class SqliteAuthStore final : public AuthStore {
 public:
  explicit SqliteAuthStore(DbHandle db) : db_(std::move(db)) {}

  Result<std::int64_t> create_session(const NewSession& session) override {
    if (Status s = check_token_hash(session.token_hash); !s.ok()) {
      return make_error(std::move(s));
    }
    if (session.kind != "cookie" && session.kind != "bearer") {
      return make_error(ErrorCode::kInvalidArgument, "session kind must be cookie or bearer");
    }
    std::lock_guard lock(mu_);
    auto tx = Transaction::begin(db(), Transaction::Kind::kWrite);
    if (!tx) {
      return make_error(tx.error());
    }
    auto user_id = find_user_id(session.user);
    if (!user_id) {
      return make_error(user_id.error());
    }
    auto insert = Statement::prepare(
        db(),
        "INSERT INTO sessions (token_hash, user_id, kind, created_at, expires_at, revoked, "
        "address, user_agent) VALUES (?1, ?2, ?3, ?4, ?5, 0, ?6, ?7)");
    if (!insert) {
      return make_error(insert.error());
    }
    insert->bind(1, bytes(session.token_hash))
        .bind(2, *user_id)
        .bind(3, session.kind)
        .bind(4, session.created_at)
        .bind(5, session.expires_at)
        .bind(6, clip(session.address))
        .bind(7, clip(session.user_agent));
    if (Status s = insert->run(); !s.ok()) {
      return make_error(std::move(s));
    }
    const std::int64_t id = sqlite3_last_insert_rowid(db());
    if (Status s = tx->commit(); !s.ok()) {
      return make_error(std::move(s));
    }
    return id;
  }

  Result<SessionRecord> find_session(std::string_view token_hash) const override {
    if (Status s = check_token_hash(token_hash); !s.ok()) {
      return make_error(std::move(s));
    }
    std::lock_guard lock(mu_);
    auto stmt =
        Statement::prepare(db(), fmt::format("{} WHERE s.token_hash = ?1", kSessionColumns));
    if (!stmt) {
      return make_error(stmt.error());
    }
    stmt->bind(1, bytes(token_hash));
    auto row = stmt->step();
    if (!row) {
      return make_error(row.error());
    }
    if (!*row) {
      return make_error(ErrorCode::kNotFound, "no such session");
    }
    return read_session(*stmt);
  }

  Status revoke_session(std::string_view user, std::int64_t session_id) override {
    std::lock_guard lock(mu_);
    auto stmt = Statement::prepare(db(),
                                   "UPDATE sessions SET revoked = 1 WHERE id = ?1 AND user_id = "
                                   "(SELECT id FROM users WHERE name = ?2)");
    if (!stmt) {
      return stmt.error();
    }
    stmt->bind(1, session_id).bind(2, user);
    if (Status s = stmt->run(); !s.ok()) {
      return s;
    }
    if (sqlite3_changes(db()) == 0) {
      return Status(ErrorCode::kNotFound,
                    fmt::format("user '{}' has no session {}", user, session_id));
    }
    return Status::Ok();
  }

  Status revoke_user_sessions(std::string_view user) override {
    std::lock_guard lock(mu_);
    auto stmt = Statement::prepare(
        db(),
        "UPDATE sessions SET revoked = 1 WHERE user_id = (SELECT id FROM users WHERE name = ?1)");
    if (!stmt) {
      return stmt.error();
    }
    stmt->bind(1, user);
    return stmt->run();
  }

  Result<std::vector<SessionRecord>> user_sessions(std::string_view user,
                                                   std::int64_t now) const override {
    std::lock_guard lock(mu_);
    auto stmt = Statement::prepare(
        db(), fmt::format("{} WHERE u.name = ?1 AND s.revoked = 0 AND s.expires_at > ?2 "
                          "ORDER BY s.id DESC",
                          kSessionColumns));
    if (!stmt) {
      return make_error(stmt.error());
    }
    stmt->bind(1, user).bind(2, now);
    std::vector<SessionRecord> out;
    for (;;) {
      auto row = stmt->step();
      if (!row) {
        return make_error(row.error());
      }
      if (!*row) {
        break;
      }
      out.push_back(read_session(*stmt));
    }
    return out;
  }

  Result<bool> has_session_from(std::string_view user, std::string_view address,
                                std::int64_t since) const override {
    std::lock_guard lock(mu_);
    auto stmt = Statement::prepare(
        db(),
        "SELECT EXISTS (SELECT 1 FROM sessions s JOIN users u ON u.id = s.user_id "
        "WHERE u.name = ?1 AND s.address = ?2 AND s.created_at >= ?3)");
    if (!stmt) {
      return make_error(stmt.error());
    }
    stmt->bind(1, user).bind(2, address).bind(3, since);
    auto row = stmt->step();
    if (!row) {
      return make_error(row.error());
    }
    return *row && stmt->int64(0) != 0;
  }

  Result<bool> liveness_refused_since(std::string_view user, std::string_view address,
                                      std::int64_t since_ms) const override {
    std::lock_guard lock(mu_);
    // Served by audit_time: only the recent rows are read.
    auto stmt = Statement::prepare(
        db(),
        "SELECT EXISTS (SELECT 1 FROM audit_log WHERE at_ms >= ?1 AND event = 'login' "
        "AND outcome IN ('not_live', 'flat_motion', 'still_image') "
        "AND ((?2 <> '' AND subject = ?2) OR (?3 <> '' AND address = ?3)))");
    if (!stmt) {
      return make_error(stmt.error());
    }
    stmt->bind(1, since_ms).bind(2, user).bind(3, address);
    auto row = stmt->step();
    if (!row) {
      return make_error(row.error());
    }
    return *row && stmt->int64(0) != 0;
  }

  Status append_audit(const AuditEvent& event) override {
    if (event.event.empty() || event.outcome.empty()) {
      return Status(ErrorCode::kInvalidArgument, "an audit event needs an event and an outcome");
    }
    if (event.detail.size() > kMaxDetailLength) {
      return Status(ErrorCode::kInvalidArgument, "audit detail too long");
    }
    std::lock_guard lock(mu_);
    auto stmt = Statement::prepare(
        db(),
        "INSERT INTO audit_log (at_ms, event, actor, subject, address, outcome, detail) VALUES "
        "(?1, ?2, ?3, ?4, ?5, ?6, ?7)");
    if (!stmt) {
      return stmt.error();
    }
    stmt->bind(1, event.at_ms)
        .bind(2, clip(event.event))
        .bind(3, clip(event.actor))
        .bind(4, clip(event.subject))
        .bind(5, clip(event.address))
        .bind(6, clip(event.outcome))
        .bind(7, event.detail.empty() ? std::string_view("{}") : std::string_view(event.detail));
    return stmt->run();
  }

  Result<std::vector<AuditEvent>> list_audit(const AuditQuery& query) const override {
    if (query.limit < 1 || query.limit > 1000) {
      return make_error(ErrorCode::kInvalidArgument, "limit must be 1-1000");
    }
    std::lock_guard lock(mu_);
    auto stmt = Statement::prepare(
        db(),
        "SELECT id, at_ms, event, actor, subject, address, outcome, detail FROM audit_log "
        "WHERE (?1 = '' OR subject = ?1) AND (?2 = 0 OR id < ?2) ORDER BY id DESC LIMIT ?3");
    if (!stmt) {
      return make_error(stmt.error());
    }
    stmt->bind(1, query.subject)
        .bind(2, query.before_id)
        .bind(3, static_cast<std::int64_t>(query.limit));
    std::vector<AuditEvent> out;
    for (;;) {
      auto row = stmt->step();
      if (!row) {
        return make_error(row.error());
      }
      if (!*row) {
        break;
      }
      AuditEvent e;
      e.id = stmt->int64(0);
      e.at_ms = stmt->int64(1);
      e.event = stmt->text(2);
      e.actor = stmt->text(3);
      e.subject = stmt->text(4);
      e.address = stmt->text(5);
      e.outcome = stmt->text(6);
      e.detail = stmt->text(7);
      out.push_back(std::move(e));
    }
    return out;
  }

  Result<FailureState> record_failure(std::string_view key, std::int64_t now_ms,
                                      std::int64_t forget_after_ms,
                                      const LockoutRule& rule) override {
    if (Status s = check_failure_key(key); !s.ok()) {
      return make_error(std::move(s));
    }
    std::lock_guard lock(mu_);
    auto tx = Transaction::begin(db(), Transaction::Kind::kWrite);
    if (!tx) {
      return make_error(tx.error());
    }
    auto current = read_failures(key);
    if (!current) {
      return make_error(current.error());
    }
    const FailureState state =
        next_failure_state(current->first, current->second, now_ms, forget_after_ms, rule);
    auto upsert = Statement::prepare(
        db(),
        "INSERT INTO failures (key, failures, locked_until_ms, updated_ms) VALUES (?1, ?2, ?3, "
        "?4) ON CONFLICT (key) DO UPDATE SET failures = ?2, locked_until_ms = ?3, updated_ms = "
        "?4");
    if (!upsert) {
      return make_error(upsert.error());
    }
    upsert->bind(1, key)
        .bind(2, static_cast<std::int64_t>(state.failures))
        .bind(3, state.locked_until_ms)
        .bind(4, now_ms);
    if (Status s = upsert->run(); !s.ok()) {
      return make_error(std::move(s));
    }
    if (Status s = tx->commit(); !s.ok()) {
      return make_error(std::move(s));
    }
    return state;
  }

  Result<FailureState> failure_state(std::string_view key) const override {
    std::lock_guard lock(mu_);
    auto current = read_failures(key);
    if (!current) {
      return make_error(current.error());
    }
    return current->first;
  }

  Result<RateDecision> take_rate_token(std::string_view key, std::int64_t now_ms,
                                       int per_minute) override {
    if (key.empty() || key.size() > kMaxFieldLength || per_minute < 1) {
      return make_error(ErrorCode::kInvalidArgument,
                        "a rate key must be 1-512 bytes and the rate at least 1 a minute");
    }
    std::lock_guard lock(mu_);
    auto tx = Transaction::begin(db(), Transaction::Kind::kWrite);
    if (!tx) {
      return make_error(tx.error());
    }
    auto select =
        Statement::prepare(db(), "SELECT tokens, updated_ms FROM rate_buckets WHERE key = ?1");
    if (!select) {
      return make_error(select.error());
    }
    select->bind(1, key);
    auto row = select->step();
    if (!row) {
      return make_error(row.error());
    }
    std::optional<RateBucket> bucket;
    if (*row) {
      bucket = RateBucket{select->real(0), select->int64(1)};
    }
    const RateDecision decision = facelogin::take_rate_token(bucket, now_ms, per_minute);
    auto upsert = Statement::prepare(
        db(),
        "INSERT INTO rate_buckets (key, tokens, updated_ms) VALUES (?1, ?2, ?3) "
        "ON CONFLICT (key) DO UPDATE SET tokens = ?2, updated_ms = ?3");
    if (!upsert) {
      return make_error(upsert.error());
    }
    upsert->bind(1, key).bind(2, bucket->tokens).bind(3, bucket->updated_ms);
    if (Status s = upsert->run(); !s.ok()) {
      return make_error(std::move(s));
    }
    // Idle buckets are full again: forget them now and then, so that many addresses cannot
    // grow the table without bound.
    if ((now_ms & 0xff) == 0) {
      auto prune = Statement::prepare(db(), "DELETE FROM rate_buckets WHERE updated_ms < ?1");
      if (!prune) {
        return make_error(prune.error());
      }
      prune->bind(1, now_ms - kRateBucketIdleMs);
      if (Status s = prune->run(); !s.ok()) {
        return make_error(std::move(s));
      }
    }
    if (Status s = tx->commit(); !s.ok()) {
      return make_error(std::move(s));
    }
    return decision;
  }

  Status clear_failures(std::string_view key) override {
    std::lock_guard lock(mu_);
    auto stmt = Statement::prepare(db(), "DELETE FROM failures WHERE key = ?1");
    if (!stmt) {
      return stmt.error();
    }
    stmt->bind(1, key);
    return stmt->run();
  }

  Result<std::int64_t> create_api_key(const ApiKeyRecord& key, std::string_view key_hash) override {
    if (Status s = check_token_hash(key_hash); !s.ok()) {
      return make_error(std::move(s));
    }
    if (Status s = storage::validate_api_key(key); !s.ok()) {
      return make_error(std::move(s));
    }
    std::lock_guard lock(mu_);
    auto stmt = Statement::prepare(
        db(),
        "INSERT INTO api_keys (name, key_hash, scopes, liveness, created_at, revoked) VALUES "
        "(?1, ?2, ?3, ?4, ?5, 0)");
    if (!stmt) {
      return make_error(stmt.error());
    }
    stmt->bind(1, key.name)
        .bind(2, bytes(key_hash))
        .bind(3, join_scopes(key.scopes))
        .bind(4, key.liveness)
        .bind(5, key.created_at);
    if (Status s = stmt->run(); !s.ok()) {
      if (s.code() == ErrorCode::kAlreadyExists) {
        return make_error(ErrorCode::kAlreadyExists,
                          fmt::format("an API key named '{}' exists", key.name));
      }
      return make_error(std::move(s));
    }
    return sqlite3_last_insert_rowid(db());
  }

  Result<ApiKeyRecord> find_api_key(std::string_view key_hash) const override {
    if (Status s = check_token_hash(key_hash); !s.ok()) {
      return make_error(std::move(s));
    }
    std::lock_guard lock(mu_);
    auto stmt = Statement::prepare(db(), fmt::format("{} WHERE key_hash = ?1", kApiKeyColumns));
    if (!stmt) {
      return make_error(stmt.error());
    }
    stmt->bind(1, bytes(key_hash));
    auto row = stmt->step();
    if (!row) {
      return make_error(row.error());
    }
    if (!*row) {
      return make_error(ErrorCode::kNotFound, "no such API key");
    }
    return read_api_key(*stmt);
  }

  Result<std::vector<ApiKeyRecord>> list_api_keys() const override {
    std::lock_guard lock(mu_);
    auto stmt = Statement::prepare(db(), fmt::format("{} ORDER BY name", kApiKeyColumns));
    if (!stmt) {
      return make_error(stmt.error());
    }
    std::vector<ApiKeyRecord> out;
    for (;;) {
      auto row = stmt->step();
      if (!row) {
        return make_error(row.error());
      }
      if (!*row) {
        return out;
      }
      out.push_back(read_api_key(*stmt));
    }
  }

  Status revoke_api_key(std::string_view name) override {
    std::lock_guard lock(mu_);
    auto stmt = Statement::prepare(db(), "UPDATE api_keys SET revoked = 1 WHERE name = ?1");
    if (!stmt) {
      return stmt.error();
    }
    stmt->bind(1, name);
    if (Status s = stmt->run(); !s.ok()) {
      return s;
    }
    if (sqlite3_changes(db()) == 0) {
      return Status(ErrorCode::kNotFound, fmt::format("no API key named '{}'", name));
    }
    return Status::Ok();
  }

  Status set_recovery_code(std::string_view user, std::string_view code_hash) override {
    if (Status s = check_token_hash(code_hash); !s.ok()) {
      return s;
    }
    std::lock_guard lock(mu_);
    auto tx = Transaction::begin(db(), Transaction::Kind::kWrite);
    if (!tx) {
      return tx.error();
    }
    auto user_id = find_user_id(user);
    if (!user_id) {
      return user_id.error();
    }
    auto stmt = Statement::prepare(
        db(),
        "INSERT INTO recovery_codes (user_id, code_hash) VALUES (?1, ?2) ON CONFLICT (user_id) "
        "DO UPDATE SET code_hash = ?2");
    if (!stmt) {
      return stmt.error();
    }
    stmt->bind(1, *user_id).bind(2, bytes(code_hash));
    if (Status s = stmt->run(); !s.ok()) {
      return s;
    }
    return tx->commit();
  }

  Result<bool> consume_recovery_code(std::string_view user, std::string_view code_hash) override {
    if (Status s = check_token_hash(code_hash); !s.ok()) {
      return make_error(std::move(s));
    }
    std::lock_guard lock(mu_);
    // One statement: the hash comparison happens in SQLite on values derived from random codes,
    // so its timing tells an attacker nothing about the code.
    auto stmt = Statement::prepare(db(),
                                   "DELETE FROM recovery_codes WHERE code_hash = ?2 AND user_id = "
                                   "(SELECT id FROM users WHERE name = ?1)");
    if (!stmt) {
      return make_error(stmt.error());
    }
    stmt->bind(1, user).bind(2, bytes(code_hash));
    if (Status s = stmt->run(); !s.ok()) {
      return make_error(std::move(s));
    }
    return sqlite3_changes(db()) > 0;
  }

  Status set_admin(std::string_view user, bool admin) override {
    std::lock_guard lock(mu_);
    auto tx = Transaction::begin(db(), Transaction::Kind::kWrite);
    if (!tx) {
      return tx.error();
    }
    auto user_id = find_user_id(user);
    if (!user_id) {
      return user_id.error();
    }
    auto stmt =
        Statement::prepare(db(), admin ? "INSERT OR IGNORE INTO admins (user_id) VALUES (?1)"
                                       : "DELETE FROM admins WHERE user_id = ?1");
    if (!stmt) {
      return stmt.error();
    }
    stmt->bind(1, *user_id);
    if (Status s = stmt->run(); !s.ok()) {
      return s;
    }
    return tx->commit();
  }

  Result<bool> is_admin(std::string_view user) const override {
    std::lock_guard lock(mu_);
    auto stmt = Statement::prepare(
        db(), "SELECT 1 FROM admins a JOIN users u ON u.id = a.user_id WHERE u.name = ?1");
    if (!stmt) {
      return make_error(stmt.error());
    }
    stmt->bind(1, user);
    return stmt->step();
  }

  Result<std::vector<std::string>> admins() const override {
    std::lock_guard lock(mu_);
    auto stmt = Statement::prepare(
        db(), "SELECT u.name FROM admins a JOIN users u ON u.id = a.user_id ORDER BY u.name");
    if (!stmt) {
      return make_error(stmt.error());
    }
    std::vector<std::string> out;
    for (;;) {
      auto row = stmt->step();
      if (!row) {
        return make_error(row.error());
      }
      if (!*row) {
        return out;
      }
      out.push_back(stmt->text(0));
    }
  }

  Result<std::vector<std::pair<std::string, std::int64_t>>> audit_counts(
      std::int64_t since_ms) const override {
    std::lock_guard lock(mu_);
    auto stmt = Statement::prepare(
        db(),
        "SELECT event || ':' || outcome, count(*) FROM audit_log WHERE at_ms >= ?1 "
        "GROUP BY event, outcome ORDER BY event, outcome");
    if (!stmt) {
      return make_error(stmt.error());
    }
    stmt->bind(1, since_ms);
    std::vector<std::pair<std::string, std::int64_t>> out;
    for (;;) {
      auto row = stmt->step();
      if (!row) {
        return make_error(row.error());
      }
      if (!*row) {
        return out;
      }
      out.emplace_back(stmt->text(0), stmt->int64(1));
    }
  }

 private:
  sqlite3* db() const { return db_.get(); }

  static std::string_view clip(std::string_view s) { return s.substr(0, kMaxFieldLength); }

  Result<std::int64_t> find_user_id(std::string_view name) const {
    auto stmt = Statement::prepare(db(), "SELECT id FROM users WHERE name = ?1");
    if (!stmt) {
      return make_error(stmt.error());
    }
    stmt->bind(1, name);
    auto row = stmt->step();
    if (!row) {
      return make_error(row.error());
    }
    if (!*row) {
      return make_error(ErrorCode::kNotFound, fmt::format("no user '{}'", name));
    }
    return stmt->int64(0);
  }

  // The state of `key` and when it was last updated (zeros when absent).
  Result<std::pair<FailureState, std::int64_t>> read_failures(std::string_view key) const {
    auto stmt = Statement::prepare(
        db(), "SELECT failures, locked_until_ms, updated_ms FROM failures WHERE key = ?1");
    if (!stmt) {
      return make_error(stmt.error());
    }
    stmt->bind(1, key);
    auto row = stmt->step();
    if (!row) {
      return make_error(row.error());
    }
    std::pair<FailureState, std::int64_t> out{};
    if (*row) {
      out.first.failures = static_cast<int>(stmt->int64(0));
      out.first.locked_until_ms = stmt->int64(1);
      out.second = stmt->int64(2);
    }
    return out;
  }

  DbHandle db_;
  mutable std::mutex mu_;
};

}  // namespace

Result<std::unique_ptr<AuthStore>> open_sqlite_auth_store(const std::filesystem::path& path,
                                                          int busy_timeout_ms) {
  auto db = storage::open_database(path, busy_timeout_ms);
  if (!db) {
    return make_error(db.error());
  }
  return std::unique_ptr<AuthStore>(std::make_unique<SqliteAuthStore>(std::move(*db)));
}

}  // namespace facelogin
