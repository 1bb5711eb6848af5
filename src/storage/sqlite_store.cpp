// The SQLite implementation of Store.
//
// Schema (version kSqliteSchemaVersion; PRAGMA application_id = kSqliteApplicationId):
//   users(id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT NOT NULL UNIQUE, created_at INTEGER,
//         disabled INTEGER 0/1)          + a UNIQUE index on name COLLATE NOCASE
//   templates(id INTEGER PRIMARY KEY AUTOINCREMENT, user_id -> users(id) ON DELETE CASCADE,
//             model_id TEXT, created_at INTEGER, quality REAL, ciphertext BLOB)
//   meta(key TEXT PRIMARY KEY, value BLOB)   holds "key_check"
//
// Names: looked up exactly (BINARY), but two names that differ only in case cannot both exist.
// Exact lookup means a login as "Alice" never matches the templates of "alice" (Unix user names
// are case-sensitive); the NOCASE index means no one can enrol a look-alike of an existing name.
//
// Ids are AUTOINCREMENT so that a deleted user's id is never given to a new user: the id is bound
// into every ciphertext, and must name one person for the life of the database.
//
// Threading: the connection is opened with SQLITE_OPEN_NOMUTEX and every public method holds
// mu_ for its whole transaction. SQLITE_OPEN_FULLMUTEX would not be enough: it serialises single
// calls, but a transaction is many calls on one connection and must not interleave with another
// thread's. Other connections (other processes, other Store objects) are kept apart by SQLite's
// file locks: writes take the lock up front with BEGIN IMMEDIATE and wait up to busy_timeout_ms.

#include <fcntl.h>
#include <fmt/format.h>
#include <sqlite3.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstring>
#include <mutex>
#include <span>
#include <string>
#include <utility>

#include "facelogin/store.h"
#include "storage/file_util.h"
#include "storage/sqlite_schema.h"
#include "storage/template_cipher.h"

namespace facelogin {
namespace {

namespace fs = std::filesystem;
using storage::TemplateCipher;

constexpr std::size_t kMaxModelIdLength = 128;
constexpr std::size_t kMaxEmbeddingSize = 8192;
constexpr std::string_view kKeyCheckName = "key_check";
constexpr std::string_view kKeyCheckText = "facelogin key check";

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
};

constexpr bool migrations_are_ordered() {
  int expected = 1;
  for (const Migration& m : kMigrations) {
    if (m.version != expected++) {
      return false;
    }
  }
  return expected - 1 == storage::kSqliteSchemaVersion;
}
static_assert(migrations_are_ordered(), "migrations must be numbered 1..kSqliteSchemaVersion");

// ---------------------------------------------------------------------------------------------
// RAII and error mapping for the SQLite C API.

struct DbCloser {
  void operator()(sqlite3* db) const { sqlite3_close_v2(db); }
};
using DbHandle = std::unique_ptr<sqlite3, DbCloser>;

struct StmtFinalizer {
  void operator()(sqlite3_stmt* stmt) const { sqlite3_finalize(stmt); }
};

Status sqlite_status(sqlite3* db, int rc, std::string_view what) {
  const char* detail = db != nullptr ? sqlite3_errmsg(db) : sqlite3_errstr(rc);
  std::string message = fmt::format("{}: {}", what, detail);
  switch (rc & 0xff) {
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
      return Status(ErrorCode::kBusy, "database is busy (locked by another connection): " + message);
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

// A prepared statement. Bind errors are remembered and reported by step(), so call sites read as
// one chain.
class Statement {
 public:
  [[nodiscard]] static Result<Statement> prepare(sqlite3* db, std::string_view sql) {
    sqlite3_stmt* raw = nullptr;
    const int rc =
        sqlite3_prepare_v2(db, sql.data(), static_cast<int>(sql.size()), &raw, nullptr);
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
    return check(sqlite3_bind_text(stmt_.get(), index, value.data(),
                                   static_cast<int>(value.size()), SQLITE_TRANSIENT));
  }
  Statement& bind(int index, std::span<const std::uint8_t> value) {
    return check(sqlite3_bind_blob(stmt_.get(), index, value.data(),
                                   static_cast<int>(value.size()), SQLITE_TRANSIENT));
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
Status exec(sqlite3* db, const char* sql, std::string_view what) {
  const int rc = sqlite3_exec(db, sql, nullptr, nullptr, nullptr);
  return rc == SQLITE_OK ? Status::Ok() : sqlite_status(db, rc, what);
}

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

// ---------------------------------------------------------------------------------------------
// Validation.

Status validate_templates(const std::vector<FaceTemplate>& templates) {
  if (templates.empty()) {
    return Status(ErrorCode::kInvalidArgument, "at least one template is needed");
  }
  for (std::size_t i = 0; i < templates.size(); ++i) {
    const FaceTemplate& t = templates[i];
    const std::string which = fmt::format("template {}", i + 1);
    if (t.model_id.empty() || t.model_id.size() > kMaxModelIdLength) {
      return Status(ErrorCode::kInvalidArgument,
                    fmt::format("{}: model id must be 1-{} bytes", which, kMaxModelIdLength));
    }
    if (t.embedding.empty() || t.embedding.size() > kMaxEmbeddingSize) {
      return Status(ErrorCode::kInvalidArgument,
                    fmt::format("{}: embedding must have 1-{} values", which, kMaxEmbeddingSize));
    }
    for (float v : t.embedding) {
      if (!std::isfinite(v)) {
        return Status(ErrorCode::kInvalidArgument,
                      fmt::format("{}: embedding has a value that is not finite", which));
      }
    }
    if (!std::isfinite(t.quality)) {
      return Status(ErrorCode::kInvalidArgument,
                    fmt::format("{}: quality is not finite", which));
    }
  }
  return Status::Ok();
}

// ---------------------------------------------------------------------------------------------
// Opening: identification, migrations and the key check.

struct Identity {
  std::int64_t application_id = 0;
  std::int64_t user_version = 0;
  std::int64_t object_count = 0;
};

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
  if (id.application_id != storage::kSqliteApplicationId) {
    return Status(ErrorCode::kCorrupt,
                  fmt::format("{} is an SQLite database but not a facelogin one (application_id "
                              "{:#x}); refusing to touch it",
                              path.string(), id.application_id));
  }
  if (id.user_version > storage::kSqliteSchemaVersion) {
    return Status(ErrorCode::kCorrupt,
                  fmt::format("{} has schema version {}, newer than this program knows ({}); "
                              "use a newer facelogin",
                              path.string(), id.user_version, storage::kSqliteSchemaVersion));
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
    if (Status s = exec(db, m.sql, fmt::format("cannot migrate the schema to version {}", m.version));
        !s.ok()) {
      return s;
    }
    // PRAGMA takes no parameters; the values are our own integer constants.
    const std::string set_version =
        fmt::format("PRAGMA application_id = {}; PRAGMA user_version = {};",
                    storage::kSqliteApplicationId, m.version);
    if (Status s = exec(db, set_version.c_str(), "cannot set the schema version"); !s.ok()) {
      return s;
    }
  }
  return Status::Ok();
}

Status wrong_key(const fs::path& path) {
  return Status(ErrorCode::kCorrupt,
                fmt::format("wrong key: {} was written with a different template key (check "
                            "FACELOGIN_KEY or the key file)",
                            path.string()));
}

// Checks the key against the stored key check value, so a wrong key fails here rather than at the
// first template read. A database without one (new, or from before it had one) gets one, after
// the key has been tried on an existing template if there is any.
Status check_key(sqlite3* db, const TemplateCipher& cipher, const fs::path& path) {
  const auto aad = storage::make_associated_data(storage::kKeyCheckPurpose, 0, "");
  auto select = Statement::prepare(db, "SELECT value FROM meta WHERE key = ?1");
  if (!select) {
    return select.error();
  }
  select->bind(1, kKeyCheckName);
  auto row = select->step();
  if (!row) {
    return row.error();
  }
  if (*row) {
    auto plain = cipher.open(select->blob(0), aad);
    if (!plain || std::string_view(reinterpret_cast<const char*>(plain->data()), plain->size()) !=
                      kKeyCheckText) {
      return wrong_key(path);
    }
    return Status::Ok();
  }

  auto first = Statement::prepare(
      db, "SELECT user_id, model_id, ciphertext FROM templates ORDER BY id LIMIT 1");
  if (!first) {
    return first.error();
  }
  auto has_template = first->step();
  if (!has_template) {
    return has_template.error();
  }
  if (*has_template &&
      !cipher.open_template(first->int64(0), first->text(1), first->blob(2)).has_value()) {
    return wrong_key(path);
  }

  const std::string_view text = kKeyCheckText;
  auto sealed = cipher.seal(
      std::span(reinterpret_cast<const std::uint8_t*>(text.data()), text.size()), aad);
  if (!sealed) {
    return sealed.error();
  }
  auto insert = Statement::prepare(db, "INSERT INTO meta (key, value) VALUES (?1, ?2)");
  if (!insert) {
    return insert.error();
  }
  insert->bind(1, kKeyCheckName).bind(2, std::span<const std::uint8_t>(*sealed));
  return insert->run();
}

// ---------------------------------------------------------------------------------------------
// The store.

std::int64_t system_now() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// A template row as read, before decryption (which happens outside the lock).
struct SealedRow {
  std::int64_t id;
  std::int64_t user_id;
  std::int64_t created_at;
  std::string model_id;
  float quality;
  std::vector<std::uint8_t> ciphertext;
};

constexpr const char* kUserColumns =
    "SELECT u.id, u.name, u.created_at, u.disabled, "
    "(SELECT count(*) FROM templates t WHERE t.user_id = u.id) FROM users u";

UserInfo read_user(const Statement& stmt) {
  UserInfo info;
  info.id = stmt.int64(0);
  info.name = stmt.text(1);
  info.created_at = stmt.int64(2);
  info.disabled = stmt.int64(3) != 0;
  info.template_count = static_cast<int>(stmt.int64(4));
  return info;
}

class SqliteStore final : public Store {
 public:
  SqliteStore(DbHandle db, TemplateCipher cipher, std::function<std::int64_t()> now)
      : db_(std::move(db)), cipher_(std::move(cipher)), now_(std::move(now)) {}

  int schema_version() const override { return storage::kSqliteSchemaVersion; }

  Result<UserInfo> create_user(std::string_view name,
                               const std::vector<FaceTemplate>& templates) override {
    if (Status s = validate_user_name(name); !s.ok()) {
      return make_error(std::move(s));
    }
    if (Status s = validate_templates(templates); !s.ok()) {
      return make_error(std::move(s));
    }
    std::lock_guard lock(mu_);
    auto tx = Transaction::begin(db(), Transaction::Kind::kWrite);
    if (!tx) {
      return make_error(tx.error());
    }
    // Checked first for a clear message; the UNIQUE indexes are what guarantee it.
    auto existing = Statement::prepare(db(), "SELECT name FROM users WHERE name = ?1 COLLATE NOCASE");
    if (!existing) {
      return make_error(existing.error());
    }
    existing->bind(1, name);
    auto found = existing->step();
    if (!found) {
      return make_error(found.error());
    }
    if (*found) {
      const std::string other = existing->text(0);
      return make_error(ErrorCode::kAlreadyExists,
                        other == name ? fmt::format("user '{}' already exists", name)
                                      : fmt::format("user '{}' already exists as '{}' (names "
                                                    "differing only in case are not allowed)",
                                                    name, other));
    }

    UserInfo info;
    info.name = std::string(name);
    info.created_at = now_();
    auto insert =
        Statement::prepare(db(), "INSERT INTO users (name, created_at, disabled) VALUES (?1, ?2, 0)");
    if (!insert) {
      return make_error(insert.error());
    }
    insert->bind(1, name).bind(2, info.created_at);
    if (Status s = insert->run(); !s.ok()) {
      return make_error(std::move(s));
    }
    info.id = sqlite3_last_insert_rowid(db());
    if (Status s = insert_templates(info.id, templates, info.created_at); !s.ok()) {
      return make_error(std::move(s));
    }
    if (Status s = tx->commit(); !s.ok()) {
      return make_error(std::move(s));
    }
    info.template_count = static_cast<int>(templates.size());
    return info;
  }

  Status add_templates(std::string_view name, const std::vector<FaceTemplate>& templates) override {
    if (Status s = validate_user_name(name); !s.ok()) {
      return s;
    }
    if (Status s = validate_templates(templates); !s.ok()) {
      return s;
    }
    std::lock_guard lock(mu_);
    auto tx = Transaction::begin(db(), Transaction::Kind::kWrite);
    if (!tx) {
      return tx.error();
    }
    auto user_id = find_user_id(name);
    if (!user_id) {
      return user_id.error();
    }
    if (Status s = insert_templates(*user_id, templates, now_()); !s.ok()) {
      return s;
    }
    return tx->commit();
  }

  Result<UserInfo> get_user(std::string_view name) const override {
    if (Status s = validate_user_name(name); !s.ok()) {
      return make_error(std::move(s));
    }
    std::lock_guard lock(mu_);
    auto tx = Transaction::begin(db(), Transaction::Kind::kRead);
    if (!tx) {
      return make_error(tx.error());
    }
    auto stmt = Statement::prepare(db(), std::string(kUserColumns) + " WHERE u.name = ?1");
    if (!stmt) {
      return make_error(stmt.error());
    }
    stmt->bind(1, name);
    auto row = stmt->step();
    if (!row) {
      return make_error(row.error());
    }
    if (!*row) {
      return make_error(not_found(name));
    }
    UserInfo info = read_user(*stmt);
    if (Status s = tx->commit(); !s.ok()) {
      return make_error(std::move(s));
    }
    return info;
  }

  Result<std::vector<UserInfo>> list_users() const override {
    std::lock_guard lock(mu_);
    auto tx = Transaction::begin(db(), Transaction::Kind::kRead);
    if (!tx) {
      return make_error(tx.error());
    }
    auto stmt =
        Statement::prepare(db(), std::string(kUserColumns) + " ORDER BY u.name COLLATE NOCASE");
    if (!stmt) {
      return make_error(stmt.error());
    }
    std::vector<UserInfo> users;
    while (true) {
      auto row = stmt->step();
      if (!row) {
        return make_error(row.error());
      }
      if (!*row) {
        break;
      }
      users.push_back(read_user(*stmt));
    }
    if (Status s = tx->commit(); !s.ok()) {
      return make_error(std::move(s));
    }
    return users;
  }

  Status remove_user(std::string_view name) override {
    if (Status s = validate_user_name(name); !s.ok()) {
      return s;
    }
    std::lock_guard lock(mu_);
    auto tx = Transaction::begin(db(), Transaction::Kind::kWrite);
    if (!tx) {
      return tx.error();
    }
    // Templates go with the user through ON DELETE CASCADE.
    auto stmt = Statement::prepare(db(), "DELETE FROM users WHERE name = ?1");
    if (!stmt) {
      return stmt.error();
    }
    stmt->bind(1, name);
    if (Status s = stmt->run(); !s.ok()) {
      return s;
    }
    if (sqlite3_changes(db()) == 0) {
      return not_found(name);
    }
    return tx->commit();
  }

  Status remove_template(std::string_view name, std::int64_t template_id) override {
    if (Status s = validate_user_name(name); !s.ok()) {
      return s;
    }
    std::lock_guard lock(mu_);
    auto tx = Transaction::begin(db(), Transaction::Kind::kWrite);
    if (!tx) {
      return tx.error();
    }
    auto user_id = find_user_id(name);
    if (!user_id) {
      return user_id.error();
    }
    auto stmt = Statement::prepare(db(), "DELETE FROM templates WHERE id = ?1 AND user_id = ?2");
    if (!stmt) {
      return stmt.error();
    }
    stmt->bind(1, template_id).bind(2, *user_id);
    if (Status s = stmt->run(); !s.ok()) {
      return s;
    }
    if (sqlite3_changes(db()) == 0) {
      return Status(ErrorCode::kNotFound,
                    fmt::format("user '{}' has no template {}", name, template_id));
    }
    return tx->commit();
  }

  Status set_disabled(std::string_view name, bool disabled) override {
    if (Status s = validate_user_name(name); !s.ok()) {
      return s;
    }
    std::lock_guard lock(mu_);
    auto tx = Transaction::begin(db(), Transaction::Kind::kWrite);
    if (!tx) {
      return tx.error();
    }
    auto stmt = Statement::prepare(db(), "UPDATE users SET disabled = ?1 WHERE name = ?2");
    if (!stmt) {
      return stmt.error();
    }
    stmt->bind(1, std::int64_t{disabled ? 1 : 0}).bind(2, name);
    if (Status s = stmt->run(); !s.ok()) {
      return s;
    }
    if (sqlite3_changes(db()) == 0) {
      return not_found(name);
    }
    return tx->commit();
  }

  Result<std::vector<StoredTemplate>> user_templates(std::string_view name) const override {
    if (Status s = validate_user_name(name); !s.ok()) {
      return make_error(std::move(s));
    }
    std::vector<SealedRow> rows;
    {
      std::lock_guard lock(mu_);
      auto tx = Transaction::begin(db(), Transaction::Kind::kRead);
      if (!tx) {
        return make_error(tx.error());
      }
      auto user_id = find_user_id(name);
      if (!user_id) {
        return make_error(user_id.error());
      }
      auto stmt = Statement::prepare(
          db(),
          "SELECT id, user_id, created_at, model_id, quality, ciphertext FROM templates "
          "WHERE user_id = ?1 ORDER BY id");
      if (!stmt) {
        return make_error(stmt.error());
      }
      stmt->bind(1, *user_id);
      if (Status s = read_rows(*stmt, rows); !s.ok()) {
        return make_error(std::move(s));
      }
      if (Status s = tx->commit(); !s.ok()) {
        return make_error(std::move(s));
      }
    }
    return decrypt(std::move(rows));
  }

  Result<std::vector<StoredTemplate>> all_templates(std::string_view model_id) const override {
    if (model_id.empty() || model_id.size() > kMaxModelIdLength) {
      return make_error(ErrorCode::kInvalidArgument,
                        fmt::format("model id must be 1-{} bytes", kMaxModelIdLength));
    }
    std::vector<SealedRow> rows;
    {
      std::lock_guard lock(mu_);
      auto tx = Transaction::begin(db(), Transaction::Kind::kRead);
      if (!tx) {
        return make_error(tx.error());
      }
      auto stmt = Statement::prepare(
          db(),
          "SELECT t.id, t.user_id, t.created_at, t.model_id, t.quality, t.ciphertext "
          "FROM templates t JOIN users u ON u.id = t.user_id "
          "WHERE t.model_id = ?1 AND u.disabled = 0 ORDER BY t.id");
      if (!stmt) {
        return make_error(stmt.error());
      }
      stmt->bind(1, model_id);
      if (Status s = read_rows(*stmt, rows); !s.ok()) {
        return make_error(std::move(s));
      }
      if (Status s = tx->commit(); !s.ok()) {
        return make_error(std::move(s));
      }
    }
    return decrypt(std::move(rows));
  }

 private:
  sqlite3* db() const { return db_.get(); }

  static Status not_found(std::string_view name) {
    return Status(ErrorCode::kNotFound, fmt::format("no user named '{}'", name));
  }

  // Requires mu_ and an open transaction.
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
      return make_error(not_found(name));
    }
    return stmt->int64(0);
  }

  // Requires mu_ and an open write transaction.
  Status insert_templates(std::int64_t user_id, const std::vector<FaceTemplate>& templates,
                          std::int64_t created_at) {
    auto stmt = Statement::prepare(
        db(),
        "INSERT INTO templates (user_id, model_id, created_at, quality, ciphertext) "
        "VALUES (?1, ?2, ?3, ?4, ?5)");
    if (!stmt) {
      return stmt.error();
    }
    for (const FaceTemplate& t : templates) {
      auto sealed = cipher_.seal_template(user_id, t.model_id, t.embedding);
      if (!sealed) {
        return sealed.error();
      }
      stmt->reset();
      stmt->bind(1, user_id)
          .bind(2, std::string_view(t.model_id))
          .bind(3, created_at)
          .bind(4, static_cast<double>(t.quality))
          .bind(5, std::span<const std::uint8_t>(*sealed));
      if (Status s = stmt->run(); !s.ok()) {
        return s;
      }
    }
    return Status::Ok();
  }

  static Status read_rows(Statement& stmt, std::vector<SealedRow>& rows) {
    while (true) {
      auto row = stmt.step();
      if (!row) {
        return row.error();
      }
      if (!*row) {
        return Status::Ok();
      }
      rows.push_back(SealedRow{stmt.int64(0), stmt.int64(1), stmt.int64(2), stmt.text(3),
                               static_cast<float>(stmt.real(4)), stmt.blob(5)});
    }
  }

  // Decrypts outside the lock: the cipher is thread-safe and decryption is the slow part.
  Result<std::vector<StoredTemplate>> decrypt(std::vector<SealedRow> rows) const {
    std::vector<StoredTemplate> out;
    out.reserve(rows.size());
    for (SealedRow& row : rows) {
      auto embedding = cipher_.open_template(row.user_id, row.model_id, row.ciphertext);
      if (!embedding) {
        return make_error(ErrorCode::kCorrupt,
                          fmt::format("template {} failed its integrity check (tampered with, "
                                      "moved to another user or model, or the wrong key)",
                                      row.id));
      }
      StoredTemplate t;
      t.id = row.id;
      t.user_id = row.user_id;
      t.created_at = row.created_at;
      t.face.model_id = std::move(row.model_id);
      t.face.embedding = std::move(*embedding);
      t.face.quality = row.quality;
      out.push_back(std::move(t));
    }
    return out;
  }

  mutable std::mutex mu_;  // guards db_ and every transaction on it
  DbHandle db_;
  const TemplateCipher cipher_;
  const std::function<std::int64_t()> now_;
};

}  // namespace

Result<std::unique_ptr<Store>> open_sqlite_store(const fs::path& path,
                                                 const SqliteStoreOptions& options) {
  auto cipher = TemplateCipher::create(options.key);
  if (!cipher) {
    return make_error(cipher.error());
  }
  if (options.busy_timeout_ms < 0) {
    return make_error(ErrorCode::kInvalidArgument, "busy_timeout_ms must not be negative");
  }
  if (path.empty()) {
    return make_error(ErrorCode::kInvalidArgument, "database path is empty");
  }
  if (const fs::path dir = path.parent_path(); !dir.empty()) {
    if (Status s = storage::create_private_directories(dir); !s.ok()) {
      return make_error(std::move(s));
    }
  }
  // Create the file ourselves so that it is 0600 from the start (SQLite would use 0644); SQLite
  // gives its -wal and -shm files the database file's permissions.
  {
    storage::UniqueFd fd(::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOCTTY, 0600));
    if (!fd) {
      return make_error(ErrorCode::kIoError,
                        fmt::format("cannot open database {}: {}", path.string(),
                                    std::strerror(errno)));
    }
  }

  sqlite3* raw = nullptr;
  const int rc = sqlite3_open_v2(
      path.c_str(), &raw, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
      nullptr);
  DbHandle db(raw);  // closes even a handle whose open failed
  if (rc != SQLITE_OK) {
    return make_error(sqlite_status(db.get(), rc, fmt::format("cannot open {}", path.string())));
  }
  sqlite3_extended_result_codes(db.get(), 1);
  sqlite3_busy_timeout(db.get(), options.busy_timeout_ms);
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
    if (Status s = check_key(db.get(), *cipher, path); !s.ok()) {
      return make_error(std::move(s));
    }
    if (Status s = tx->commit(); !s.ok()) {
      return make_error(std::move(s));
    }
  }

  std::function<std::int64_t()> now = options.now ? options.now : system_now;
  return std::unique_ptr<Store>(
      std::make_unique<SqliteStore>(std::move(db), std::move(*cipher), std::move(now)));
}

}  // namespace facelogin
