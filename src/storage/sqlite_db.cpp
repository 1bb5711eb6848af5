// Opening a facelogin SQLite database and the helpers every SQLite store shares.

#include "storage/sqlite_db.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <mutex>

#include "storage/file_util.h"
#include "storage/sqlite_schema.h"

namespace facelogin::storage {
namespace {

namespace fs = std::filesystem;

// The schema's history. Each entry takes a database from version - 1 to version, and runs in the
// transaction that opens the store. Never edit an entry once released; append a new one.
struct Migration {
  int version;
  const char* sql;
};

constexpr Migration kMigrations[] = {
    {1, R"sql(
      CREATE TABLE users (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        name TEXT NOT NULL UNIQUE,
        created_at INTEGER NOT NULL
      );
      CREATE UNIQUE INDEX users_name_nocase ON users (name COLLATE NOCASE);
      CREATE TABLE templates (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        user_id INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
        model_id TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        quality REAL NOT NULL,
        ciphertext BLOB NOT NULL
      );
      CREATE INDEX templates_user ON templates (user_id);
      CREATE TABLE meta (
        key TEXT PRIMARY KEY NOT NULL,
        value BLOB NOT NULL
      ) WITHOUT ROWID;
    )sql"},
    {2, R"sql(
      ALTER TABLE users ADD COLUMN disabled INTEGER NOT NULL DEFAULT 0 CHECK (disabled IN (0, 1));
      CREATE INDEX templates_model ON templates (model_id, user_id);
    )sql"},
    {3, R"sql(
      CREATE TABLE sessions (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        token_hash BLOB NOT NULL UNIQUE,
        user_id INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
        kind TEXT NOT NULL CHECK (kind IN ('cookie', 'bearer')),
        created_at INTEGER NOT NULL,
        expires_at INTEGER NOT NULL,
        revoked INTEGER NOT NULL DEFAULT 0 CHECK (revoked IN (0, 1)),
        address TEXT NOT NULL,
        user_agent TEXT NOT NULL
      );
      CREATE INDEX sessions_user ON sessions (user_id, expires_at);
      CREATE TABLE audit_log (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        at_ms INTEGER NOT NULL,
        event TEXT NOT NULL,
        actor TEXT NOT NULL,
        subject TEXT NOT NULL,
        address TEXT NOT NULL,
        outcome TEXT NOT NULL,
        detail TEXT NOT NULL
      );
      CREATE INDEX audit_subject ON audit_log (subject, id);
      CREATE INDEX audit_time ON audit_log (at_ms);
      CREATE TABLE failures (
        key TEXT PRIMARY KEY NOT NULL,
        failures INTEGER NOT NULL,
        locked_until_ms INTEGER NOT NULL,
        updated_ms INTEGER NOT NULL
      ) WITHOUT ROWID;
      CREATE TABLE recovery_codes (
        user_id INTEGER PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
        code_hash BLOB NOT NULL
      );
      CREATE TABLE admins (
        user_id INTEGER PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE
      );
      CREATE TABLE api_keys (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        name TEXT NOT NULL UNIQUE,
        key_hash BLOB NOT NULL UNIQUE,
        scopes TEXT NOT NULL,
        liveness TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        revoked INTEGER NOT NULL DEFAULT 0 CHECK (revoked IN (0, 1))
      );
    )sql"},
    // Start rate limits in the database, so that several servers share them (issue 5).
    {4, R"sql(
      CREATE TABLE rate_buckets (
        key TEXT PRIMARY KEY,
        tokens REAL NOT NULL,
        updated_ms INTEGER NOT NULL
      );
      CREATE INDEX rate_buckets_updated ON rate_buckets (updated_ms);
    )sql"},
    // A change counter of what 1:N search sees, kept by triggers so that no write path (nor a
    // cascade) can forget it: in-memory galleries reload when it moves (issue 5).
    {5, R"sql(
      CREATE TABLE store_generation (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        value INTEGER NOT NULL
      );
      INSERT INTO store_generation (id, value) VALUES (1, 0);
      CREATE TRIGGER templates_added AFTER INSERT ON templates
        BEGIN UPDATE store_generation SET value = value + 1; END;
      CREATE TRIGGER templates_removed AFTER DELETE ON templates
        BEGIN UPDATE store_generation SET value = value + 1; END;
      CREATE TRIGGER users_enabled_or_disabled AFTER UPDATE OF disabled ON users
        BEGIN UPDATE store_generation SET value = value + 1; END;
    )sql"},
};

constexpr bool migrations_are_ordered() {
  int expected = 1;
  for (const Migration& m : kMigrations) {
    if (m.version != expected++) {
      return false;
    }
  }
  return expected - 1 == kSqliteSchemaVersion;
}
static_assert(migrations_are_ordered(), "migrations must be numbered 1..kSqliteSchemaVersion");

}  // namespace

Result<std::int64_t> query_int(sqlite3* db, std::string_view sql) {
  auto stmt = Statement::prepare(db, sql);
  if (!stmt) {
    return make_error(stmt.error());
  }
  auto row = stmt->step();
  if (!row) {
    return make_error(row.error());
  }
  if (!*row) {
    return make_error(ErrorCode::kInternal, fmt::format("no result from: {}", sql));
  }
  return stmt->int64(0);
}

Status sqlite_status(sqlite3* db, int rc, std::string_view what) {
  const char* detail = db != nullptr ? sqlite3_errmsg(db) : sqlite3_errstr(rc);
  std::string message = fmt::format("{}: {}", what, detail);
  switch (rc & 0xff) {
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
      return Status(ErrorCode::kBusy,
                    "database is busy (locked by another connection): " + message);
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB:
      return Status(ErrorCode::kCorrupt, std::move(message));
    case SQLITE_CONSTRAINT:
      if (rc == SQLITE_CONSTRAINT_UNIQUE || rc == SQLITE_CONSTRAINT_PRIMARYKEY) {
        return Status(ErrorCode::kAlreadyExists, std::move(message));
      }
      return Status(ErrorCode::kInvalidArgument, std::move(message));
    case SQLITE_ERROR:
    case SQLITE_MISUSE:
    case SQLITE_RANGE:
    case SQLITE_NOMEM:
    case SQLITE_INTERNAL:
      return Status(ErrorCode::kInternal, std::move(message));
    default:  // IOERR, FULL, CANTOPEN, READONLY, PERM, PROTOCOL, ...
      return Status(ErrorCode::kIoError, std::move(message));
  }
}

// Runs SQL without parameters (schema statements, pragmas with constant values).
Status exec(sqlite3* db, const char* sql, std::string_view what) {
  const int rc = sqlite3_exec(db, sql, nullptr, nullptr, nullptr);
  return rc == SQLITE_OK ? Status::Ok() : sqlite_status(db, rc, what);
}

namespace {

// ---------------------------------------------------------------------------------------------
// Opening: identification, migrations and the key check.

struct Identity {
  std::int64_t application_id = 0;
  std::int64_t user_version = 0;
  std::int64_t object_count = 0;
};

Result<Identity> read_identity(sqlite3* db) {
  Identity id;
  for (auto [sql, out] : {std::pair{"PRAGMA application_id", &id.application_id},
                          std::pair{"PRAGMA user_version", &id.user_version},
                          std::pair{"SELECT count(*) FROM sqlite_master", &id.object_count}}) {
    auto v = query_int(db, sql);
    if (!v) {
      return make_error(v.error());
    }
    *out = *v;
  }
  return id;
}

// Ok if the file is a facelogin database this program can open (or an empty one to initialise).
Status check_identity(const Identity& id, const fs::path& path) {
  if (id.application_id == 0 && id.user_version == 0 && id.object_count == 0) {
    return Status::Ok();  // a new, empty database
  }
  if (id.application_id != kSqliteApplicationId) {
    return Status(ErrorCode::kCorrupt,
                  fmt::format("{} is an SQLite database but not a facelogin one (application_id "
                              "{:#x}); refusing to touch it",
                              path.string(), id.application_id));
  }
  if (id.user_version > kSqliteSchemaVersion) {
    return Status(ErrorCode::kCorrupt,
                  fmt::format("{} has schema version {}, newer than this program knows ({}); "
                              "use a newer facelogin",
                              path.string(), id.user_version, kSqliteSchemaVersion));
  }
  if (id.user_version < 0) {
    return Status(ErrorCode::kCorrupt, fmt::format("{} has an invalid schema version {}",
                                                   path.string(), id.user_version));
  }
  return Status::Ok();
}

Status migrate(sqlite3* db, int from_version) {
  for (const Migration& m : kMigrations) {
    if (m.version <= from_version) {
      continue;
    }
    if (Status s =
            exec(db, m.sql, fmt::format("cannot migrate the schema to version {}", m.version));
        !s.ok()) {
      return s;
    }
    // PRAGMA takes no parameters; the values are our own integer constants.
    const std::string set_version = fmt::format(
        "PRAGMA application_id = {}; PRAGMA user_version = {};", kSqliteApplicationId, m.version);
    if (Status s = exec(db, set_version.c_str(), "cannot set the schema version"); !s.ok()) {
      return s;
    }
  }
  return Status::Ok();
}

}  // namespace

Result<DbHandle> open_database(const fs::path& path, int busy_timeout_ms,
                               const DbHandleCheck& in_open_transaction) {
  if (busy_timeout_ms < 0) {
    return make_error(ErrorCode::kInvalidArgument, "busy_timeout_ms must not be negative");
  }
  if (path.empty()) {
    return make_error(ErrorCode::kInvalidArgument, "database path is empty");
  }
  if (const fs::path dir = path.parent_path(); !dir.empty()) {
    if (Status s = create_private_directories(dir); !s.ok()) {
      return make_error(std::move(s));
    }
  }
  // Create the file ourselves so that it is 0600 from the start (SQLite would use 0644); SQLite
  // gives its -wal and -shm files the database file's permissions.
  //
  // Only ever a file that does not exist yet (O_EXCL): closing a descriptor of a file drops every
  // POSIX lock this process holds on it, including those of SQLite connections already open on
  // it (the server's, when it opens a second store). A process that lost its locks looks gone to
  // the next one that closes the database, which then deletes the WAL the first still writes to
  // (issue 17). The mutex keeps another thread of this process from opening the file between
  // our create and close.
  {
    static std::mutex create_mu;
    std::lock_guard lock(create_mu);
    UniqueFd fd(::open(path.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOCTTY, 0600));
    if (!fd && errno != EEXIST) {
      return make_error(ErrorCode::kIoError, fmt::format("cannot open database {}: {}",
                                                         path.string(), std::strerror(errno)));
    }
  }

  sqlite3* raw = nullptr;
  const int rc =
      sqlite3_open_v2(path.c_str(), &raw,
                      SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, nullptr);
  DbHandle db(raw);  // closes even a handle whose open failed
  if (rc != SQLITE_OK) {
    return make_error(sqlite_status(db.get(), rc, fmt::format("cannot open {}", path.string())));
  }
  sqlite3_extended_result_codes(db.get(), 1);
  sqlite3_busy_timeout(db.get(), busy_timeout_ms);
  // Defensive mode refuses SQL that could corrupt the file (writable_schema and the like); an
  // untrusted schema may not call functions with side effects.
  sqlite3_db_config(db.get(), SQLITE_DBCONFIG_DEFENSIVE, 1, nullptr);
  sqlite3_db_config(db.get(), SQLITE_DBCONFIG_TRUSTED_SCHEMA, 0, nullptr);

  // Identify the file before changing anything, so a foreign file is left exactly as it was.
  auto identity = read_identity(db.get());
  if (!identity) {
    if (identity.error().code() == ErrorCode::kCorrupt) {
      return make_error(ErrorCode::kCorrupt,
                        fmt::format("{} is not a facelogin database: it is not an SQLite file, or "
                                    "it is damaged ({})",
                                    path.string(), identity.error().message()));
    }
    return make_error(identity.error());
  }
  if (Status s = check_identity(*identity, path); !s.ok()) {
    return make_error(std::move(s));
  }

  // WAL: readers do not block the writer nor each other, which matters when logins read while an
  // admin enrols. synchronous=NORMAL: in WAL mode a crash never corrupts the database; only a
  // power loss can lose the last commits before the WAL is synced at a checkpoint, an acceptable
  // cost for enrolment data (re-enrol) that saves an fsync per commit. secure_delete: removed
  // templates are overwritten, not left in free pages (they are biometric data, even encrypted).
  // foreign_keys is per connection and off by default; the ON DELETE CASCADE needs it.
  {
    auto mode = Statement::prepare(db.get(), "PRAGMA journal_mode = WAL");
    if (!mode) {
      return make_error(mode.error());
    }
    auto row = mode->step();
    if (!row) {
      return make_error(row.error());
    }
    if (!*row || mode->text(0) != "wal") {
      return make_error(ErrorCode::kIoError,
                        fmt::format("cannot put {} in WAL mode (is it on a network file system?)",
                                    path.string()));
    }
  }
  if (Status s = exec(db.get(),
                      "PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON; "
                      "PRAGMA secure_delete = ON;",
                      "cannot configure the database");
      !s.ok()) {
    return make_error(std::move(s));
  }

  // Migrations and the key check in one transaction: a failure (or a wrong key) leaves the file
  // at its old version. The identity is read again under the write lock, because another
  // process may have migrated the file since the check above.
  {
    auto tx = Transaction::begin(db.get(), Transaction::Kind::kWrite);
    if (!tx) {
      return make_error(tx.error());
    }
    auto locked_identity = read_identity(db.get());
    if (!locked_identity) {
      return make_error(locked_identity.error());
    }
    if (Status s = check_identity(*locked_identity, path); !s.ok()) {
      return make_error(std::move(s));
    }
    if (Status s = migrate(db.get(), static_cast<int>(locked_identity->user_version)); !s.ok()) {
      return make_error(std::move(s));
    }
    if (in_open_transaction) {
      if (Status s = in_open_transaction(db.get()); !s.ok()) {
        return make_error(std::move(s));
      }
    }
    if (Status s = tx->commit(); !s.ok()) {
      return make_error(std::move(s));
    }
  }

  return db;
}

}  // namespace facelogin::storage
