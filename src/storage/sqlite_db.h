#pragma once

// The SQLite C API made safe to use (internal to storage): RAII handles, a prepared statement,
// transactions, error mapping, and opening a facelogin database (identification and migrations).
// Every SQLite-backed store (users and templates, accounts and sessions) opens its connection
// here, so the schema has one history.

#include <sqlite3.h>

#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "facelogin/status.h"

namespace facelogin::storage {

// ---------------------------------------------------------------------------------------------
// RAII and error mapping for the SQLite C API.

struct DbCloser {
  void operator()(sqlite3* db) const { sqlite3_close_v2(db); }
};
using DbHandle = std::unique_ptr<sqlite3, DbCloser>;

struct StmtFinalizer {
  void operator()(sqlite3_stmt* stmt) const { sqlite3_finalize(stmt); }
};

// Maps an SQLite result code to a Status: kBusy, kCorrupt, kAlreadyExists, kInvalidArgument,
// kInternal or kIoError, with `what` and SQLite's message.
[[nodiscard]] Status sqlite_status(sqlite3* db, int rc, std::string_view what);

// A prepared statement. Bind errors are remembered and reported by step(), so call sites read as
// one chain.
class Statement {
 public:
  [[nodiscard]] static Result<Statement> prepare(sqlite3* db, std::string_view sql) {
    sqlite3_stmt* raw = nullptr;
    const int rc = sqlite3_prepare_v2(db, sql.data(), static_cast<int>(sql.size()), &raw, nullptr);
    Statement stmt(db, raw);
    if (rc != SQLITE_OK) {
      return make_error(sqlite_status(db, rc, "cannot prepare a statement"));
    }
    return stmt;
  }

  Statement& bind(int index, std::int64_t value) {
    return check(sqlite3_bind_int64(stmt_.get(), index, value));
  }
  Statement& bind(int index, double value) {
    return check(sqlite3_bind_double(stmt_.get(), index, value));
  }
  Statement& bind(int index, std::string_view value) {
    return check(sqlite3_bind_text(stmt_.get(), index, value.data(), static_cast<int>(value.size()),
                                   SQLITE_TRANSIENT));
  }
  Statement& bind(int index, std::span<const std::uint8_t> value) {
    return check(sqlite3_bind_blob(stmt_.get(), index, value.data(), static_cast<int>(value.size()),
                                   SQLITE_TRANSIENT));
  }

  // true: a row is ready; false: done.
  [[nodiscard]] Result<bool> step() {
    if (bind_rc_ != SQLITE_OK) {
      return make_error(sqlite_status(db_, bind_rc_, "cannot bind a parameter"));
    }
    const int rc = sqlite3_step(stmt_.get());
    if (rc == SQLITE_ROW) {
      return true;
    }
    if (rc == SQLITE_DONE) {
      return false;
    }
    return make_error(sqlite_status(db_, rc, "database statement failed"));
  }
  // Runs a statement that returns no rows.
  [[nodiscard]] Status run() {
    auto r = step();
    if (!r) {
      return r.error();
    }
    return Status::Ok();
  }

  // Makes the statement ready to run again with new parameters.
  void reset() {
    sqlite3_reset(stmt_.get());
    sqlite3_clear_bindings(stmt_.get());
    bind_rc_ = SQLITE_OK;
  }

  std::int64_t int64(int col) const { return sqlite3_column_int64(stmt_.get(), col); }
  double real(int col) const { return sqlite3_column_double(stmt_.get(), col); }
  std::string text(int col) const {
    const auto* p = sqlite3_column_text(stmt_.get(), col);
    const int n = sqlite3_column_bytes(stmt_.get(), col);
    return p != nullptr ? std::string(reinterpret_cast<const char*>(p), static_cast<std::size_t>(n))
                        : std::string();
  }
  std::vector<std::uint8_t> blob(int col) const {
    const auto* p = static_cast<const std::uint8_t*>(sqlite3_column_blob(stmt_.get(), col));
    const int n = sqlite3_column_bytes(stmt_.get(), col);
    return p != nullptr ? std::vector<std::uint8_t>(p, p + n) : std::vector<std::uint8_t>();
  }

 private:
  Statement(sqlite3* db, sqlite3_stmt* stmt) : db_(db), stmt_(stmt) {}
  Statement& check(int rc) {
    if (rc != SQLITE_OK && bind_rc_ == SQLITE_OK) {
      bind_rc_ = rc;
    }
    return *this;
  }

  sqlite3* db_;
  std::unique_ptr<sqlite3_stmt, StmtFinalizer> stmt_;
  int bind_rc_ = SQLITE_OK;
};

// Runs SQL without parameters (schema statements, pragmas with constant values).
[[nodiscard]] Status exec(sqlite3* db, const char* sql, std::string_view what);

// One transaction; rolled back on destruction unless commit() succeeded, so an early return
// changes nothing.
class Transaction {
 public:
  enum class Kind {
    kRead,   // BEGIN: a consistent snapshot for reads.
    kWrite,  // BEGIN IMMEDIATE: take the write lock now (waiting up to the busy timeout), so the
             // transaction cannot fail half-way when it first writes.
  };

  [[nodiscard]] static Result<Transaction> begin(sqlite3* db, Kind kind) {
    if (Status s = exec(db, kind == Kind::kWrite ? "BEGIN IMMEDIATE" : "BEGIN",
                        "cannot begin a transaction");
        !s.ok()) {
      return make_error(std::move(s));
    }
    return Transaction(db);
  }

  Transaction(Transaction&& other) noexcept : db_(std::exchange(other.db_, nullptr)) {}
  Transaction& operator=(Transaction&&) = delete;
  ~Transaction() {
    if (db_ != nullptr) {
      sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
    }
  }

  [[nodiscard]] Status commit() {
    Status s = exec(db_, "COMMIT", "cannot commit");
    if (s.ok()) {
      db_ = nullptr;
    }
    return s;
  }

 private:
  explicit Transaction(sqlite3* db) : db_(db) {}
  sqlite3* db_;
};

// Opens (creating with mode 0600 if absent) the facelogin database at `path`: WAL mode, foreign
// keys, secure_delete, defensive mode; refuses a file that is not a facelogin database or has a
// newer schema; applies pending migrations. `in_open_transaction`, if set, runs inside the
// migration transaction (the template store checks its key there, so a wrong key leaves the file
// at its old version). Errors: kIoError, kCorrupt, kBusy, kInvalidArgument.
using DbHandleCheck = std::function<Status(sqlite3*)>;
[[nodiscard]] Result<DbHandle> open_database(const std::filesystem::path& path, int busy_timeout_ms,
                                             const DbHandleCheck& in_open_transaction = {});

// A single integer from a query without parameters.
[[nodiscard]] Result<std::int64_t> query_int(sqlite3* db, std::string_view sql);

}  // namespace facelogin::storage
