// Opening a facelogin PostgreSQL schema and the helpers both PostgreSQL stores share.

#include "storage/pg_db.h"

#include <fmt/format.h>

#include <charconv>
#include <chrono>
#include <climits>
#include <cstring>

namespace facelogin::storage {
namespace {

// Type OIDs of the parameters we send (fixed by PostgreSQL, pg_type.dat). Naming the type means
// the server never has to infer it, e.g. for `$1 = ''`.
constexpr Oid kBoolOid = 16;
constexpr Oid kByteaOid = 17;
constexpr Oid kInt8Oid = 20;
constexpr Oid kTextOid = 25;
constexpr Oid kFloat8Oid = 701;

// The advisory lock every facelogin migrator holds ("FLGNMIGR"); pg_advisory_xact_lock releases
// it when the transaction ends, however it ends.
constexpr std::int64_t kMigrationLock = 0x464C474E4D494752;

// The schema's history. Each entry takes a schema from version - 1 to version, and runs in the
// transaction that opens the store. Never edit an entry once released; append a new one.
//
// Version 1 is SQLite's version 4 in PostgreSQL types: bigint timestamps (Unix seconds or ms, as
// SQLite, so both backends return the same values), boolean flags, bytea for ciphertexts and
// hashes, identity ids (a sequence never gives a number twice, as AUTOINCREMENT), text COLLATE
// "C" (bytewise, as SQLite's BINARY). lower() under "C" folds ASCII only, as SQLite's NOCASE.
// failures.key and rate_buckets.key are bytea: a key is built from what a client sent and may be
// any bytes, which a text column would refuse.
struct Migration {
  int version;
  const char* sql;
};

constexpr Migration kMigrations[] = {
    {1, R"sql(
      CREATE TABLE schema_version (
        application text COLLATE "C" PRIMARY KEY CHECK (application = 'facelogin'),
        version integer NOT NULL
      );
      CREATE TABLE users (
        id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        name text COLLATE "C" NOT NULL UNIQUE,
        created_at bigint NOT NULL,
        disabled boolean NOT NULL DEFAULT false
      );
      CREATE UNIQUE INDEX users_name_nocase ON users (lower(name));
      CREATE TABLE templates (
        id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        user_id bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
        model_id text COLLATE "C" NOT NULL,
        created_at bigint NOT NULL,
        quality double precision NOT NULL,
        ciphertext bytea NOT NULL
      );
      CREATE INDEX templates_user ON templates (user_id);
      CREATE INDEX templates_model ON templates (model_id, user_id);
      CREATE TABLE meta (
        key text COLLATE "C" PRIMARY KEY,
        value bytea NOT NULL
      );
      CREATE TABLE sessions (
        id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        token_hash bytea NOT NULL UNIQUE,
        user_id bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
        kind text COLLATE "C" NOT NULL CHECK (kind IN ('cookie', 'bearer')),
        created_at bigint NOT NULL,
        expires_at bigint NOT NULL,
        revoked boolean NOT NULL DEFAULT false,
        address text COLLATE "C" NOT NULL,
        user_agent text COLLATE "C" NOT NULL
      );
      CREATE INDEX sessions_user ON sessions (user_id, expires_at);
      CREATE TABLE audit_log (
        id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        at_ms bigint NOT NULL,
        event text COLLATE "C" NOT NULL,
        actor text COLLATE "C" NOT NULL,
        subject text COLLATE "C" NOT NULL,
        address text COLLATE "C" NOT NULL,
        outcome text COLLATE "C" NOT NULL,
        detail text COLLATE "C" NOT NULL
      );
      CREATE INDEX audit_subject ON audit_log (subject, id);
      CREATE INDEX audit_time ON audit_log (at_ms);
      CREATE TABLE failures (
        key bytea PRIMARY KEY,
        failures integer NOT NULL,
        locked_until_ms bigint NOT NULL,
        updated_ms bigint NOT NULL
      );
      CREATE TABLE recovery_codes (
        user_id bigint PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
        code_hash bytea NOT NULL
      );
      CREATE TABLE admins (
        user_id bigint PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE
      );
      CREATE TABLE api_keys (
        id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        name text COLLATE "C" NOT NULL UNIQUE,
        key_hash bytea NOT NULL UNIQUE,
        scopes text COLLATE "C" NOT NULL,
        liveness text COLLATE "C" NOT NULL,
        created_at bigint NOT NULL,
        revoked boolean NOT NULL DEFAULT false
      );
      CREATE TABLE rate_buckets (
        key bytea PRIMARY KEY,
        tokens double precision NOT NULL,
        updated_ms bigint NOT NULL
      );
      CREATE INDEX rate_buckets_updated ON rate_buckets (updated_ms);
    )sql"},
    // A change counter of what 1:N search sees (as SQLite's version 5), kept by triggers; the
    // function names the trigger's own schema, so a session with another search_path (an
    // operator's psql) still counts its changes.
    {2, R"sql(
      CREATE TABLE store_generation (
        id integer PRIMARY KEY CHECK (id = 1),
        value bigint NOT NULL
      );
      INSERT INTO store_generation (id, value) VALUES (1, 0);
      CREATE FUNCTION bump_store_generation() RETURNS trigger LANGUAGE plpgsql AS $fn$
      BEGIN
        EXECUTE format('UPDATE %I.store_generation SET value = value + 1 WHERE id = 1',
                       TG_TABLE_SCHEMA);
        RETURN NULL;
      END
      $fn$;
      CREATE TRIGGER templates_changed AFTER INSERT OR DELETE ON templates
        FOR EACH STATEMENT EXECUTE FUNCTION bump_store_generation();
      CREATE TRIGGER users_enabled_or_disabled AFTER UPDATE OF disabled ON users
        FOR EACH STATEMENT EXECUTE FUNCTION bump_store_generation();
    )sql"},
};

constexpr bool migrations_are_ordered() {
  int expected = 1;
  for (const Migration& m : kMigrations) {
    if (m.version != expected++) {
      return false;
    }
  }
  return expected - 1 == kPostgresSchemaVersion;
}
static_assert(migrations_are_ordered(), "migrations must be numbered 1..kPostgresSchemaVersion");

// The length of the valid UTF-8 sequence (not NUL) that starts at text[i], or 0.
std::size_t utf8_sequence_length(std::string_view text, std::size_t i) {
  const auto lead = static_cast<unsigned char>(text[i]);
  if (lead == 0) {
    return 0;
  }
  if (lead < 0x80) {
    return 1;
  }
  std::size_t length = 0;
  std::uint32_t code = 0;
  std::uint32_t min_code = 0;
  if ((lead & 0xE0) == 0xC0) {
    length = 2;
    code = lead & 0x1Fu;
    min_code = 0x80;
  } else if ((lead & 0xF0) == 0xE0) {
    length = 3;
    code = lead & 0x0Fu;
    min_code = 0x800;
  } else if ((lead & 0xF8) == 0xF0) {
    length = 4;
    code = lead & 0x07u;
    min_code = 0x10000;
  } else {
    return 0;
  }
  if (text.size() - i < length) {
    return 0;
  }
  for (std::size_t k = 1; k < length; ++k) {
    const auto next = static_cast<unsigned char>(text[i + k]);
    if ((next & 0xC0) != 0x80) {
      return 0;
    }
    code = (code << 6) | (next & 0x3Fu);
  }
  // Overlong forms, surrogates and values past U+10FFFF are not UTF-8 (PostgreSQL agrees).
  if (code < min_code || code > 0x10FFFF || (code >= 0xD800 && code <= 0xDFFF)) {
    return 0;
  }
  return length;
}

// The first line of a libpq message, without its "ERROR:  "/"FATAL:  " prefix.
std::string first_line(const char* message) {
  std::string_view text = message != nullptr ? message : "";
  text = text.substr(0, text.find('\n'));
  for (std::string_view prefix : {"ERROR:  ", "FATAL:  "}) {
    if (text.starts_with(prefix)) {
      text.remove_prefix(prefix.size());
    }
  }
  return text.empty() ? std::string("no message from libpq") : std::string(text);
}

bool sqlstate_is(std::string_view state, std::initializer_list<std::string_view> codes) {
  for (std::string_view code : codes) {
    if (state == code) {
      return true;
    }
  }
  return false;
}

// True if libpq would read `conninfo` as a connection string or URI (rather than as a plain
// database name), so that PQconninfoParse can check it.
bool is_conninfo_syntax(std::string_view conninfo) {
  return conninfo.find('=') != std::string_view::npos || conninfo.starts_with("postgresql://") ||
         conninfo.starts_with("postgres://");
}

std::string quote_identifier(std::string_view identifier) {
  // Only for identifiers that passed is_valid_schema_name: they hold no '"'.
  return fmt::format("\"{}\"", identifier);
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Text.

bool is_storable_text(std::string_view text) {
  for (std::size_t i = 0; i < text.size();) {
    const std::size_t n = utf8_sequence_length(text, i);
    if (n == 0) {
      return false;
    }
    i += n;
  }
  return true;
}

std::string to_storable_text(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (std::size_t i = 0; i < text.size();) {
    const std::size_t n = utf8_sequence_length(text, i);
    if (n == 0) {
      out += "\xEF\xBF\xBD";  // U+FFFD REPLACEMENT CHARACTER
      ++i;
    } else {
      out.append(text.substr(i, n));
      i += n;
    }
  }
  return out;
}

std::string clip_storable_text(std::string_view text, std::size_t max_bytes) {
  if (text.size() > max_bytes) {
    text = text.substr(0, max_bytes);
    // Drop a multi-byte character that the cut left unfinished: it started at one of the last
    // three bytes and claims more bytes than remain.
    for (std::size_t back = 1; back <= 3 && back <= text.size(); ++back) {
      const auto c = static_cast<unsigned char>(text[text.size() - back]);
      if ((c & 0xC0) == 0x80) {
        continue;  // a continuation byte: the lead is further back
      }
      const std::size_t claimed = (c & 0xE0) == 0xC0   ? 2
                                  : (c & 0xF0) == 0xE0 ? 3
                                  : (c & 0xF8) == 0xF0 ? 4
                                                       : 1;
      if (claimed > back) {
        text = text.substr(0, text.size() - back);
      }
      break;
    }
  }
  return to_storable_text(text);
}

bool is_valid_schema_name(std::string_view schema) {
  if (schema.empty() || schema.size() > 63 || schema.starts_with("pg_")) {
    return false;
  }
  for (std::size_t i = 0; i < schema.size(); ++i) {
    const char c = schema[i];
    const bool letter = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '_';
    const bool digit = c >= '0' && c <= '9';
    if (!letter && !(digit && i > 0)) {
      return false;
    }
  }
  return true;
}

// ---------------------------------------------------------------------------------------------
// Parameters and results.

PgParam PgParam::int64(std::int64_t value) { return PgParam(kInt8Oid, std::to_string(value), 0); }

PgParam PgParam::float8(double value) {
  // fmt's shortest representation reads back as the same double.
  return PgParam(kFloat8Oid, fmt::format("{}", value), 0);
}

PgParam PgParam::boolean(bool value) { return PgParam(kBoolOid, value ? "t" : "f", 0); }

PgParam PgParam::text(std::string_view value) { return PgParam(kTextOid, std::string(value), 0); }

PgParam PgParam::bytes(std::span<const std::uint8_t> value) {
  return PgParam(kByteaOid, std::string(reinterpret_cast<const char*>(value.data()), value.size()),
                 1);
}

PgParam PgParam::bytes(std::string_view value) { return PgParam(kByteaOid, std::string(value), 1); }

std::int64_t PgRows::affected() const {
  const char* tuples = PQcmdTuples(res_.get());
  std::int64_t n = 0;
  std::from_chars(tuples, tuples + std::strlen(tuples), n);
  return n;
}

std::int64_t PgRows::int64(int row, int col) const {
  const char* p = PQgetvalue(res_.get(), row, col);
  std::int64_t v = 0;
  std::from_chars(p, p + PQgetlength(res_.get(), row, col), v);
  return v;
}

double PgRows::float8(int row, int col) const {
  const char* p = PQgetvalue(res_.get(), row, col);
  double v = 0;
  std::from_chars(p, p + PQgetlength(res_.get(), row, col), v);
  return v;
}

bool PgRows::boolean(int row, int col) const { return PQgetvalue(res_.get(), row, col)[0] == 't'; }

std::string PgRows::text(int row, int col) const {
  return std::string(PQgetvalue(res_.get(), row, col),
                     static_cast<std::size_t>(PQgetlength(res_.get(), row, col)));
}

std::vector<std::uint8_t> PgRows::bytes(int row, int col) const {
  const std::string_view value(PQgetvalue(res_.get(), row, col),
                               static_cast<std::size_t>(PQgetlength(res_.get(), row, col)));
  auto hex = [](char c) -> int {
    if (c >= '0' && c <= '9') {
      return c - '0';
    }
    if (c >= 'a' && c <= 'f') {
      return c - 'a' + 10;
    }
    if (c >= 'A' && c <= 'F') {
      return c - 'A' + 10;
    }
    return -1;
  };
  std::vector<std::uint8_t> out;
  // Every connection sets bytea_output = 'hex': "\x" and two digits a byte.
  if (value.starts_with("\\x") && value.size() % 2 == 0) {
    out.reserve(value.size() / 2 - 1);
    for (std::size_t i = 2; i < value.size(); i += 2) {
      const int high = hex(value[i]);
      const int low = hex(value[i + 1]);
      if (high < 0 || low < 0) {
        out.clear();
        break;
      }
      out.push_back(static_cast<std::uint8_t>(high * 16 + low));
    }
    if (out.size() == value.size() / 2 - 1) {
      return out;
    }
  }
  // Anything else (the older escape format): libpq's decoder.
  std::size_t length = 0;
  unsigned char* raw =
      PQunescapeBytea(reinterpret_cast<const unsigned char*>(value.data()), &length);
  if (raw != nullptr) {
    out.assign(raw, raw + length);
    PQfreemem(raw);
  } else {
    out.clear();
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Errors.

Status pg_status(const PGconn* conn, const PGresult* res, std::string_view what) {
  const char* state_field = res != nullptr ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : nullptr;
  const std::string_view state = state_field != nullptr ? state_field : "";
  const char* primary = res != nullptr ? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : nullptr;
  // Only the primary message: PostgreSQL's DETAIL can quote row values (hashes, names).
  const std::string message = primary != nullptr ? std::string(primary)
                              : conn != nullptr  ? first_line(PQerrorMessage(conn))
                                                 : std::string("out of memory");

  const bool connection_lost = conn == nullptr || PQstatus(conn) != CONNECTION_OK;
  if (connection_lost || state.starts_with("08") ||
      sqlstate_is(state, {"57P01", "57P02", "57P03", "53300"})) {
    return Status(
        ErrorCode::kUnavailable,
        fmt::format("{}: PostgreSQL is unavailable ({}{}{}): {}", what, PgPool::describe(conn),
                    state.empty() ? "" : ", SQLSTATE ", state, message));
  }
  const std::string full = fmt::format("{}: {} (SQLSTATE {})", what, message,
                                       state.empty() ? std::string_view("none") : state);
  if (state == "23505") {
    return Status(ErrorCode::kAlreadyExists, full);
  }
  if (state == "23503") {
    return Status(ErrorCode::kNotFound, full);
  }
  if (sqlstate_is(state, {"40001", "40P01", "55P03", "57014"})) {
    return Status(ErrorCode::kBusy, "database is busy: " + full);
  }
  if (state == "22021") {  // character_not_in_repertoire: not valid UTF-8
    return Status(ErrorCode::kInvalidArgument, full);
  }
  return Status(ErrorCode::kIoError, full);
}

// ---------------------------------------------------------------------------------------------
// The pool.

std::string PgPool::describe(const PGconn* conn) {
  auto field = [](const char* value) { return value != nullptr ? value : ""; };
  if (conn == nullptr) {
    return "no connection";
  }
  return fmt::format("database {} on host {} port {}", field(PQdb(conn)), field(PQhost(conn)),
                     field(PQport(conn)));
}

Result<PgConnHandle> PgPool::connect() const {
  // The conninfo is expanded as "dbname"; the entries after it override what it says.
  // client_encoding is fixed so that the bytes we send are read as UTF-8 whatever PGCLIENTENCODING
  // says; fallback_application_name names us in pg_stat_activity unless the conninfo does.
  // The TCP keepalive and user timeout come before it, as defaults the conninfo may change: a
  // database host that vanishes without closing the connection (a network partition) then
  // fails calls within seconds (kUnavailable) instead of blocking workers until TCP gives up.
  const std::string timeout = std::to_string(config_.connect_timeout_s);
  const char* const keywords[] = {"fallback_application_name", "keepalives", "keepalives_idle",
                                  "keepalives_interval", "keepalives_count", "tcp_user_timeout",
                                  "dbname", "connect_timeout", "client_encoding", nullptr};
  const char* const values[] = {"facelogin", "1", "10", "5", "3", "15000",
                                config_.conninfo.c_str(), timeout.c_str(), "UTF8", nullptr};
  PgConnHandle conn(PQconnectdbParams(keywords, values, 1));
  if (conn == nullptr) {
    return make_error(ErrorCode::kUnavailable, "cannot connect to PostgreSQL: out of memory");
  }
  if (PQstatus(conn.get()) != CONNECTION_OK) {
    return make_error(ErrorCode::kUnavailable,
                      fmt::format("cannot connect to PostgreSQL ({}): {}", describe(conn.get()),
                                  first_line(PQerrorMessage(conn.get()))));
  }
  // Terse: messages without DETAIL (row values). No notice processor: notices ("schema exists,
  // skipping") would go to our stderr.
  PQsetErrorVerbosity(conn.get(), PQERRORS_TERSE);
  PQsetNoticeProcessor(
      conn.get(), [](void*, const char*) {}, nullptr);

  // search_path holds only our schema (pg_catalog is searched first implicitly, so nothing in
  // the schema can stand in for a built-in function). extra_float_digits and bytea_output make
  // the text results exact and in the format PgRows reads, whatever the server's defaults are.
  const std::string setup = fmt::format(
      "SET search_path TO {}; SET statement_timeout = {}; SET extra_float_digits = 3; "
      "SET bytea_output = 'hex'",
      quote_identifier(config_.schema), config_.statement_timeout_ms);
  PgResultHandle res(PQexec(conn.get(), setup.c_str()));
  if (PQresultStatus(res.get()) != PGRES_COMMAND_OK) {
    return make_error(pg_status(conn.get(), res.get(), "cannot set up a PostgreSQL connection"));
  }
  return conn;
}

Result<PgPool::Lease> PgPool::acquire() {
  std::unique_lock lock(mu_);
  auto available = [this] { return !idle_.empty() || open_ < config_.pool_size; };
  if (config_.statement_timeout_ms > 0) {
    // A lent connection comes back within a few statement timeouts (every statement is bounded by
    // one); waiting much longer than that means something is stuck, and the caller should hear.
    const auto limit = std::chrono::milliseconds(3 * std::int64_t{config_.statement_timeout_ms}) +
                       std::chrono::seconds(config_.connect_timeout_s);
    if (!freed_.wait_for(lock, limit, available)) {
      return make_error(ErrorCode::kBusy,
                        fmt::format("database is busy: all {} PostgreSQL connections of this "
                                    "store stayed in use for {} ms",
                                    config_.pool_size, limit.count()));
    }
  } else {
    freed_.wait(lock, available);
  }
  if (!idle_.empty()) {
    PgConnHandle conn = std::move(idle_.back());
    idle_.pop_back();
    return Lease(this, std::move(conn), false);
  }
  ++open_;  // the slot is ours while we connect, outside the lock
  lock.unlock();
  auto conn = connect();
  if (!conn) {
    lock.lock();
    --open_;
    lock.unlock();
    freed_.notify_one();
    return make_error(conn.error());
  }
  return Lease(this, std::move(*conn), true);
}

void PgPool::release(PgConnHandle conn, bool broken) {
  const bool reusable = !broken && conn != nullptr && PQstatus(conn.get()) == CONNECTION_OK &&
                        PQtransactionStatus(conn.get()) == PQTRANS_IDLE;
  {
    std::lock_guard lock(mu_);
    if (reusable) {
      idle_.push_back(std::move(conn));
    } else {
      --open_;
    }
  }
  freed_.notify_one();
  // A connection not kept is closed here, outside the lock.
}

// ---------------------------------------------------------------------------------------------
// Transactions.

Result<PgTransaction> PgTransaction::begin(PgPool& pool, Kind kind) {
  const char* sql =
      kind == Kind::kRead ? "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY" : "BEGIN";
  for (int attempt = 0;; ++attempt) {
    auto lease = pool.acquire();
    if (!lease) {
      return make_error(lease.error());
    }
    PgResultHandle res(PQexec(lease->get(), sql));
    if (PQresultStatus(res.get()) == PGRES_COMMAND_OK) {
      return PgTransaction(std::move(*lease));
    }
    Status s = pg_status(lease->get(), res.get(), "cannot begin a transaction");
    if (s.code() == ErrorCode::kUnavailable) {
      lease->mark_broken();
    }
    // Retrying is safe: nothing ran. A new connection that fails is a real outage, and at most
    // pool_size idle connections can be stale.
    if (s.code() != ErrorCode::kUnavailable || lease->fresh() || attempt >= pool.size()) {
      return make_error(std::move(s));
    }
  }
}

PgTransaction::~PgTransaction() {
  if (open_ && lease_.get() != nullptr) {
    PgResultHandle res(PQexec(lease_.get(), "ROLLBACK"));
    if (PQresultStatus(res.get()) != PGRES_COMMAND_OK) {
      lease_.mark_broken();
    }
  }
}

Status PgTransaction::fail(const PGresult* res, std::string_view what) {
  Status s = pg_status(lease_.get(), res, what);
  if (s.code() == ErrorCode::kUnavailable) {
    lease_.mark_broken();
  }
  return s;
}

Result<PgRows> PgTransaction::exec(const char* sql, std::initializer_list<PgParam> params,
                                   std::string_view what) {
  std::vector<Oid> types;
  std::vector<const char*> values;
  std::vector<int> lengths;
  std::vector<int> formats;
  types.reserve(params.size());
  values.reserve(params.size());
  lengths.reserve(params.size());
  formats.reserve(params.size());
  for (const PgParam& p : params) {
    // libpq reads a text-format value up to its first NUL: a value with one inside would be cut
    // short silently (and "alice\0x" would match alice).
    if (p.format_ == 0 && p.value_.find('\0') != std::string::npos) {
      return make_error(ErrorCode::kInvalidArgument,
                        fmt::format("{}: a text value holds a NUL byte", what));
    }
    if (p.value_.size() > static_cast<std::size_t>(INT_MAX)) {
      return make_error(ErrorCode::kInvalidArgument, fmt::format("{}: a value is too large", what));
    }
    types.push_back(p.type_);
    values.push_back(p.value_.c_str());
    lengths.push_back(static_cast<int>(p.value_.size()));
    formats.push_back(p.format_);
  }
  PgResultHandle res(PQexecParams(lease_.get(), sql, static_cast<int>(params.size()), types.data(),
                                  values.data(), lengths.data(), formats.data(), 0));
  const ExecStatusType status = PQresultStatus(res.get());
  if (status != PGRES_COMMAND_OK && status != PGRES_TUPLES_OK) {
    return make_error(fail(res.get(), what));
  }
  return PgRows(std::move(res));
}

Status PgTransaction::run_script(const char* sql, std::string_view what) {
  PgResultHandle res(PQexec(lease_.get(), sql));
  const ExecStatusType status = PQresultStatus(res.get());
  if (status != PGRES_COMMAND_OK && status != PGRES_TUPLES_OK) {
    return fail(res.get(), what);
  }
  return Status::Ok();
}

Status PgTransaction::commit() {
  PgResultHandle res(PQexec(lease_.get(), "COMMIT"));
  if (PQresultStatus(res.get()) != PGRES_COMMAND_OK) {
    // The transaction is over either way (or the connection is gone): nothing to roll back. If
    // the connection broke during COMMIT, whether it committed is unknown: the caller hears
    // kUnavailable, never success.
    open_ = false;
    return fail(res.get(), "cannot commit");
  }
  open_ = false;
  // COMMIT of a transaction that had failed answers "ROLLBACK"; callers return at the first
  // error, so this is a bug, but never report such a transaction as committed.
  if (std::string_view(PQcmdStatus(res.get())) != "COMMIT") {
    return Status(ErrorCode::kInternal, "the transaction was rolled back instead of committed");
  }
  return Status::Ok();
}

// ---------------------------------------------------------------------------------------------
// Opening: identification and migrations.

namespace {

// The version of the facelogin schema, 0 if the schema is empty; kCorrupt if it holds tables
// that are not facelogin's, or a version this program cannot open.
Result<int> read_version(PgTransaction& tx, const std::string& schema, const std::string& where) {
  auto objects = tx.exec(
      "SELECT count(*), count(*) FILTER (WHERE c.relname = 'schema_version' AND c.relkind = 'r' "
      "AND (SELECT count(*) FROM pg_catalog.pg_attribute a WHERE a.attrelid = c.oid "
      "AND a.attname IN ('application', 'version') AND NOT a.attisdropped) = 2) "
      "FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
      "WHERE n.nspname = $1",
      {PgParam::text(schema)}, "cannot list the tables of the schema");
  if (!objects) {
    return make_error(objects.error());
  }
  if (objects->int64(0, 0) == 0) {
    return 0;
  }
  const auto not_ours = [&] {
    return make_error(ErrorCode::kCorrupt,
                      fmt::format("schema {} of {} holds tables that are not facelogin's; refusing "
                                  "to touch it (choose another schema)",
                                  schema, where));
  };
  // Ours: a schema_version table with our columns, and our row in it.
  if (objects->int64(0, 1) == 0) {
    return not_ours();
  }
  auto version = tx.exec("SELECT version FROM schema_version WHERE application = 'facelogin'", {},
                         "cannot read the schema version");
  if (!version) {
    return make_error(version.error());
  }
  if (version->size() != 1) {
    return not_ours();
  }
  const std::int64_t v = version->int64(0, 0);
  if (v > kPostgresSchemaVersion) {
    return make_error(ErrorCode::kCorrupt,
                      fmt::format("schema {} of {} has schema version {}, written by a newer "
                                  "facelogin (this one knows version {}); use a newer facelogin",
                                  schema, where, v, kPostgresSchemaVersion));
  }
  if (v < 1) {
    return make_error(ErrorCode::kCorrupt, fmt::format("schema {} of {} has an invalid schema "
                                                       "version {}",
                                                       schema, where, v));
  }
  return static_cast<int>(v);
}

Status migrate(PgTransaction& tx, int from_version) {
  for (const Migration& m : kMigrations) {
    if (m.version <= from_version) {
      continue;
    }
    if (Status s =
            tx.run_script(m.sql, fmt::format("cannot migrate the schema to version {}", m.version));
        !s.ok()) {
      return s;
    }
    auto set = tx.exec(
        "INSERT INTO schema_version (application, version) VALUES ('facelogin', $1) "
        "ON CONFLICT (application) DO UPDATE SET version = excluded.version",
        {PgParam::int64(m.version)}, "cannot set the schema version");
    if (!set) {
      return set.error();
    }
  }
  return Status::Ok();
}

}  // namespace

Result<std::unique_ptr<PgPool>> open_postgres_database(const PostgresOptions& options,
                                                       const PgOpenCheck& in_open_transaction) {
  if (!is_valid_schema_name(options.schema)) {
    // Not echoed: it may hold anything.
    return make_error(ErrorCode::kInvalidArgument,
                      "the PostgreSQL schema name must be 1-63 letters, digits and '_', not "
                      "starting with a digit or \"pg_\"");
  }
  if (options.pool_size < 1 || options.pool_size > 1000) {
    return make_error(ErrorCode::kInvalidArgument, "pool_size must be 1-1000");
  }
  if (options.connect_timeout_s < 0 || options.statement_timeout_ms < 0) {
    return make_error(ErrorCode::kInvalidArgument,
                      "connect_timeout_s and statement_timeout_ms must not be negative");
  }
  if (is_conninfo_syntax(options.conninfo)) {
    // Checked here because libpq's syntax errors quote the text around the mistake, which may be
    // the password; ours does not.
    char* error = nullptr;
    PQconninfoOption* parsed = PQconninfoParse(options.conninfo.c_str(), &error);
    const bool ok = parsed != nullptr;
    PQconninfoFree(parsed);
    PQfreemem(error);
    if (!ok) {
      return make_error(ErrorCode::kInvalidArgument,
                        "the PostgreSQL connection string is malformed (see \"Connection "
                        "Strings\" in the libpq manual; it is not repeated here because it may "
                        "hold a password)");
    }
  }

  auto pool =
      std::make_unique<PgPool>(PgConfig{options.conninfo, options.schema, options.pool_size,
                                        options.connect_timeout_s, options.statement_timeout_ms});
  auto tx = PgTransaction::begin(*pool, PgTransaction::Kind::kWrite);
  if (!tx) {
    return make_error(tx.error());
  }
  const std::string where = tx->describe();
  // One migrator at a time: the lock is held until this transaction ends. The schema is created
  // and identified under it, so a second process waits and then finds the first one's work.
  if (auto lock = tx->exec("SELECT pg_catalog.pg_advisory_xact_lock($1)",
                           {PgParam::int64(kMigrationLock)}, "cannot take the migration lock");
      !lock) {
    return make_error(lock.error());
  }
  auto exists = tx->exec("SELECT 1 FROM pg_catalog.pg_namespace WHERE nspname = $1",
                         {PgParam::text(options.schema)}, "cannot look up the schema");
  if (!exists) {
    return make_error(exists.error());
  }
  // Created only when absent, as CREATE SCHEMA IF NOT EXISTS needs the CREATE privilege on the
  // database even when the schema exists (a DBA may have made it for us).
  if (exists->empty()) {
    if (Status s = tx->run_script(
            fmt::format("CREATE SCHEMA {}", quote_identifier(options.schema)).c_str(),
            fmt::format("cannot create schema {}", options.schema));
        !s.ok()) {
      return make_error(std::move(s));
    }
  }
  auto version = read_version(*tx, options.schema, where);
  if (!version) {
    return make_error(version.error());
  }
  if (Status s = migrate(*tx, *version); !s.ok()) {
    return make_error(std::move(s));
  }
  if (in_open_transaction) {
    if (Status s = in_open_transaction(*tx); !s.ok()) {
      return make_error(std::move(s));
    }
  }
  if (Status s = tx->commit(); !s.ok()) {
    return make_error(std::move(s));
  }
  return pool;
}

}  // namespace facelogin::storage
