// The PostgreSQL implementation of AuthStore: sessions, audit log, failure counters, admins, API
// keys and recovery codes, with the same results and error codes as SqliteAuthStore
// (sqlite_auth_store.cpp), in the tables of schema version kPostgresSchemaVersion (pg_db.cpp).
// Same threading model as the PostgreSQL template store: each call is one transaction on one
// pooled connection.
//
// Text differs from SQLite's in one way: PostgreSQL stores only UTF-8 without NUL bytes. Fields
// written from what clients send (addresses, user agents, audit fields) are made storable (an
// invalid byte becomes U+FFFD) rather than refused, so that a strange User-Agent never makes a
// login fail; a user name that cannot be stored cannot name a user, so it is treated as unknown.

#include <fmt/format.h>

#include <algorithm>
#include <optional>
#include <utility>

#include "facelogin/auth_store.h"
#include "facelogin/postgres_store.h"
#include "facelogin/store.h"
#include "storage/pg_db.h"
#include "storage/store_rules.h"

namespace facelogin {
namespace {

using storage::PgParam;
using storage::PgPool;
using storage::PgRows;
using storage::PgTransaction;

using storage::check_failure_key;
using storage::check_token_hash;
using storage::join_scopes;
using storage::next_failure_state;
using storage::kMaxFieldLength;
using storage::split_scopes;
constexpr std::size_t kMaxDetailLength = 8192;

// A field from a client, cut to the length SQLite's store keeps and made storable.
std::string clip(std::string_view s) { return storage::clip_storable_text(s, kMaxFieldLength); }

// True if `name` could be a stored user name. Every stored name passed validate_user_name, so a
// name PostgreSQL cannot even compare (not UTF-8, or with a NUL) names no one.
bool could_be_user(std::string_view name) { return storage::is_storable_text(name); }

constexpr const char* kApiKeyColumns =
    "SELECT id, name, scopes, liveness, created_at, revoked FROM api_keys";

ApiKeyRecord read_api_key(const PgRows& rows, int row) {
  ApiKeyRecord k;
  k.id = rows.int64(row, 0);
  k.name = rows.text(row, 1);
  k.scopes = split_scopes(rows.text(row, 2));
  k.liveness = rows.text(row, 3);
  k.created_at = rows.int64(row, 4);
  k.revoked = rows.boolean(row, 5);
  return k;
}

constexpr const char* kSessionColumns =
    "SELECT s.id, u.name, s.kind, s.created_at, s.expires_at, s.revoked, s.address, "
    "s.user_agent FROM sessions s JOIN users u ON u.id = s.user_id";

SessionRecord read_session(const PgRows& rows, int row) {
  SessionRecord s;
  s.id = rows.int64(row, 0);
  s.user = rows.text(row, 1);
  s.kind = rows.text(row, 2);
  s.created_at = rows.int64(row, 3);
  s.expires_at = rows.int64(row, 4);
  s.revoked = rows.boolean(row, 5);
  s.address = rows.text(row, 6);
  s.user_agent = rows.text(row, 7);
  return s;
}

Status no_user(std::string_view name) {
  return Status(ErrorCode::kNotFound, fmt::format("no user '{}'", name));
}

class PostgresAuthStore final : public AuthStore {
 public:
  explicit PostgresAuthStore(std::unique_ptr<PgPool> pool) : pool_(std::move(pool)) {}

  Result<std::int64_t> create_session(const NewSession& session) override {
    if (Status s = check_token_hash(session.token_hash); !s.ok()) {
      return make_error(std::move(s));
    }
    if (session.kind != "cookie" && session.kind != "bearer") {
      return make_error(ErrorCode::kInvalidArgument, "session kind must be cookie or bearer");
    }
    if (!could_be_user(session.user)) {
      return make_error(no_user(session.user));
    }
    auto tx = begin(PgTransaction::Kind::kWrite);
    if (!tx) {
      return make_error(tx.error());
    }
    auto user_id = find_user_id(*tx, session.user);
    if (!user_id) {
      return make_error(user_id.error());
    }
    auto insert = tx->exec(
        "INSERT INTO sessions (token_hash, user_id, kind, created_at, expires_at, revoked, "
        "address, user_agent) VALUES ($1, $2, $3, $4, $5, false, $6, $7) RETURNING id",
        {PgParam::bytes(session.token_hash), PgParam::int64(*user_id), PgParam::text(session.kind),
         PgParam::int64(session.created_at), PgParam::int64(session.expires_at),
         PgParam::text(clip(session.address)), PgParam::text(clip(session.user_agent))},
        "cannot create the session");
    if (!insert) {
      // kNotFound: the user was removed since find_user_id (foreign key).
      return make_error(insert.error().code() == ErrorCode::kNotFound ? no_user(session.user)
                                                                      : insert.error());
    }
    const std::int64_t id = insert->int64(0, 0);
    if (Status s = tx->commit(); !s.ok()) {
      return make_error(std::move(s));
    }
    return id;
  }

  Result<SessionRecord> find_session(std::string_view token_hash) const override {
    if (Status s = check_token_hash(token_hash); !s.ok()) {
      return make_error(std::move(s));
    }
    auto tx = begin(PgTransaction::Kind::kRead);
    if (!tx) {
      return make_error(tx.error());
    }
    auto rows = tx->exec(fmt::format("{} WHERE s.token_hash = $1", kSessionColumns),
                         {PgParam::bytes(token_hash)}, "cannot read the session");
    if (!rows) {
      return make_error(rows.error());
    }
    if (rows->empty()) {
      return make_error(ErrorCode::kNotFound, "no such session");
    }
    SessionRecord session = read_session(*rows, 0);
    if (Status s = tx->commit(); !s.ok()) {
      return make_error(std::move(s));
    }
    return session;
  }

  Status revoke_session(std::string_view user, std::int64_t session_id) override {
    const Status none(ErrorCode::kNotFound,
                      fmt::format("user '{}' has no session {}", user, session_id));
    if (!could_be_user(user)) {
      return none;
    }
    auto tx = begin(PgTransaction::Kind::kWrite);
    if (!tx) {
      return tx.error();
    }
    auto updated = tx->exec(
        "UPDATE sessions SET revoked = true WHERE id = $1 AND user_id = "
        "(SELECT id FROM users WHERE name = $2)",
        {PgParam::int64(session_id), PgParam::text(user)}, "cannot revoke the session");
    if (!updated) {
      return updated.error();
    }
    if (updated->affected() == 0) {
      return none;
    }
    return tx->commit();
  }

  Status revoke_user_sessions(std::string_view user) override {
    if (!could_be_user(user)) {
      return Status::Ok();
    }
    auto tx = begin(PgTransaction::Kind::kWrite);
    if (!tx) {
      return tx.error();
    }
    auto updated = tx->exec(
        "UPDATE sessions SET revoked = true WHERE user_id = "
        "(SELECT id FROM users WHERE name = $1)",
        {PgParam::text(user)}, "cannot revoke the sessions");
    if (!updated) {
      return updated.error();
    }
    return tx->commit();
  }

  Result<std::vector<SessionRecord>> user_sessions(std::string_view user,
                                                   std::int64_t now) const override {
    if (!could_be_user(user)) {
      return std::vector<SessionRecord>{};
    }
    auto tx = begin(PgTransaction::Kind::kRead);
    if (!tx) {
      return make_error(tx.error());
    }
    auto rows = tx->exec(fmt::format("{} WHERE u.name = $1 AND NOT s.revoked AND s.expires_at > $2 "
                                     "ORDER BY s.id DESC",
                                     kSessionColumns),
                         {PgParam::text(user), PgParam::int64(now)}, "cannot list the sessions");
    if (!rows) {
      return make_error(rows.error());
    }
    std::vector<SessionRecord> out;
    out.reserve(static_cast<std::size_t>(rows->size()));
    for (int r = 0; r < rows->size(); ++r) {
      out.push_back(read_session(*rows, r));
    }
    if (Status s = tx->commit(); !s.ok()) {
      return make_error(std::move(s));
    }
    return out;
  }

  Result<bool> has_session_from(std::string_view user, std::string_view address,
                                std::int64_t since) const override {
    if (!could_be_user(user)) {
      return false;
    }
    auto tx = begin(PgTransaction::Kind::kRead);
    if (!tx) {
      return make_error(tx.error());
    }
    auto rows = tx->exec(
        "SELECT 1 FROM sessions s JOIN users u ON u.id = s.user_id "
        "WHERE u.name = $1 AND s.address = $2 AND s.created_at >= $3 LIMIT 1",
        {PgParam::text(user), PgParam::text(address), PgParam::int64(since)},
        "cannot look up the sessions");
    if (!rows) {
      return make_error(rows.error());
    }
    const bool found = rows->size() > 0;
    if (Status s = tx->commit(); !s.ok()) {
      return make_error(std::move(s));
    }
    return found;
  }

  Result<bool> liveness_refused_since(std::string_view user, std::string_view address,
                                      std::int64_t since_ms) const override {
    auto tx = begin(PgTransaction::Kind::kRead);
    if (!tx) {
      return make_error(tx.error());
    }
    auto rows = tx->exec(
        "SELECT 1 FROM audit_log WHERE at_ms >= $1 AND event = 'login' "
        "AND outcome IN ('not_live', 'flat_motion', 'still_image') "
        "AND (($2 <> '' AND subject = $2) OR ($3 <> '' AND address = $3)) LIMIT 1",
        {PgParam::int64(since_ms), PgParam::text(user), PgParam::text(address)},
        "cannot read the audit log");
    if (!rows) {
      return make_error(rows.error());
    }
    const bool found = rows->size() > 0;
    if (Status s = tx->commit(); !s.ok()) {
      return make_error(std::move(s));
    }
    return found;
  }

  Status append_audit(const AuditEvent& event) override {
    if (event.event.empty() || event.outcome.empty()) {
      return Status(ErrorCode::kInvalidArgument, "an audit event needs an event and an outcome");
    }
    if (event.detail.size() > kMaxDetailLength) {
      return Status(ErrorCode::kInvalidArgument, "audit detail too long");
    }
    auto tx = begin(PgTransaction::Kind::kWrite);
    if (!tx) {
      return tx.error();
    }
    auto insert = tx->exec(
        "INSERT INTO audit_log (at_ms, event, actor, subject, address, outcome, detail) VALUES "
        "($1, $2, $3, $4, $5, $6, $7)",
        {PgParam::int64(event.at_ms), PgParam::text(clip(event.event)),
         PgParam::text(clip(event.actor)), PgParam::text(clip(event.subject)),
         PgParam::text(clip(event.address)), PgParam::text(clip(event.outcome)),
         PgParam::text(event.detail.empty() ? std::string("{}")
                                            : storage::to_storable_text(event.detail))},
        "cannot append to the audit log");
    if (!insert) {
      return insert.error();
    }
    return tx->commit();
  }

  Result<std::vector<AuditEvent>> list_audit(const AuditQuery& query) const override {
    if (query.limit < 1 || query.limit > 1000) {
      return make_error(ErrorCode::kInvalidArgument, "limit must be 1-1000");
    }
    auto tx = begin(PgTransaction::Kind::kRead);
    if (!tx) {
      return make_error(tx.error());
    }
    // The subject made storable as append_audit stored it, so that it finds the same events.
    auto rows = tx->exec(
        "SELECT id, at_ms, event, actor, subject, address, outcome, detail FROM audit_log "
        "WHERE ($1 = '' OR subject = $1) AND ($2 = 0 OR id < $2) ORDER BY id DESC LIMIT $3",
        {PgParam::text(storage::to_storable_text(query.subject)), PgParam::int64(query.before_id),
         PgParam::int64(query.limit)},
        "cannot read the audit log");
    if (!rows) {
      return make_error(rows.error());
    }
    std::vector<AuditEvent> out;
    out.reserve(static_cast<std::size_t>(rows->size()));
    for (int r = 0; r < rows->size(); ++r) {
      AuditEvent e;
      e.id = rows->int64(r, 0);
      e.at_ms = rows->int64(r, 1);
      e.event = rows->text(r, 2);
      e.actor = rows->text(r, 3);
      e.subject = rows->text(r, 4);
      e.address = rows->text(r, 5);
      e.outcome = rows->text(r, 6);
      e.detail = rows->text(r, 7);
      out.push_back(std::move(e));
    }
    if (Status s = tx->commit(); !s.ok()) {
      return make_error(std::move(s));
    }
    return out;
  }

  Result<FailureState> record_failure(std::string_view key, std::int64_t now_ms,
                                      std::int64_t forget_after_ms,
                                      const LockoutRule& rule) override {
    if (Status s = check_failure_key(key); !s.ok()) {
      return make_error(std::move(s));
    }
    auto tx = begin(PgTransaction::Kind::kWrite);
    if (!tx) {
      return make_error(tx.error());
    }
    // One statement inserts the row (as zeros, which is what an absent row reads as) or locks the
    // existing one and returns its latest committed values: a second counter of the same key waits
    // here until the first commits, then reads its result, so no failure is lost however many
    // servers count at once. The no-op DO UPDATE is what takes the row lock.
    auto current = tx->exec(
        "INSERT INTO failures AS f (key, failures, locked_until_ms, updated_ms) "
        "VALUES ($1, 0, 0, 0) ON CONFLICT (key) DO UPDATE SET failures = f.failures "
        "RETURNING failures, locked_until_ms, updated_ms",
        {PgParam::bytes(key)}, "cannot count a failure");
    if (!current) {
      return make_error(current.error());
    }
    FailureState stored;
    stored.failures = static_cast<int>(current->int64(0, 0));
    stored.locked_until_ms = current->int64(0, 1);
    const FailureState state =
        next_failure_state(stored, current->int64(0, 2), now_ms, forget_after_ms, rule);
    auto update = tx->exec(
        "UPDATE failures SET failures = $2, locked_until_ms = $3, updated_ms = $4 WHERE key = $1",
        {PgParam::bytes(key), PgParam::int64(state.failures), PgParam::int64(state.locked_until_ms),
         PgParam::int64(now_ms)},
        "cannot count a failure");
    if (!update) {
      return make_error(update.error());
    }
    if (Status s = tx->commit(); !s.ok()) {
      return make_error(std::move(s));
    }
    return state;
  }

  Result<FailureState> failure_state(std::string_view key) const override {
    auto tx = begin(PgTransaction::Kind::kRead);
    if (!tx) {
      return make_error(tx.error());
    }
    auto rows = tx->exec("SELECT failures, locked_until_ms FROM failures WHERE key = $1",
                         {PgParam::bytes(key)}, "cannot read a failure counter");
    if (!rows) {
      return make_error(rows.error());
    }
    FailureState state;
    if (!rows->empty()) {
      state.failures = static_cast<int>(rows->int64(0, 0));
      state.locked_until_ms = rows->int64(0, 1);
    }
    if (Status s = tx->commit(); !s.ok()) {
      return make_error(std::move(s));
    }
    return state;
  }

  Result<RateDecision> take_rate_token(std::string_view key, std::int64_t now_ms,
                                       int per_minute) override {
    if (key.empty() || key.size() > kMaxFieldLength || per_minute < 1) {
      return make_error(ErrorCode::kInvalidArgument,
                        "a rate key must be 1-512 bytes and the rate at least 1 a minute");
    }
    auto tx = begin(PgTransaction::Kind::kWrite);
    if (!tx) {
      return make_error(tx.error());
    }
    // As in record_failure: one statement inserts a placeholder or locks the existing bucket, so
    // servers taking from one bucket at once take one after the other. The placeholder has
    // tokens -1, which no real bucket has (a token is taken only when there is a whole one), and
    // stands for "no bucket yet".
    auto current = tx->exec(
        "INSERT INTO rate_buckets AS b (key, tokens, updated_ms) VALUES ($1, -1, $2) "
        "ON CONFLICT (key) DO UPDATE SET tokens = b.tokens RETURNING tokens, updated_ms",
        {PgParam::bytes(key), PgParam::int64(now_ms)}, "cannot take a rate token");
    if (!current) {
      return make_error(current.error());
    }
    std::optional<RateBucket> bucket;
    if (const double tokens = current->float8(0, 0); tokens >= 0) {
      bucket = RateBucket{tokens, current->int64(0, 1)};
    }
    const RateDecision decision = facelogin::take_rate_token(bucket, now_ms, per_minute);
    auto update = tx->exec(
        "UPDATE rate_buckets SET tokens = $2, updated_ms = $3 WHERE key = $1",
        {PgParam::bytes(key), PgParam::float8(bucket->tokens), PgParam::int64(bucket->updated_ms)},
        "cannot take a rate token");
    if (!update) {
      return make_error(update.error());
    }
    // Idle buckets are full again: forget them now and then, so that many addresses cannot grow
    // the table without bound (the same rule as SQLite's store).
    if ((now_ms & 0xff) == 0) {
      auto prune =
          tx->exec("DELETE FROM rate_buckets WHERE updated_ms < $1",
                   {PgParam::int64(now_ms - kRateBucketIdleMs)}, "cannot prune the rate buckets");
      if (!prune) {
        return make_error(prune.error());
      }
    }
    if (Status s = tx->commit(); !s.ok()) {
      return make_error(std::move(s));
    }
    return decision;
  }

  Status clear_failures(std::string_view key) override {
    auto tx = begin(PgTransaction::Kind::kWrite);
    if (!tx) {
      return tx.error();
    }
    auto deleted = tx->exec("DELETE FROM failures WHERE key = $1", {PgParam::bytes(key)},
                            "cannot clear a failure counter");
    if (!deleted) {
      return deleted.error();
    }
    return tx->commit();
  }

  Result<std::int64_t> create_api_key(const ApiKeyRecord& key, std::string_view key_hash) override {
    if (Status s = check_token_hash(key_hash); !s.ok()) {
      return make_error(std::move(s));
    }
    if (Status s = storage::validate_api_key(key); !s.ok()) {
      return make_error(std::move(s));
    }
    auto tx = begin(PgTransaction::Kind::kWrite);
    if (!tx) {
      return make_error(tx.error());
    }
    auto insert = tx->exec(
        "INSERT INTO api_keys (name, key_hash, scopes, liveness, created_at, revoked) VALUES "
        "($1, $2, $3, $4, $5, false) RETURNING id",
        {PgParam::text(key.name), PgParam::bytes(key_hash), PgParam::text(join_scopes(key.scopes)),
         PgParam::text(key.liveness), PgParam::int64(key.created_at)},
        "cannot create the API key");
    if (!insert) {
      if (insert.error().code() == ErrorCode::kAlreadyExists) {
        return make_error(ErrorCode::kAlreadyExists,
                          fmt::format("an API key named '{}' exists", key.name));
      }
      return make_error(insert.error());
    }
    const std::int64_t id = insert->int64(0, 0);
    if (Status s = tx->commit(); !s.ok()) {
      return make_error(std::move(s));
    }
    return id;
  }

  Result<ApiKeyRecord> find_api_key(std::string_view key_hash) const override {
    if (Status s = check_token_hash(key_hash); !s.ok()) {
      return make_error(std::move(s));
    }
    auto tx = begin(PgTransaction::Kind::kRead);
    if (!tx) {
      return make_error(tx.error());
    }
    auto rows = tx->exec(fmt::format("{} WHERE key_hash = $1", kApiKeyColumns),
                         {PgParam::bytes(key_hash)}, "cannot read the API key");
    if (!rows) {
      return make_error(rows.error());
    }
    if (rows->empty()) {
      return make_error(ErrorCode::kNotFound, "no such API key");
    }
    ApiKeyRecord key = read_api_key(*rows, 0);
    if (Status s = tx->commit(); !s.ok()) {
      return make_error(std::move(s));
    }
    return key;
  }

  Result<std::vector<ApiKeyRecord>> list_api_keys() const override {
    auto tx = begin(PgTransaction::Kind::kRead);
    if (!tx) {
      return make_error(tx.error());
    }
    auto rows =
        tx->exec(fmt::format("{} ORDER BY name", kApiKeyColumns), {}, "cannot list the API keys");
    if (!rows) {
      return make_error(rows.error());
    }
    std::vector<ApiKeyRecord> out;
    out.reserve(static_cast<std::size_t>(rows->size()));
    for (int r = 0; r < rows->size(); ++r) {
      out.push_back(read_api_key(*rows, r));
    }
    if (Status s = tx->commit(); !s.ok()) {
      return make_error(std::move(s));
    }
    return out;
  }

  Status revoke_api_key(std::string_view name) override {
    const Status none(ErrorCode::kNotFound, fmt::format("no API key named '{}'", name));
    if (!storage::is_storable_text(name)) {
      return none;  // API key names follow the user name rules
    }
    auto tx = begin(PgTransaction::Kind::kWrite);
    if (!tx) {
      return tx.error();
    }
    auto updated = tx->exec("UPDATE api_keys SET revoked = true WHERE name = $1",
                            {PgParam::text(name)}, "cannot revoke the API key");
    if (!updated) {
      return updated.error();
    }
    if (updated->affected() == 0) {
      return none;
    }
    return tx->commit();
  }

  Status set_recovery_code(std::string_view user, std::string_view code_hash) override {
    if (Status s = check_token_hash(code_hash); !s.ok()) {
      return s;
    }
    if (!could_be_user(user)) {
      return no_user(user);
    }
    auto tx = begin(PgTransaction::Kind::kWrite);
    if (!tx) {
      return tx.error();
    }
    auto user_id = find_user_id(*tx, user);
    if (!user_id) {
      return user_id.error();
    }
    auto upsert = tx->exec(
        "INSERT INTO recovery_codes (user_id, code_hash) VALUES ($1, $2) ON CONFLICT (user_id) "
        "DO UPDATE SET code_hash = excluded.code_hash",
        {PgParam::int64(*user_id), PgParam::bytes(code_hash)}, "cannot store the recovery code");
    if (!upsert) {
      return upsert.error().code() == ErrorCode::kNotFound ? no_user(user) : upsert.error();
    }
    return tx->commit();
  }

  Result<bool> consume_recovery_code(std::string_view user, std::string_view code_hash) override {
    if (Status s = check_token_hash(code_hash); !s.ok()) {
      return make_error(std::move(s));
    }
    if (!could_be_user(user)) {
      return false;
    }
    auto tx = begin(PgTransaction::Kind::kWrite);
    if (!tx) {
      return make_error(tx.error());
    }
    // One statement, so two servers using the same code at once cannot both succeed: the second
    // DELETE waits for the first's row lock and then finds the row gone. The comparison happens
    // in PostgreSQL on hashes of random codes, so its timing tells an attacker nothing.
    auto deleted = tx->exec(
        "DELETE FROM recovery_codes WHERE code_hash = $2 AND user_id = "
        "(SELECT id FROM users WHERE name = $1) RETURNING user_id",
        {PgParam::text(user), PgParam::bytes(code_hash)}, "cannot use the recovery code");
    if (!deleted) {
      return make_error(deleted.error());
    }
    const bool used = !deleted->empty();
    if (Status s = tx->commit(); !s.ok()) {
      return make_error(std::move(s));
    }
    return used;
  }

  Status set_admin(std::string_view user, bool admin) override {
    if (!could_be_user(user)) {
      return no_user(user);
    }
    auto tx = begin(PgTransaction::Kind::kWrite);
    if (!tx) {
      return tx.error();
    }
    auto user_id = find_user_id(*tx, user);
    if (!user_id) {
      return user_id.error();
    }
    auto changed =
        tx->exec(admin ? "INSERT INTO admins (user_id) VALUES ($1) ON CONFLICT DO NOTHING"
                       : "DELETE FROM admins WHERE user_id = $1",
                 {PgParam::int64(*user_id)}, "cannot change the admin flag");
    if (!changed) {
      return changed.error().code() == ErrorCode::kNotFound ? no_user(user) : changed.error();
    }
    return tx->commit();
  }

  Result<bool> is_admin(std::string_view user) const override {
    if (!could_be_user(user)) {
      return false;
    }
    auto tx = begin(PgTransaction::Kind::kRead);
    if (!tx) {
      return make_error(tx.error());
    }
    auto rows =
        tx->exec("SELECT 1 FROM admins a JOIN users u ON u.id = a.user_id WHERE u.name = $1",
                 {PgParam::text(user)}, "cannot read the admin flag");
    if (!rows) {
      return make_error(rows.error());
    }
    const bool admin = !rows->empty();
    if (Status s = tx->commit(); !s.ok()) {
      return make_error(std::move(s));
    }
    return admin;
  }

  Result<std::vector<std::string>> admins() const override {
    auto tx = begin(PgTransaction::Kind::kRead);
    if (!tx) {
      return make_error(tx.error());
    }
    auto rows =
        tx->exec("SELECT u.name FROM admins a JOIN users u ON u.id = a.user_id ORDER BY u.name", {},
                 "cannot list the admins");
    if (!rows) {
      return make_error(rows.error());
    }
    std::vector<std::string> out;
    out.reserve(static_cast<std::size_t>(rows->size()));
    for (int r = 0; r < rows->size(); ++r) {
      out.push_back(rows->text(r, 0));
    }
    if (Status s = tx->commit(); !s.ok()) {
      return make_error(std::move(s));
    }
    return out;
  }

  Result<std::vector<std::pair<std::string, std::int64_t>>> audit_counts(
      std::int64_t since_ms) const override {
    auto tx = begin(PgTransaction::Kind::kRead);
    if (!tx) {
      return make_error(tx.error());
    }
    auto rows = tx->exec(
        "SELECT event || ':' || outcome, count(*) FROM audit_log WHERE at_ms >= $1 "
        "GROUP BY event, outcome ORDER BY event, outcome",
        {PgParam::int64(since_ms)}, "cannot count the audit events");
    if (!rows) {
      return make_error(rows.error());
    }
    std::vector<std::pair<std::string, std::int64_t>> out;
    out.reserve(static_cast<std::size_t>(rows->size()));
    for (int r = 0; r < rows->size(); ++r) {
      out.emplace_back(rows->text(r, 0), rows->int64(r, 1));
    }
    if (Status s = tx->commit(); !s.ok()) {
      return make_error(std::move(s));
    }
    return out;
  }

 private:
  Result<PgTransaction> begin(PgTransaction::Kind kind) const {
    return PgTransaction::begin(*pool_, kind);
  }

  static Result<std::int64_t> find_user_id(PgTransaction& tx, std::string_view name) {
    auto rows = tx.exec("SELECT id FROM users WHERE name = $1", {PgParam::text(name)},
                        "cannot look up the user");
    if (!rows) {
      return make_error(rows.error());
    }
    if (rows->empty()) {
      return make_error(no_user(name));
    }
    return rows->int64(0, 0);
  }

  const std::unique_ptr<PgPool> pool_;
};

// True if `keyword` appears in `text` as the key of a key=value pair: at the start or after
// white space, followed by optional spaces and '='.
bool has_keyword(std::string_view text, std::string_view keyword) {
  for (std::size_t at = text.find(keyword); at != std::string_view::npos;
       at = text.find(keyword, at + 1)) {
    if (at > 0 && text[at - 1] != ' ' && text[at - 1] != '\t' && text[at - 1] != '\n') {
      continue;
    }
    std::size_t after = at + keyword.size();
    while (after < text.size() && (text[after] == ' ' || text[after] == '\t')) {
      ++after;
    }
    if (after < text.size() && text[after] == '=') {
      return true;
    }
  }
  return false;
}

}  // namespace

bool is_postgres_conninfo(const std::string& text) {
  const std::string_view view = text;
  if (view.starts_with("postgresql://") || view.starts_with("postgres://")) {
    return true;
  }
  return has_keyword(view, "dbname") || has_keyword(view, "host");
}

Result<std::unique_ptr<AuthStore>> open_postgres_auth_store(const PostgresOptions& options) {
  auto pool = storage::open_postgres_database(options);
  if (!pool) {
    return make_error(pool.error());
  }
  return std::unique_ptr<AuthStore>(std::make_unique<PostgresAuthStore>(std::move(*pool)));
}

}  // namespace facelogin
