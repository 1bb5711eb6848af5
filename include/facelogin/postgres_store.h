#pragma once

// The PostgreSQL backend of Store and AuthStore (issue 5): several `facelogin serve` processes on
// one database behave as one system, because every piece of state (users, templates, sessions,
// lockout counters, audit, API keys, recovery codes) lives in it.
//
// libpq (Debian libpq-dev); templates travel as binary parameters (bytea), encrypted exactly as
// in SQLite (AES-256-GCM bound to the user id and model id; the key never reaches the database).
// Each store keeps a small pool of connections; a connection that breaks (the database
// restarted) is replaced on the next call, and a call that fails meanwhile returns kUnavailable,
// never a partial result.

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "facelogin/auth_store.h"
#include "facelogin/status.h"
#include "facelogin/store.h"

namespace facelogin {

struct PostgresOptions {
  // A libpq connection string or URI: "postgresql://facelogin@db.example/facelogin" or
  // "host=127.0.0.1 port=5432 dbname=facelogin user=facelogin". Passwords belong in ~/.pgpass or
  // PGPASSWORD, not here: this string may appear in messages with its password removed.
  std::string conninfo;
  // The schema holding facelogin's tables (created if absent), so that facelogin can share a
  // database with other applications. Letters, digits and '_' only.
  std::string schema = "facelogin";
  // Template key material (32 bytes), as SqliteStoreOptions::key. Not used by the AuthStore.
  std::string key;
  int pool_size = 4;            // connections kept open per store object
  int connect_timeout_s = 5;    // per connection attempt
  int statement_timeout_ms = 10'000;
  // The current time in Unix seconds (UTC), for created_at. Empty: the system clock.
  std::function<std::int64_t()> now;
};

// True for a conninfo that names PostgreSQL ("postgresql://", "postgres://", or key=value
// pairs containing "dbname=" or "host="), so that one --database option can take a file path
// or a PostgreSQL connection.
[[nodiscard]] bool is_postgres_conninfo(const std::string& text);

// Connects, creates the schema if needed and migrates it to the current version (one migrator at
// a time across processes, by an advisory lock). Errors: kUnavailable (cannot connect: the
// message names host and database, never a password), kCorrupt (a schema newer than this program
// knows, or not facelogin's), kInvalidArgument (bad schema name or key size).
[[nodiscard]] Result<std::unique_ptr<Store>> open_postgres_store(const PostgresOptions& options);
[[nodiscard]] Result<std::unique_ptr<AuthStore>> open_postgres_auth_store(
    const PostgresOptions& options);

// Drops options.schema with everything in it (throw-away schemas of tests and `loadtest`).
// Errors: kInvalidArgument (bad schema name), kUnavailable (cannot connect), kIoError.
[[nodiscard]] Status drop_postgres_schema(const PostgresOptions& options);

}  // namespace facelogin
