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
#include "storage/sqlite_db.h"
#include "storage/sqlite_schema.h"
#include "storage/store_rules.h"
#include "storage/template_cipher.h"

namespace facelogin {
namespace {

namespace fs = std::filesystem;
using storage::DbHandle;
using storage::exec;
using storage::sqlite_status;
using storage::Statement;
using storage::SealedRow;
using storage::TemplateCipher;
using storage::Transaction;

using storage::kMaxModelIdLength;
using storage::validate_templates;
constexpr std::string_view kKeyCheckName = "key_check";
constexpr std::string_view kKeyCheckText = "facelogin key check";

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
  auto sealed =
      cipher.seal(std::span(reinterpret_cast<const std::uint8_t*>(text.data()), text.size()), aad);
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
    auto existing =
        Statement::prepare(db(), "SELECT name FROM users WHERE name = ?1 COLLATE NOCASE");
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
    auto insert = Statement::prepare(
        db(), "INSERT INTO users (name, created_at, disabled) VALUES (?1, ?2, 0)");
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
    return storage::decrypt_templates(cipher_, std::move(rows));
  }

  Result<std::int64_t> templates_generation() const override {
    std::lock_guard lock(mu_);
    // The counter only grows from 0, so -1 stands for its row missing.
    auto value = storage::query_int(
        db(), "SELECT COALESCE((SELECT value FROM store_generation WHERE id = 1), -1)");
    if (value && *value < 0) {
      return make_error(ErrorCode::kCorrupt, "the store's generation counter is missing");
    }
    return value;
  }

  Result<std::int64_t> count_templates(std::string_view model_id) const override {
    std::lock_guard lock(mu_);
    auto stmt =
        Statement::prepare(db(),
                           "SELECT count(*) FROM templates t JOIN users u ON u.id = t.user_id "
                           "WHERE t.model_id = ?1 AND u.disabled = 0");
    if (!stmt) {
      return make_error(stmt.error());
    }
    stmt->bind(1, model_id);
    auto row = stmt->step();
    if (!row) {
      return make_error(row.error());
    }
    return stmt->int64(0);
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
    return storage::decrypt_templates(cipher_, std::move(rows));
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
  auto db = storage::open_database(path, options.busy_timeout_ms, [&](sqlite3* handle) {
    return check_key(handle, *cipher, path);
  });
  if (!db) {
    return make_error(db.error());
  }

  std::function<std::int64_t()> now = options.now ? options.now : system_now;
  return std::unique_ptr<Store>(
      std::make_unique<SqliteStore>(std::move(*db), std::move(*cipher), std::move(now)));
}

}  // namespace facelogin
