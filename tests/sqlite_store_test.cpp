#include <gtest/gtest.h>
#include <sqlite3.h>
#include <sys/stat.h>

#include <atomic>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <thread>
#include <vector>

#include "facelogin/store.h"
#include "storage/sqlite_schema.h"
#include "storage/template_cipher.h"
#include "store_fixtures.h"
#include "test_data.h"

namespace facelogin {
namespace {

namespace fs = std::filesystem;
using testing::key_of;
using testing::kNow;
using testing::make_template;
using testing::same_bits;

std::string read_bytes(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

// A plain SQLite connection for what a tamperer or an older program would do to the file.
class RawDb {
 public:
  explicit RawDb(const fs::path& path) {
    EXPECT_EQ(sqlite3_open(path.c_str(), &db_), SQLITE_OK);
    sqlite3_busy_timeout(db_, 5000);
  }
  ~RawDb() { sqlite3_close(db_); }
  RawDb(const RawDb&) = delete;
  RawDb& operator=(const RawDb&) = delete;

  void exec(const std::string& sql) {
    char* error = nullptr;
    const int rc = sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, &error);
    EXPECT_EQ(rc, SQLITE_OK) << sql << ": " << (error != nullptr ? error : "");
    sqlite3_free(error);
  }
  std::int64_t query_int(const std::string& sql) {
    sqlite3_stmt* stmt = nullptr;
    EXPECT_EQ(sqlite3_prepare_v2(db_, sql.c_str(), -1, &stmt, nullptr), SQLITE_OK) << sql;
    EXPECT_EQ(sqlite3_step(stmt), SQLITE_ROW) << sql;
    const std::int64_t v = sqlite3_column_int64(stmt, 0);
    sqlite3_finalize(stmt);
    return v;
  }
  std::string query_text(const std::string& sql) {
    sqlite3_stmt* stmt = nullptr;
    EXPECT_EQ(sqlite3_prepare_v2(db_, sql.c_str(), -1, &stmt, nullptr), SQLITE_OK) << sql;
    EXPECT_EQ(sqlite3_step(stmt), SQLITE_ROW) << sql;
    const auto* p = sqlite3_column_text(stmt, 0);
    std::string v = p != nullptr ? reinterpret_cast<const char*>(p) : "";
    sqlite3_finalize(stmt);
    return v;
  }
  std::vector<std::uint8_t> query_blob(const std::string& sql) {
    sqlite3_stmt* stmt = nullptr;
    EXPECT_EQ(sqlite3_prepare_v2(db_, sql.c_str(), -1, &stmt, nullptr), SQLITE_OK) << sql;
    EXPECT_EQ(sqlite3_step(stmt), SQLITE_ROW) << sql;
    const auto* p = static_cast<const std::uint8_t*>(sqlite3_column_blob(stmt, 0));
    std::vector<std::uint8_t> v(p, p + sqlite3_column_bytes(stmt, 0));
    sqlite3_finalize(stmt);
    return v;
  }
  void exec_with_blob(const std::string& sql, const std::vector<std::uint8_t>& blob) {
    sqlite3_stmt* stmt = nullptr;
    ASSERT_EQ(sqlite3_prepare_v2(db_, sql.c_str(), -1, &stmt, nullptr), SQLITE_OK) << sql;
    sqlite3_bind_blob(stmt, 1, blob.data(), static_cast<int>(blob.size()), SQLITE_TRANSIENT);
    EXPECT_EQ(sqlite3_step(stmt), SQLITE_DONE) << sql;
    sqlite3_finalize(stmt);
  }

 private:
  sqlite3* db_ = nullptr;
};

class StoreSqlite : public ::testing::Test {
 protected:
  void TearDown() override { fs::remove_all(dir_); }

  Result<std::unique_ptr<Store>> open(const std::string& key) const {
    SqliteStoreOptions options;
    options.key = key;
    options.now = [] { return kNow; };
    return open_sqlite_store(db_path_, options);
  }

  // Opens with the test key; fails the test if that is not possible.
  std::unique_ptr<Store> open_ok() const {
    auto store = open(key_);
    EXPECT_TRUE(store.has_value()) << store.error().to_string();
    return store ? std::move(*store) : nullptr;
  }

  std::int64_t user_id(Store& store, const std::string& name) const {
    auto user = store.get_user(name);
    EXPECT_TRUE(user.has_value()) << name;
    return user ? user->id : -1;
  }

  const fs::path dir_ = testing::make_temp_dir("facelogin-store-test");
  const fs::path db_path_ = dir_ / "facelogin.db";
  const std::string key_ = key_of('k');
};

TEST_F(StoreSqlite, RefusesInvalidNamesAndChangesNothing) {
  auto store = open_ok();
  ASSERT_TRUE(store);
  ASSERT_TRUE(store->create_user("alice", {make_template("m1", 1)}).has_value());
  const std::string bad_names[] = {
      "",
      std::string(65, 'a'),
      "../etc/passwd",
      "a/b",
      "/root",
      ".hidden",
      "-rf",
      "alice'; DROP TABLE users; --",
      "x' OR '1'='1",
      "bob\" OR 1=1",
      "robert'); DELETE FROM templates; --",
      std::string("nul\0byte", 8),
      "na\xc3\xafve",  // non-ASCII
      "two words",
      "tab\tname",
      "line\nbreak",
      "percent%",
  };
  for (const std::string& name : bad_names) {
    auto created = store->create_user(name, {make_template("m1", 5)});
    ASSERT_FALSE(created.has_value()) << name;
    EXPECT_EQ(created.error().code(), ErrorCode::kInvalidArgument) << name;
    EXPECT_EQ(store->get_user(name).error().code(), ErrorCode::kInvalidArgument) << name;
    EXPECT_EQ(store->remove_user(name).code(), ErrorCode::kInvalidArgument) << name;
    EXPECT_EQ(store->add_templates(name, {make_template("m1", 5)}).code(),
              ErrorCode::kInvalidArgument)
        << name;
    EXPECT_EQ(store->set_disabled(name, true).code(), ErrorCode::kInvalidArgument) << name;
  }
  auto users = store->list_users();
  ASSERT_TRUE(users.has_value());
  ASSERT_EQ(users->size(), 1u);
  EXPECT_EQ((*users)[0].name, "alice");
  EXPECT_EQ((*users)[0].template_count, 1);
  EXPECT_FALSE((*users)[0].disabled);
  RawDb raw(db_path_);
  EXPECT_EQ(raw.query_int("SELECT count(*) FROM templates"), 1);
}

TEST_F(StoreSqlite, StoresNoEmbeddingInTheClear) {
  auto store = open_ok();
  ASSERT_TRUE(store);
  const FaceTemplate t = make_template("m1", 1);
  ASSERT_TRUE(store->create_user("alice", {t}).has_value());
  store.reset();  // checkpoints the WAL into the file
  const std::string file = read_bytes(db_path_);
  // Eight consecutive floats of the embedding would show up if it were stored unencrypted.
  const std::string needle(reinterpret_cast<const char*>(t.embedding.data()), 8 * sizeof(float));
  EXPECT_EQ(file.find(needle), std::string::npos);
  EXPECT_NE(file.find("alice"), std::string::npos);  // the search itself works
}

TEST_F(StoreSqlite, RemovingAUserRemovesTheirTemplates) {
  auto store = open_ok();
  ASSERT_TRUE(store);
  ASSERT_TRUE(store->create_user("alice", {make_template("m1", 1), make_template("m2", 2)}));
  ASSERT_TRUE(store->create_user("bob", {make_template("m1", 3)}));
  const std::int64_t alice_id = user_id(*store, "alice");
  ASSERT_TRUE(store->remove_user("alice").ok());
  RawDb raw(db_path_);
  EXPECT_EQ(raw.query_int("SELECT count(*) FROM templates WHERE user_id = " +
                          std::to_string(alice_id)),
            0);
  EXPECT_EQ(raw.query_int("SELECT count(*) FROM templates"), 1);
}

TEST_F(StoreSqlite, CreatesTheDatabaseReadableOnlyByItsOwner) {
  auto store = open_ok();
  ASSERT_TRUE(store);
  ASSERT_TRUE(store->create_user("alice", {make_template("m1", 1)}));
  for (const fs::path& p : {db_path_, fs::path(db_path_.string() + "-wal")}) {
    struct stat st {};
    ASSERT_EQ(::stat(p.c_str(), &st), 0) << p;
    EXPECT_EQ(st.st_mode & 077, 0u) << p;
  }
  RawDb raw(db_path_);
  EXPECT_EQ(raw.query_text("PRAGMA journal_mode"), "wal");
}

TEST_F(StoreSqlite, RefusesAKeyOfTheWrongSize) {
  auto store = open(std::string(16, 'k'));
  ASSERT_FALSE(store.has_value());
  EXPECT_EQ(store.error().code(), ErrorCode::kInvalidArgument);
  EXPECT_FALSE(fs::exists(db_path_));
}

TEST_F(StoreSqlite, RefusesTheWrongKeyEvenWithoutAKeyCheck) {
  {
    auto store = open_ok();
    ASSERT_TRUE(store);
    ASSERT_TRUE(store->create_user("alice", {make_template("m1", 1)}));
  }
  {
    RawDb raw(db_path_);
    raw.exec("DELETE FROM meta");
  }
  auto wrong = open(key_of('w'));
  ASSERT_FALSE(wrong.has_value());
  EXPECT_EQ(wrong.error().code(), ErrorCode::kCorrupt);
  EXPECT_NE(wrong.error().message().find("wrong key"), std::string::npos);
  // The right key still opens it, and writes a new check.
  ASSERT_TRUE(open_ok());
  RawDb raw(db_path_);
  EXPECT_EQ(raw.query_int("SELECT count(*) FROM meta WHERE key = 'key_check'"), 1);
}

TEST_F(StoreSqlite, DetectsATemplateMovedToAnotherUser) {
  auto store = open_ok();
  ASSERT_TRUE(store);
  ASSERT_TRUE(store->create_user("alice", {make_template("m1", 1)}));
  ASSERT_TRUE(store->create_user("mallory", {make_template("m1", 2)}));
  {
    RawDb raw(db_path_);
    raw.exec(
        "UPDATE templates SET user_id = (SELECT id FROM users WHERE name = 'mallory') "
        "WHERE user_id = (SELECT id FROM users WHERE name = 'alice')");
  }
  auto mallory = store->user_templates("mallory");
  ASSERT_FALSE(mallory.has_value());
  EXPECT_EQ(mallory.error().code(), ErrorCode::kCorrupt);
  auto all = store->all_templates("m1");
  ASSERT_FALSE(all.has_value());
  EXPECT_EQ(all.error().code(), ErrorCode::kCorrupt);
}

TEST_F(StoreSqlite, DetectsACiphertextCopiedToAnotherUser) {
  auto store = open_ok();
  ASSERT_TRUE(store);
  ASSERT_TRUE(store->create_user("alice", {make_template("m1", 1)}));
  ASSERT_TRUE(store->create_user("mallory", {make_template("m1", 2)}));
  {
    RawDb raw(db_path_);
    raw.exec(
        "UPDATE templates SET ciphertext = (SELECT t.ciphertext FROM templates t JOIN users u "
        "ON u.id = t.user_id WHERE u.name = 'alice') "
        "WHERE user_id = (SELECT id FROM users WHERE name = 'mallory')");
  }
  auto mallory = store->user_templates("mallory");
  ASSERT_FALSE(mallory.has_value());
  EXPECT_EQ(mallory.error().code(), ErrorCode::kCorrupt);
  EXPECT_TRUE(store->user_templates("alice").has_value());
}

TEST_F(StoreSqlite, DetectsATemplateRelabelledAsAnotherModel) {
  auto store = open_ok();
  ASSERT_TRUE(store);
  ASSERT_TRUE(store->create_user("alice", {make_template("m1", 1)}));
  {
    RawDb raw(db_path_);
    raw.exec("UPDATE templates SET model_id = 'm2'");
  }
  auto all = store->all_templates("m2");
  ASSERT_FALSE(all.has_value());
  EXPECT_EQ(all.error().code(), ErrorCode::kCorrupt);
}

TEST_F(StoreSqlite, DetectsAChangedCiphertextByte) {
  auto store = open_ok();
  ASSERT_TRUE(store);
  ASSERT_TRUE(store->create_user("alice", {make_template("m1", 1)}));
  {
    RawDb raw(db_path_);
    std::vector<std::uint8_t> blob = raw.query_blob("SELECT ciphertext FROM templates");
    blob[blob.size() / 2] ^= 0x04;
    raw.exec_with_blob("UPDATE templates SET ciphertext = ?1", blob);
  }
  auto alice = store->user_templates("alice");
  ASSERT_FALSE(alice.has_value());
  EXPECT_EQ(alice.error().code(), ErrorCode::kCorrupt);
}

TEST_F(StoreSqlite, LeavesNothingBehindWhenAWriteFailsHalfWay) {
  auto store = open_ok();
  ASSERT_TRUE(store);
  ASSERT_TRUE(store->create_user("alice", {make_template("m1", 1)}));
  {
    // Makes the second template insert fail after the user row was written.
    RawDb raw(db_path_);
    raw.exec(
        "CREATE TRIGGER fail_poison BEFORE INSERT ON templates WHEN NEW.model_id = 'poison' "
        "BEGIN SELECT RAISE(ABORT, 'poisoned'); END");
  }
  auto created = store->create_user("bob", {make_template("m1", 2), make_template("poison", 3)});
  ASSERT_FALSE(created.has_value());
  EXPECT_EQ(store->get_user("bob").error().code(), ErrorCode::kNotFound);

  EXPECT_FALSE(store->add_templates("alice", {make_template("m1", 4), make_template("poison", 5)})
                   .ok());
  EXPECT_EQ(store->get_user("alice")->template_count, 1);

  RawDb raw(db_path_);
  EXPECT_EQ(raw.query_int("SELECT count(*) FROM templates"), 1);
  EXPECT_EQ(raw.query_int("SELECT count(*) FROM users"), 1);
}

TEST_F(StoreSqlite, MigratesAnEmptyDatabaseToTheCurrentVersion) {
  {
    RawDb raw(db_path_);
    raw.exec("PRAGMA page_size = 4096; VACUUM;");  // a valid SQLite file with no schema
  }
  ASSERT_GT(fs::file_size(db_path_), 0u);
  auto store = open_ok();
  ASSERT_TRUE(store);
  EXPECT_EQ(store->schema_version(), storage::kSqliteSchemaVersion);
  ASSERT_TRUE(store->create_user("alice", {make_template("m1", 1)}));
  RawDb raw(db_path_);
  EXPECT_EQ(raw.query_int("PRAGMA user_version"), storage::kSqliteSchemaVersion);
  EXPECT_EQ(raw.query_int("PRAGMA application_id"), storage::kSqliteApplicationId);
}

TEST_F(StoreSqlite, InitialisesAZeroLengthFile) {
  std::ofstream(db_path_).close();
  auto store = open_ok();
  ASSERT_TRUE(store);
  EXPECT_TRUE(store->create_user("alice", {make_template("m1", 1)}).has_value());
}

TEST_F(StoreSqlite, MigratesAVersionOneDatabaseAndKeepsItsData) {
  // The schema as version 1 of the program wrote it, frozen here on purpose: the migration under
  // test must work on files that exist, not on whatever migration 1 says today.
  const std::int64_t alice_id = 1;
  const FaceTemplate face = make_template("m1", 1, 0.75f);
  auto cipher = storage::TemplateCipher::create(key_);
  ASSERT_TRUE(cipher.has_value());
  auto sealed = cipher->seal_template(alice_id, "m1", face.embedding);
  ASSERT_TRUE(sealed.has_value());
  {
    RawDb raw(db_path_);
    raw.exec(R"sql(
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
      INSERT INTO users (id, name, created_at) VALUES (1, 'alice', 1600000000);
    )sql");
    raw.exec("PRAGMA application_id = " + std::to_string(storage::kSqliteApplicationId) +
             "; PRAGMA user_version = 1;");
    raw.exec_with_blob(
        "INSERT INTO templates (user_id, model_id, created_at, quality, ciphertext) "
        "VALUES (1, 'm1', 1600000000, 0.75, ?1)",
        *sealed);
  }

  auto store = open_ok();
  ASSERT_TRUE(store);
  EXPECT_EQ(store->schema_version(), storage::kSqliteSchemaVersion);
  auto alice = store->get_user("alice");
  ASSERT_TRUE(alice.has_value()) << alice.error().to_string();
  EXPECT_EQ(alice->id, alice_id);
  EXPECT_EQ(alice->created_at, 1600000000);
  EXPECT_FALSE(alice->disabled);
  EXPECT_EQ(alice->template_count, 1);
  auto stored = store->user_templates("alice");
  ASSERT_TRUE(stored.has_value()) << stored.error().to_string();
  ASSERT_EQ(stored->size(), 1u);
  EXPECT_TRUE(same_bits((*stored)[0].face.embedding, face.embedding));
  // What version 2 added works on the migrated file.
  ASSERT_TRUE(store->set_disabled("alice", true).ok());
  auto all = store->all_templates("m1");
  ASSERT_TRUE(all.has_value());
  EXPECT_TRUE(all->empty());

  RawDb raw(db_path_);
  EXPECT_EQ(raw.query_int("PRAGMA user_version"), storage::kSqliteSchemaVersion);
}

TEST_F(StoreSqlite, RefusesADatabaseFromANewerVersion) {
  ASSERT_TRUE(open_ok());
  {
    RawDb raw(db_path_);
    raw.exec("PRAGMA user_version = 99");
  }
  auto store = open(key_);
  ASSERT_FALSE(store.has_value());
  EXPECT_EQ(store.error().code(), ErrorCode::kCorrupt);
  EXPECT_NE(store.error().message().find("newer"), std::string::npos) << store.error().message();
  RawDb raw(db_path_);
  EXPECT_EQ(raw.query_int("PRAGMA user_version"), 99);
}

TEST_F(StoreSqlite, RefusesAFileThatIsNotSQLite) {
  const std::string text =
      "This is a text file that merely happens to sit where the database should be. It is long "
      "enough to hold an SQLite header, but it is not one.\n";
  std::ofstream(db_path_, std::ios::binary) << text;
  auto store = open(key_);
  ASSERT_FALSE(store.has_value());
  EXPECT_EQ(store.error().code(), ErrorCode::kCorrupt);
  EXPECT_NE(store.error().message().find("not a facelogin database"), std::string::npos)
      << store.error().message();
  EXPECT_EQ(read_bytes(db_path_), text);
}

TEST_F(StoreSqlite, RefusesAnotherProgramsSQLiteDatabaseWithoutTouchingIt) {
  {
    RawDb raw(db_path_);
    raw.exec("CREATE TABLE photos (id INTEGER PRIMARY KEY, path TEXT)");
  }
  auto store = open(key_);
  ASSERT_FALSE(store.has_value());
  EXPECT_EQ(store.error().code(), ErrorCode::kCorrupt);
  EXPECT_NE(store.error().message().find("not a facelogin"), std::string::npos)
      << store.error().message();
  RawDb raw(db_path_);
  EXPECT_EQ(raw.query_text("PRAGMA journal_mode"), "delete");
  EXPECT_EQ(raw.query_int("SELECT count(*) FROM sqlite_master"), 1);
}

TEST_F(StoreSqlite, ReportsBusyWhenAnotherConnectionHoldsTheWriteLock) {
  SqliteStoreOptions options;
  options.key = key_;
  options.busy_timeout_ms = 50;
  auto store = open_sqlite_store(db_path_, options);
  ASSERT_TRUE(store.has_value());
  RawDb raw(db_path_);
  raw.exec("BEGIN IMMEDIATE");
  auto created = (*store)->create_user("alice", {make_template("m1", 1)});
  ASSERT_FALSE(created.has_value());
  EXPECT_EQ(created.error().code(), ErrorCode::kBusy);
  // Reads go on while another connection writes (WAL).
  EXPECT_TRUE((*store)->list_users().has_value());
  raw.exec("COMMIT");
  EXPECT_TRUE((*store)->create_user("alice", {make_template("m1", 1)}).has_value());
}

TEST(StoreUserName, AcceptsOrdinaryNames) {
  for (const std::string name : {"alice", "a", "0", "Bob_Smith", "j.doe@example.com", "x-y",
                                 "_svc", "@team"}) {
    EXPECT_TRUE(validate_user_name(name).ok()) << name;
  }
  EXPECT_TRUE(validate_user_name(std::string(64, 'a')).ok());
}

TEST(StoreUserName, RefusesEmptyLongPathLikeAndUnusualNamesWithAReason) {
  for (const std::string& name : {std::string(), std::string(65, 'a'), std::string("-x"),
                                 std::string(".x"), std::string("a/b"), std::string("a\\b"),
                                 std::string("a b"), std::string("a'b"), std::string("a;b")}) {
    const Status s = validate_user_name(name);
    EXPECT_EQ(s.code(), ErrorCode::kInvalidArgument) << name;
    EXPECT_FALSE(s.message().empty());
  }
}

}  // namespace
}  // namespace facelogin
