#pragma once

// libpq made safe to use (internal to storage): RAII handles, a connection pool, transactions,
// parameterised statements, error mapping, and opening a facelogin schema (identification and
// migrations). Both PostgreSQL stores (users and templates; sessions and the rest) open their
// pool here, so the schema has one history, as sqlite_db.h does for SQLite.
//
// Conventions every caller relies on:
//   - Parameters are typed (int8, float8, bool, text, bytea). Numbers and strings travel in text
//     format; bytea travels in binary format, so ciphertexts and hashes are sent as they are.
//   - Results come back in text format; bytea columns are decoded by PgRows::bytes().
//   - Text columns are COLLATE "C": equality and ORDER BY compare bytes, as SQLite's BINARY
//     collation does, whatever the database's locale.
//   - Error messages use only PostgreSQL's primary message, never its DETAIL (which can quote the
//     values of a row: a token hash, a name) and never the connection string.

#include <libpq-fe.h>

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "facelogin/postgres_store.h"
#include "facelogin/status.h"

namespace facelogin::storage {

// The version recorded in <schema>.schema_version after all migrations. Raise it only by
// appending a migration in pg_db.cpp.
inline constexpr int kPostgresSchemaVersion = 2;

// ---------------------------------------------------------------------------------------------
// RAII for libpq handles.

struct PgConnCloser {
  void operator()(PGconn* conn) const { PQfinish(conn); }
};
using PgConnHandle = std::unique_ptr<PGconn, PgConnCloser>;

struct PgResultClearer {
  void operator()(PGresult* res) const { PQclear(res); }
};
using PgResultHandle = std::unique_ptr<PGresult, PgResultClearer>;

// ---------------------------------------------------------------------------------------------
// Text that PostgreSQL can store. A text value must be valid UTF-8 without NUL bytes (SQLite
// stores any bytes), so free-form fields from clients (user agents, addresses, audit detail) are
// made storable before they are written.

// True if `text` is valid UTF-8 and holds no NUL byte.
[[nodiscard]] bool is_storable_text(std::string_view text);
// `text` with every invalid UTF-8 sequence and every NUL byte replaced by U+FFFD. Storable text
// is returned unchanged.
[[nodiscard]] std::string to_storable_text(std::string_view text);
// The first `max_bytes` bytes of `text` (as SQLite's stores keep), without a character cut in
// half at the end, made storable.
[[nodiscard]] std::string clip_storable_text(std::string_view text, std::size_t max_bytes);

// True for `[A-Za-z_][A-Za-z0-9_]{0,62}` not starting with "pg_" (reserved by PostgreSQL).
[[nodiscard]] bool is_valid_schema_name(std::string_view schema);

// ---------------------------------------------------------------------------------------------
// Parameters and results.

// One statement parameter with its type. Build with the named constructors.
class PgParam {
 public:
  [[nodiscard]] static PgParam int64(std::int64_t value);
  [[nodiscard]] static PgParam float8(double value);
  [[nodiscard]] static PgParam boolean(bool value);
  // Must be storable text (see is_storable_text); PgTransaction::exec refuses a NUL byte with
  // kInvalidArgument, and PostgreSQL refuses invalid UTF-8.
  [[nodiscard]] static PgParam text(std::string_view value);
  [[nodiscard]] static PgParam bytes(std::span<const std::uint8_t> value);
  [[nodiscard]] static PgParam bytes(std::string_view value);

 private:
  friend class PgTransaction;
  PgParam(Oid type, std::string value, int format)
      : type_(type), value_(std::move(value)), format_(format) {}

  Oid type_;
  std::string value_;
  int format_;  // 0: text, 1: binary
};

// The rows of one statement's result (text format). Column accessors take a row and a column
// index; reading a column of another type than the statement selects is a bug.
class PgRows {
 public:
  explicit PgRows(PgResultHandle res) : res_(std::move(res)) {}

  [[nodiscard]] int size() const { return PQntuples(res_.get()); }
  [[nodiscard]] bool empty() const { return size() == 0; }
  // Rows changed by an INSERT, UPDATE or DELETE.
  [[nodiscard]] std::int64_t affected() const;

  [[nodiscard]] bool is_null(int row, int col) const {
    return PQgetisnull(res_.get(), row, col) != 0;
  }
  [[nodiscard]] std::int64_t int64(int row, int col) const;
  [[nodiscard]] double float8(int row, int col) const;
  [[nodiscard]] bool boolean(int row, int col) const;
  [[nodiscard]] std::string text(int row, int col) const;
  [[nodiscard]] std::vector<std::uint8_t> bytes(int row, int col) const;

 private:
  PgResultHandle res_;
};

// ---------------------------------------------------------------------------------------------
// The pool.

struct PgConfig {
  std::string conninfo;
  std::string schema;  // valid (is_valid_schema_name); quoted where it appears in SQL
  int pool_size = 4;
  int connect_timeout_s = 5;
  int statement_timeout_ms = 10'000;
};

// Up to `pool_size` connections, made when first needed. Every connection gets, right after it
// connects: search_path = the schema, statement_timeout, client_encoding UTF8, terse error
// messages and no notices on stderr. A connection that is broken (or not idle) when it is given
// back is closed, and its slot is filled by a new connection on a later acquire().
// Thread-safe.
class PgPool {
 public:
  class Lease;

  explicit PgPool(PgConfig config) : config_(std::move(config)) {}
  ~PgPool() = default;
  PgPool(const PgPool&) = delete;
  PgPool& operator=(const PgPool&) = delete;

  // An idle connection, or a new one if fewer than pool_size are open; otherwise waits for one
  // to be given back. Errors: kUnavailable (cannot connect; the message names host, port and
  // database, never the password), kBusy (every connection stayed busy past the wait limit).
  [[nodiscard]] Result<Lease> acquire();

  [[nodiscard]] int size() const { return config_.pool_size; }
  [[nodiscard]] const PgConfig& config() const { return config_; }

  // "database D on host H port P" for messages; works on a connection that failed to connect.
  [[nodiscard]] static std::string describe(const PGconn* conn);

 private:
  [[nodiscard]] Result<PgConnHandle> connect() const;
  void release(PgConnHandle conn, bool broken);

  const PgConfig config_;
  std::mutex mu_;  // guards idle_ and open_
  std::condition_variable freed_;
  std::vector<PgConnHandle> idle_;
  int open_ = 0;  // connections in idle_ plus those lent out
};

// A connection lent by the pool; gives it back on destruction. Move-only.
class PgPool::Lease {
 public:
  Lease(Lease&& other) noexcept
      : pool_(std::exchange(other.pool_, nullptr)),
        conn_(std::move(other.conn_)),
        fresh_(other.fresh_),
        broken_(other.broken_) {}
  Lease& operator=(Lease&&) = delete;
  ~Lease() {
    if (pool_ != nullptr) {
      pool_->release(std::move(conn_), broken_);
    }
  }

  [[nodiscard]] PGconn* get() const { return conn_.get(); }
  // True if the connection was made for this lease (not reused from the idle list).
  [[nodiscard]] bool fresh() const { return fresh_; }
  // The connection is not to be reused (it broke, or its state is unknown).
  void mark_broken() { broken_ = true; }

 private:
  friend class PgPool;
  Lease(PgPool* pool, PgConnHandle conn, bool fresh)
      : pool_(pool), conn_(std::move(conn)), fresh_(fresh) {}

  PgPool* pool_;
  PgConnHandle conn_;
  bool fresh_;
  bool broken_ = false;
};

// ---------------------------------------------------------------------------------------------
// Transactions.

// Maps a failed result (or a broken connection) to a Status: kUnavailable (connection lost or
// refused, server shutting down), kAlreadyExists (23505), kNotFound (23503), kBusy
// (serialization failure, deadlock, lock or statement timeout), kInvalidArgument (text that is
// not valid UTF-8), kIoError (anything else). The message is `what`, PostgreSQL's primary message
// and the SQLSTATE.
[[nodiscard]] Status pg_status(const PGconn* conn, const PGresult* res, std::string_view what);

// One transaction on one pooled connection; rolled back on destruction unless commit()
// succeeded, so an early return changes nothing. Move-only; used by one thread at a time.
class PgTransaction {
 public:
  enum class Kind {
    kRead,   // REPEATABLE READ READ ONLY: one snapshot for every statement of the call.
    kWrite,  // READ COMMITTED: each statement sees what others committed before it (so that
             // SELECT ... FOR UPDATE reads the latest row); conflicts are settled by row locks
             // and unique indexes.
  };

  // Takes a connection from the pool and begins. A pooled connection found broken at BEGIN (the
  // server restarted since it was last used) is discarded and another one tried, since nothing
  // has happened yet; so after a restart the first call already succeeds. Errors as
  // PgPool::acquire and pg_status.
  [[nodiscard]] static Result<PgTransaction> begin(PgPool& pool, Kind kind);

  PgTransaction(PgTransaction&& other) noexcept
      : lease_(std::move(other.lease_)), open_(std::exchange(other.open_, false)) {}
  PgTransaction& operator=(PgTransaction&&) = delete;
  ~PgTransaction();

  // Runs one statement (no ';'-separated lists) with `params` as $1, $2, ... `what` says what
  // failed in an error message ("cannot read the user").
  [[nodiscard]] Result<PgRows> exec(const char* sql, std::initializer_list<PgParam> params,
                                    std::string_view what);
  [[nodiscard]] Result<PgRows> exec(const std::string& sql, std::initializer_list<PgParam> params,
                                    std::string_view what) {
    return exec(sql.c_str(), params, what);
  }
  // Runs statements without parameters, several separated by ';' (schema migrations).
  [[nodiscard]] Status run_script(const char* sql, std::string_view what);

  [[nodiscard]] Status commit();

  // "database D on host H port P" of this transaction's connection.
  [[nodiscard]] std::string describe() const { return PgPool::describe(lease_.get()); }

 private:
  explicit PgTransaction(PgPool::Lease lease) : lease_(std::move(lease)), open_(true) {}
  Status fail(const PGresult* res, std::string_view what);

  PgPool::Lease lease_;
  bool open_;
};

// ---------------------------------------------------------------------------------------------
// Opening.

// Checks the options, connects, creates the schema if absent, refuses a schema that is not
// facelogin's or is newer than this program, and applies pending migrations: all in one
// transaction holding an advisory lock, so that processes starting at once migrate one at a
// time. `in_open_transaction`, if set, runs in that transaction (the template store checks its
// key there). The returned pool keeps the migration's connection.
// Errors: kInvalidArgument (bad options), kUnavailable, kCorrupt, kBusy, kIoError.
using PgOpenCheck = std::function<Status(PgTransaction&)>;
[[nodiscard]] Result<std::unique_ptr<PgPool>> open_postgres_database(
    const PostgresOptions& options, const PgOpenCheck& in_open_transaction = {});

}  // namespace facelogin::storage
