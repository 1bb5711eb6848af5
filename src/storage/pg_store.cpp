// The PostgreSQL implementation of Store: the same results and error codes as SqliteStore
// (sqlite_store.cpp), for several servers sharing one database.
//
// Schema (version kPostgresSchemaVersion, see pg_db.cpp), in PostgresOptions::schema:
//   users(id bigint identity, name text UNIQUE, created_at bigint, disabled boolean)
//         + a UNIQUE index on lower(name)
//   templates(id bigint identity, user_id -> users(id) ON DELETE CASCADE, model_id text,
//             created_at bigint, quality double precision, ciphertext bytea)
//   meta(key text PRIMARY KEY, value bytea)   holds "key_check"
//
// Names: looked up exactly, but two names that differ only in case cannot both exist (lower()
// under COLLATE "C" folds ASCII only, as SQLite's NOCASE; names are ASCII). Ids come from identity
// sequences, which never give a number twice: the id is bound into every ciphertext and must name
// one person for the life of the database. Templates are sealed exactly as in SQLite, so the
// TemplateCipher bound to (user id, model id) makes a row moved to another user fail to open.
//
// Threading: every call takes a connection from the pool for one transaction and gives it back;
// no lock is held while the database works. Decryption happens after the connection is back.

#include <fmt/format.h>

#include <chrono>
#include <cmath>
#include <span>
#include <string>
#include <utility>

#include "facelogin/postgres_store.h"
#include "facelogin/store.h"
#include "storage/pg_db.h"
#include "storage/store_rules.h"
#include "storage/template_cipher.h"

namespace facelogin {
namespace {

using storage::PgParam;
using storage::PgPool;
using storage::PgRows;
using storage::PgTransaction;
using storage::kMaxModelIdLength;
using storage::SealedRow;
using storage::TemplateCipher;

constexpr std::string_view kKeyCheckName = "key_check";
constexpr std::string_view kKeyCheckText = "facelogin key check";

// ---------------------------------------------------------------------------------------------
// Validation: the backends' common rules, plus model ids PostgreSQL can store as text.

Status validate_templates(const std::vector<FaceTemplate>& templates) {
  if (Status s = storage::validate_templates(templates); !s.ok()) {
    return s;
  }
  for (std::size_t i = 0; i < templates.size(); ++i) {
    if (!storage::is_storable_text(templates[i].model_id)) {
      return Status(ErrorCode::kInvalidArgument,
                    fmt::format("template {}: model id must be UTF-8 without NUL bytes", i + 1));
    }
  }
  return Status::Ok();
}

Status wrong_key(std::string_view where) {
  return Status(ErrorCode::kCorrupt,
                fmt::format("wrong key: {} was written with a different template key (check "
                            "FACELOGIN_KEY or the key file)",
                            where));
}

// Checks the key against the stored key check value, so a wrong key fails here rather than at the
// first template read. A schema without one (new) gets one, after the key has been tried on an
// existing template if there is any. Runs in the migration transaction, under its lock.
Status check_key(PgTransaction& tx, const TemplateCipher& cipher, std::string_view where) {
  const auto aad = storage::make_associated_data(storage::kKeyCheckPurpose, 0, "");
  auto stored = tx.exec("SELECT value FROM meta WHERE key = $1", {PgParam::text(kKeyCheckName)},
                        "cannot read the key check value");
  if (!stored) {
    return stored.error();
  }
  if (!stored->empty()) {
    auto plain = cipher.open(stored->bytes(0, 0), aad);
    if (!plain || std::string_view(reinterpret_cast<const char*>(plain->data()), plain->size()) !=
                      kKeyCheckText) {
      return wrong_key(where);
    }
    return Status::Ok();
  }

  auto first = tx.exec("SELECT user_id, model_id, ciphertext FROM templates ORDER BY id LIMIT 1",
                       {}, "cannot read a template");
  if (!first) {
    return first.error();
  }
  if (!first->empty() &&
      !cipher.open_template(first->int64(0, 0), first->text(0, 1), first->bytes(0, 2))
           .has_value()) {
    return wrong_key(where);
  }

  const std::string_view text = kKeyCheckText;
  auto sealed =
      cipher.seal(std::span(reinterpret_cast<const std::uint8_t*>(text.data()), text.size()), aad);
  if (!sealed) {
    return sealed.error();
  }
  auto insert = tx.exec("INSERT INTO meta (key, value) VALUES ($1, $2)",
                        {PgParam::text(kKeyCheckName), PgParam::bytes(*sealed)},
                        "cannot store the key check value");
  if (!insert) {
    return insert.error();
  }
  return Status::Ok();
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

UserInfo read_user(const PgRows& rows, int row) {
  UserInfo info;
  info.id = rows.int64(row, 0);
  info.name = rows.text(row, 1);
  info.created_at = rows.int64(row, 2);
  info.disabled = rows.boolean(row, 3);
  info.template_count = static_cast<int>(rows.int64(row, 4));
  return info;
}

constexpr const char* kTemplateColumns =
    "SELECT t.id, t.user_id, t.created_at, t.model_id, t.quality, t.ciphertext FROM templates t";

void read_rows(const PgRows& rows, std::vector<SealedRow>& out) {
  out.reserve(out.size() + static_cast<std::size_t>(rows.size()));
  for (int r = 0; r < rows.size(); ++r) {
    out.push_back(SealedRow{rows.int64(r, 0), rows.int64(r, 1), rows.int64(r, 2), rows.text(r, 3),
                            static_cast<float>(rows.float8(r, 4)), rows.bytes(r, 5)});
  }
}

class PostgresStore final : public Store {
 public:
  PostgresStore(std::unique_ptr<PgPool> pool, TemplateCipher cipher,
                std::function<std::int64_t()> now)
      : pool_(std::move(pool)), cipher_(std::move(cipher)), now_(std::move(now)) {}

  int schema_version() const override { return storage::kPostgresSchemaVersion; }

  Result<UserInfo> create_user(std::string_view name,
                               const std::vector<FaceTemplate>& templates) override {
    if (Status s = validate_user_name(name); !s.ok()) {
      return make_error(std::move(s));
    }
    if (Status s = validate_templates(templates); !s.ok()) {
      return make_error(std::move(s));
    }
    auto tx = begin(PgTransaction::Kind::kWrite);
    if (!tx) {
      return make_error(tx.error());
    }
    // Checked first for a clear message; the unique indexes are what guarantee it (a concurrent
    // creator of the same name fails at the INSERT below).
    auto existing = tx->exec("SELECT name FROM users WHERE lower(name) = lower($1 COLLATE \"C\")",
                             {PgParam::text(name)}, "cannot look up the user");
    if (!existing) {
      return make_error(existing.error());
    }
    if (!existing->empty()) {
      return make_error(exists(name, existing->text(0, 0)));
    }

    UserInfo info;
    info.name = std::string(name);
    info.created_at = now_();
    auto insert = tx->exec(
        "INSERT INTO users (name, created_at, disabled) VALUES ($1, $2, false) RETURNING id",
        {PgParam::text(name), PgParam::int64(info.created_at)}, "cannot create the user");
    if (!insert) {
      if (insert.error().code() == ErrorCode::kAlreadyExists) {
        return make_error(exists(name, name));
      }
      return make_error(insert.error());
    }
    info.id = insert->int64(0, 0);
    if (Status s = insert_templates(*tx, info.id, templates, info.created_at); !s.ok()) {
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
    auto tx = begin(PgTransaction::Kind::kWrite);
    if (!tx) {
      return tx.error();
    }
    auto user_id = find_user_id(*tx, name);
    if (!user_id) {
      return user_id.error();
    }
    if (Status s = insert_templates(*tx, *user_id, templates, now_()); !s.ok()) {
      // The user was removed by another connection since find_user_id (foreign key).
      return s.code() == ErrorCode::kNotFound ? not_found(name) : s;
    }
    return tx->commit();
  }

  Result<UserInfo> get_user(std::string_view name) const override {
    if (Status s = validate_user_name(name); !s.ok()) {
      return make_error(std::move(s));
    }
    auto tx = begin(PgTransaction::Kind::kRead);
    if (!tx) {
      return make_error(tx.error());
    }
    auto rows = tx->exec(std::string(kUserColumns) + " WHERE u.name = $1", {PgParam::text(name)},
                         "cannot read the user");
    if (!rows) {
      return make_error(rows.error());
    }
    if (rows->empty()) {
      return make_error(not_found(name));
    }
    UserInfo info = read_user(*rows, 0);
    if (Status s = tx->commit(); !s.ok()) {
      return make_error(std::move(s));
    }
    return info;
  }

  Result<std::vector<UserInfo>> list_users() const override {
    auto tx = begin(PgTransaction::Kind::kRead);
    if (!tx) {
      return make_error(tx.error());
    }
    // lower(name) under "C": the order of SQLite's ORDER BY name COLLATE NOCASE.
    auto rows = tx->exec(std::string(kUserColumns) + " ORDER BY lower(u.name)", {},
                         "cannot list the users");
    if (!rows) {
      return make_error(rows.error());
    }
    std::vector<UserInfo> users;
    users.reserve(static_cast<std::size_t>(rows->size()));
    for (int r = 0; r < rows->size(); ++r) {
      users.push_back(read_user(*rows, r));
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
    auto tx = begin(PgTransaction::Kind::kWrite);
    if (!tx) {
      return tx.error();
    }
    // Templates, sessions, the recovery code and the admin flag go with the user through
    // ON DELETE CASCADE.
    auto deleted = tx->exec("DELETE FROM users WHERE name = $1", {PgParam::text(name)},
                            "cannot remove the user");
    if (!deleted) {
      return deleted.error();
    }
    if (deleted->affected() == 0) {
      return not_found(name);
    }
    return tx->commit();
  }

  Status remove_template(std::string_view name, std::int64_t template_id) override {
    if (Status s = validate_user_name(name); !s.ok()) {
      return s;
    }
    auto tx = begin(PgTransaction::Kind::kWrite);
    if (!tx) {
      return tx.error();
    }
    auto user_id = find_user_id(*tx, name);
    if (!user_id) {
      return user_id.error();
    }
    auto deleted = tx->exec("DELETE FROM templates WHERE id = $1 AND user_id = $2",
                            {PgParam::int64(template_id), PgParam::int64(*user_id)},
                            "cannot remove the template");
    if (!deleted) {
      return deleted.error();
    }
    if (deleted->affected() == 0) {
      return Status(ErrorCode::kNotFound,
                    fmt::format("user '{}' has no template {}", name, template_id));
    }
    return tx->commit();
  }

  Status set_disabled(std::string_view name, bool disabled) override {
    if (Status s = validate_user_name(name); !s.ok()) {
      return s;
    }
    auto tx = begin(PgTransaction::Kind::kWrite);
    if (!tx) {
      return tx.error();
    }
    auto updated =
        tx->exec("UPDATE users SET disabled = $1 WHERE name = $2",
                 {PgParam::boolean(disabled), PgParam::text(name)}, "cannot update the user");
    if (!updated) {
      return updated.error();
    }
    if (updated->affected() == 0) {
      return not_found(name);
    }
    return tx->commit();
  }

  Result<std::vector<StoredTemplate>> user_templates(std::string_view name) const override {
    if (Status s = validate_user_name(name); !s.ok()) {
      return make_error(std::move(s));
    }
    std::vector<SealedRow> sealed;
    {
      auto tx = begin(PgTransaction::Kind::kRead);
      if (!tx) {
        return make_error(tx.error());
      }
      auto user_id = find_user_id(*tx, name);
      if (!user_id) {
        return make_error(user_id.error());
      }
      auto rows = tx->exec(std::string(kTemplateColumns) + " WHERE t.user_id = $1 ORDER BY t.id",
                           {PgParam::int64(*user_id)}, "cannot read the templates");
      if (!rows) {
        return make_error(rows.error());
      }
      read_rows(*rows, sealed);
      if (Status s = tx->commit(); !s.ok()) {
        return make_error(std::move(s));
      }
    }
    return storage::decrypt_templates(cipher_, std::move(sealed));
  }

  Result<std::int64_t> templates_generation() const override {
    auto tx = begin(PgTransaction::Kind::kRead);
    if (!tx) {
      return make_error(tx.error());
    }
    auto rows = tx->exec("SELECT value FROM store_generation WHERE id = 1", {},
                         "cannot read the store's generation");
    if (!rows) {
      return make_error(rows.error());
    }
    if (rows->empty()) {
      return make_error(ErrorCode::kCorrupt, "the store's generation counter is missing");
    }
    const std::int64_t value = rows->int64(0, 0);
    if (Status s = tx->commit(); !s.ok()) {
      return make_error(std::move(s));
    }
    return value;
  }

  Result<std::int64_t> count_templates(std::string_view model_id) const override {
    // A model id PostgreSQL cannot hold as text was never stored (see validate_templates).
    if (!storage::is_storable_text(model_id)) {
      return std::int64_t{0};
    }
    auto tx = begin(PgTransaction::Kind::kRead);
    if (!tx) {
      return make_error(tx.error());
    }
    auto rows = tx->exec(
        "SELECT count(*) FROM templates t JOIN users u ON u.id = t.user_id "
        "WHERE t.model_id = $1 AND NOT u.disabled",
        {PgParam::text(model_id)}, "cannot count the templates");
    if (!rows) {
      return make_error(rows.error());
    }
    const std::int64_t count = rows->int64(0, 0);
    if (Status s = tx->commit(); !s.ok()) {
      return make_error(std::move(s));
    }
    return count;
  }

  Result<std::vector<StoredTemplate>> all_templates(std::string_view model_id) const override {
    if (model_id.empty() || model_id.size() > kMaxModelIdLength) {
      return make_error(ErrorCode::kInvalidArgument,
                        fmt::format("model id must be 1-{} bytes", kMaxModelIdLength));
    }
    if (!storage::is_storable_text(model_id)) {
      return std::vector<StoredTemplate>{};  // never stored, as in count_templates
    }
    std::vector<SealedRow> sealed;
    {
      auto tx = begin(PgTransaction::Kind::kRead);
      if (!tx) {
        return make_error(tx.error());
      }
      auto rows = tx->exec(std::string(kTemplateColumns) +
                               " JOIN users u ON u.id = t.user_id "
                               "WHERE t.model_id = $1 AND NOT u.disabled ORDER BY t.id",
                           {PgParam::text(model_id)}, "cannot read the templates");
      if (!rows) {
        return make_error(rows.error());
      }
      read_rows(*rows, sealed);
      if (Status s = tx->commit(); !s.ok()) {
        return make_error(std::move(s));
      }
    }
    return storage::decrypt_templates(cipher_, std::move(sealed));
  }

 private:
  Result<PgTransaction> begin(PgTransaction::Kind kind) const {
    return PgTransaction::begin(*pool_, kind);
  }

  static Status not_found(std::string_view name) {
    return Status(ErrorCode::kNotFound, fmt::format("no user named '{}'", name));
  }

  static Status exists(std::string_view name, std::string_view other) {
    return Status(ErrorCode::kAlreadyExists,
                  other == name ? fmt::format("user '{}' already exists", name)
                                : fmt::format("user '{}' already exists as '{}' (names differing "
                                              "only in case are not allowed)",
                                              name, other));
  }

  static Result<std::int64_t> find_user_id(PgTransaction& tx, std::string_view name) {
    auto rows = tx.exec("SELECT id FROM users WHERE name = $1", {PgParam::text(name)},
                        "cannot look up the user");
    if (!rows) {
      return make_error(rows.error());
    }
    if (rows->empty()) {
      return make_error(not_found(name));
    }
    return rows->int64(0, 0);
  }

  // Requires an open write transaction.
  Status insert_templates(PgTransaction& tx, std::int64_t user_id,
                          const std::vector<FaceTemplate>& templates,
                          std::int64_t created_at) const {
    for (const FaceTemplate& t : templates) {
      auto sealed = cipher_.seal_template(user_id, t.model_id, t.embedding);
      if (!sealed) {
        return sealed.error();
      }
      auto insert = tx.exec(
          "INSERT INTO templates (user_id, model_id, created_at, quality, ciphertext) "
          "VALUES ($1, $2, $3, $4, $5)",
          {PgParam::int64(user_id), PgParam::text(t.model_id), PgParam::int64(created_at),
           PgParam::float8(static_cast<double>(t.quality)), PgParam::bytes(*sealed)},
          "cannot store a template");
      if (!insert) {
        return insert.error();
      }
    }
    return Status::Ok();
  }

  const std::unique_ptr<PgPool> pool_;
  const TemplateCipher cipher_;
  const std::function<std::int64_t()> now_;
};

}  // namespace

Result<std::unique_ptr<Store>> open_postgres_store(const PostgresOptions& options) {
  auto cipher = TemplateCipher::create(options.key);
  if (!cipher) {
    return make_error(cipher.error());
  }
  auto pool = storage::open_postgres_database(options, [&](PgTransaction& tx) {
    return check_key(tx, *cipher, fmt::format("schema {} of {}", options.schema, tx.describe()));
  });
  if (!pool) {
    return make_error(pool.error());
  }
  std::function<std::int64_t()> now = options.now ? options.now : system_now;
  return std::unique_ptr<Store>(
      std::make_unique<PostgresStore>(std::move(*pool), std::move(*cipher), std::move(now)));
}

}  // namespace facelogin
