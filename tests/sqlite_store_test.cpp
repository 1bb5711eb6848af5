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
#include "test_data.h"

namespace facelogin {
namespace {

namespace fs = std::filesystem;

constexpr std::int64_t kNow = 1'700'000'000;

std::string key_of(char fill) { return std::string(32, fill); }

// A unit-length embedding that differs with `seed`.
FaceTemplate make_template(const std::string& model_id, float seed, float quality = 0.8f) {
  FaceTemplate t;
  t.model_id = model_id;
  t.quality = quality;
  t.embedding.resize(128);
  float norm = 0.f;
  for (std::size_t i = 0; i < t.embedding.size(); ++i) {
    t.embedding[i] = std::sin(seed * 1.7f + 0.31f * static_cast<float>(i));
    norm += t.embedding[i] * t.embedding[i];
  }
  for (float& v : t.embedding) {
    v /= std::sqrt(norm);
  }
  return t;
}

bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

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

TEST_F(StoreSqlite, CreatesAUserWithItsTemplates) {
  auto store = open_ok();
  ASSERT_TRUE(store);
  auto created = store->create_user("alice", {make_template("m1", 1), make_template("m1", 2)});
  ASSERT_TRUE(created.has_value()) << created.error().to_string();
  EXPECT_GT(created->id, 0);
  EXPECT_EQ(created->name, "alice");
  EXPECT_EQ(created->created_at, kNow);
  EXPECT_FALSE(created->disabled);
  EXPECT_EQ(created->template_count, 2);

  auto got = store->get_user("alice");
  ASSERT_TRUE(got.has_value()) << got.error().to_string();
  EXPECT_EQ(got->id, created->id);
  EXPECT_EQ(got->name, "alice");
  EXPECT_EQ(got->created_at, kNow);
  EXPECT_FALSE(got->disabled);
  EXPECT_EQ(got->template_count, 2);
}

TEST_F(StoreSqlite, ListsUsersInNameOrder) {
  auto store = open_ok();
  ASSERT_TRUE(store);
  auto empty = store->list_users();
  ASSERT_TRUE(empty.has_value());
  EXPECT_TRUE(empty->empty());
  for (const char* name : {"carol", "Bob", "alice"}) {
    ASSERT_TRUE(store->create_user(name, {make_template("m1", 1)}).has_value());
  }
  auto users = store->list_users();
  ASSERT_TRUE(users.has_value());
  ASSERT_EQ(users->size(), 3u);
  EXPECT_EQ((*users)[0].name, "alice");
  EXPECT_EQ((*users)[1].name, "Bob");
  EXPECT_EQ((*users)[2].name, "carol");
  EXPECT_EQ((*users)[0].template_count, 1);
}

TEST_F(StoreSqlite, ReportsAnUnknownUserAsNotFound) {
  auto store = open_ok();
  ASSERT_TRUE(store);
  EXPECT_EQ(store->get_user("nobody").error().code(), ErrorCode::kNotFound);
  EXPECT_EQ(store->user_templates("nobody").error().code(), ErrorCode::kNotFound);
  EXPECT_EQ(store->remove_user("nobody").code(), ErrorCode::kNotFound);
  EXPECT_EQ(store->set_disabled("nobody", true).code(), ErrorCode::kNotFound);
  EXPECT_EQ(store->add_templates("nobody", {make_template("m1", 1)}).code(),
            ErrorCode::kNotFound);
  EXPECT_EQ(store->remove_template("nobody", 1).code(), ErrorCode::kNotFound);
}

TEST_F(StoreSqlite, RemovesAUser) {
  auto store = open_ok();
  ASSERT_TRUE(store);
  ASSERT_TRUE(store->create_user("alice", {make_template("m1", 1)}).has_value());
  ASSERT_TRUE(store->create_user("bob", {make_template("m1", 2)}).has_value());
  ASSERT_TRUE(store->remove_user("alice").ok());
  EXPECT_EQ(store->get_user("alice").error().code(), ErrorCode::kNotFound);
  EXPECT_EQ(store->remove_user("alice").code(), ErrorCode::kNotFound);
  EXPECT_TRUE(store->get_user("bob").has_value());
}

TEST_F(StoreSqlite, RefusesADuplicateNameAndKeepsTheFirstUser) {
  auto store = open_ok();
  ASSERT_TRUE(store);
  ASSERT_TRUE(store->create_user("alice", {make_template("m1", 1)}).has_value());
  for (const char* name : {"alice", "Alice", "ALICE"}) {
    auto again = store->create_user(name, {make_template("m1", 9), make_template("m1", 8)});
    ASSERT_FALSE(again.has_value()) << name;
    EXPECT_EQ(again.error().code(), ErrorCode::kAlreadyExists) << name;
  }
  auto users = store->list_users();
  ASSERT_TRUE(users.has_value());
  ASSERT_EQ(users->size(), 1u);
  EXPECT_EQ((*users)[0].template_count, 1);
  auto templates = store->user_templates("alice");
  ASSERT_TRUE(templates.has_value());
  ASSERT_EQ(templates->size(), 1u);
  EXPECT_TRUE(same_bits((*templates)[0].face.embedding, make_template("m1", 1).embedding));
}

TEST_F(StoreSqlite, LooksUpNamesCaseSensitively) {
  // A login as "ALICE" must never be checked against alice's face.
  auto store = open_ok();
  ASSERT_TRUE(store);
  ASSERT_TRUE(store->create_user("alice", {make_template("m1", 1)}).has_value());
  EXPECT_EQ(store->get_user("ALICE").error().code(), ErrorCode::kNotFound);
  EXPECT_EQ(store->user_templates("Alice").error().code(), ErrorCode::kNotFound);
  EXPECT_EQ(store->remove_user("Alice").code(), ErrorCode::kNotFound);
  EXPECT_TRUE(store->get_user("alice").has_value());
}

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

TEST_F(StoreSqlite, RefusesMissingOrMalformedTemplatesAndCreatesNoUser) {
  auto store = open_ok();
  ASSERT_TRUE(store);
  FaceTemplate no_model = make_template("", 1);
  FaceTemplate empty = make_template("m1", 1);
  empty.embedding.clear();
  FaceTemplate not_finite = make_template("m1", 1);
  not_finite.embedding[3] = std::nanf("");
  FaceTemplate infinite_quality = make_template("m1", 1);
  infinite_quality.quality = INFINITY;
  const std::vector<std::vector<FaceTemplate>> bad = {
      {}, {no_model}, {empty}, {make_template("m1", 1), not_finite}, {infinite_quality}};
  for (const auto& templates : bad) {
    auto created = store->create_user("alice", templates);
    ASSERT_FALSE(created.has_value());
    EXPECT_EQ(created.error().code(), ErrorCode::kInvalidArgument);
  }
  EXPECT_EQ(store->get_user("alice").error().code(), ErrorCode::kNotFound);
}

TEST_F(StoreSqlite, ReturnsTemplatesExactlyAsStored) {
  auto store = open_ok();
  ASSERT_TRUE(store);
  const std::vector<FaceTemplate> templates = {make_template("m1", 1, 0.9f),
                                               make_template("m2", 2, 0.5f)};
  auto alice = store->create_user("alice", templates);
  ASSERT_TRUE(alice.has_value());
  auto stored = store->user_templates("alice");
  ASSERT_TRUE(stored.has_value()) << stored.error().to_string();
  ASSERT_EQ(stored->size(), 2u);
  for (std::size_t i = 0; i < templates.size(); ++i) {
    const StoredTemplate& s = (*stored)[i];
    EXPECT_GT(s.id, 0);
    EXPECT_EQ(s.user_id, alice->id);
    EXPECT_EQ(s.created_at, kNow);
    EXPECT_EQ(s.face.model_id, templates[i].model_id);
    EXPECT_FLOAT_EQ(s.face.quality, templates[i].quality);
    EXPECT_TRUE(same_bits(s.face.embedding, templates[i].embedding));
  }
  EXPECT_NE((*stored)[0].id, (*stored)[1].id);
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

TEST_F(StoreSqlite, AddsTemplatesToAnExistingUser) {
  auto store = open_ok();
  ASSERT_TRUE(store);
  ASSERT_TRUE(store->create_user("alice", {make_template("m1", 1)}).has_value());
  ASSERT_TRUE(store->add_templates("alice", {make_template("m1", 2), make_template("m1", 3)}).ok());
  auto alice = store->get_user("alice");
  ASSERT_TRUE(alice.has_value());
  EXPECT_EQ(alice->template_count, 3);
  auto stored = store->user_templates("alice");
  ASSERT_TRUE(stored.has_value());
  ASSERT_EQ(stored->size(), 3u);
  EXPECT_TRUE(same_bits((*stored)[2].face.embedding, make_template("m1", 3).embedding));
  EXPECT_EQ(store->add_templates("alice", {}).code(), ErrorCode::kInvalidArgument);
}

TEST_F(StoreSqlite, RemovesOnlyTheNamedTemplateOfThatUser) {
  auto store = open_ok();
  ASSERT_TRUE(store);
  ASSERT_TRUE(store->create_user("alice", {make_template("m1", 1), make_template("m1", 2)}));
  ASSERT_TRUE(store->create_user("bob", {make_template("m1", 3)}));
  auto alice_templates = store->user_templates("alice");
  auto bob_templates = store->user_templates("bob");
  ASSERT_TRUE(alice_templates.has_value());
  ASSERT_TRUE(bob_templates.has_value());

  // Bob's template cannot be removed through alice's name.
  EXPECT_EQ(store->remove_template("alice", (*bob_templates)[0].id).code(), ErrorCode::kNotFound);
  EXPECT_EQ(store->remove_template("alice", 999999).code(), ErrorCode::kNotFound);

  ASSERT_TRUE(store->remove_template("alice", (*alice_templates)[0].id).ok());
  auto left = store->user_templates("alice");
  ASSERT_TRUE(left.has_value());
  ASSERT_EQ(left->size(), 1u);
  EXPECT_EQ((*left)[0].id, (*alice_templates)[1].id);
  EXPECT_EQ(store->get_user("bob")->template_count, 1);
}

TEST_F(StoreSqlite, AllTemplatesFiltersByModelAndSkipsDisabledUsers) {
  auto store = open_ok();
  ASSERT_TRUE(store);
  ASSERT_TRUE(store->create_user("alice", {make_template("m1", 1), make_template("m2", 2)}));
  ASSERT_TRUE(store->create_user("bob", {make_template("m1", 3)}));
  ASSERT_TRUE(store->create_user("carol", {make_template("m1", 4)}));
  ASSERT_TRUE(store->set_disabled("carol", true).ok());
  EXPECT_TRUE(store->get_user("carol")->disabled);

  auto m1 = store->all_templates("m1");
  ASSERT_TRUE(m1.has_value()) << m1.error().to_string();
  ASSERT_EQ(m1->size(), 2u);
  EXPECT_EQ((*m1)[0].user_id, user_id(*store, "alice"));
  EXPECT_EQ((*m1)[1].user_id, user_id(*store, "bob"));
  for (const StoredTemplate& t : *m1) {
    EXPECT_EQ(t.face.model_id, "m1");
  }
  EXPECT_TRUE(same_bits((*m1)[1].face.embedding, make_template("m1", 3).embedding));

  auto m2 = store->all_templates("m2");
  ASSERT_TRUE(m2.has_value());
  ASSERT_EQ(m2->size(), 1u);
  EXPECT_EQ((*m2)[0].face.model_id, "m2");

  auto none = store->all_templates("m3");
  ASSERT_TRUE(none.has_value());
  EXPECT_TRUE(none->empty());

  ASSERT_TRUE(store->set_disabled("carol", false).ok());
  auto again = store->all_templates("m1");
  ASSERT_TRUE(again.has_value());
  EXPECT_EQ(again->size(), 3u);

  EXPECT_EQ(store->all_templates("").error().code(), ErrorCode::kInvalidArgument);
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

TEST_F(StoreSqlite, NeverReusesTheIdOfARemovedUser) {
  auto store = open_ok();
  ASSERT_TRUE(store);
  auto first = store->create_user("alice", {make_template("m1", 1)});
  ASSERT_TRUE(first.has_value());
  ASSERT_TRUE(store->remove_user("alice").ok());
  auto second = store->create_user("mallory", {make_template("m1", 2)});
  ASSERT_TRUE(second.has_value());
  EXPECT_GT(second->id, first->id);
}

TEST_F(StoreSqlite, KeepsItsDataWhenReopened) {
  {
    auto store = open_ok();
    ASSERT_TRUE(store);
    ASSERT_TRUE(store->create_user("alice", {make_template("m1", 1)}));
    ASSERT_TRUE(store->set_disabled("alice", true).ok());
  }
  auto store = open_ok();
  ASSERT_TRUE(store);
  EXPECT_EQ(store->schema_version(), storage::kSqliteSchemaVersion);
  auto alice = store->get_user("alice");
  ASSERT_TRUE(alice.has_value());
  EXPECT_TRUE(alice->disabled);
  auto stored = store->user_templates("alice");
  ASSERT_TRUE(stored.has_value());
  ASSERT_EQ(stored->size(), 1u);
  EXPECT_TRUE(same_bits((*stored)[0].face.embedding, make_template("m1", 1).embedding));
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

TEST_F(StoreSqlite, RefusesTheWrongKeyWhenOpening) {
  ASSERT_TRUE(open_ok());  // an empty database still records its key
  auto empty = open(key_of('w'));
  ASSERT_FALSE(empty.has_value());
  EXPECT_EQ(empty.error().code(), ErrorCode::kCorrupt);
  EXPECT_NE(empty.error().message().find("wrong key"), std::string::npos);

  {
    auto store = open_ok();
    ASSERT_TRUE(store);
    ASSERT_TRUE(store->create_user("alice", {make_template("m1", 1)}));
  }
  auto wrong = open(key_of('w'));
  ASSERT_FALSE(wrong.has_value());
  EXPECT_EQ(wrong.error().code(), ErrorCode::kCorrupt);
  EXPECT_NE(wrong.error().message().find("wrong key"), std::string::npos);
  EXPECT_TRUE(open_ok());
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

TEST_F(StoreSqlite, TwoThreadsCreatingUsersOnOneStoreBothSucceed) {
  auto store = open_ok();
  ASSERT_TRUE(store);
  constexpr int kPerThread = 25;
  std::atomic<int> failures{0};
  auto worker = [&](const std::string& prefix) {
    for (int i = 0; i < kPerThread; ++i) {
      if (!store->create_user(prefix + std::to_string(i), {make_template("m1", float(i))})) {
        ++failures;
      }
      if (!store->all_templates("m1")) {
        ++failures;
      }
    }
  };
  std::thread a(worker, "a");
  std::thread b(worker, "b");
  a.join();
  b.join();
  EXPECT_EQ(failures.load(), 0);
  auto users = store->list_users();
  ASSERT_TRUE(users.has_value());
  EXPECT_EQ(users->size(), std::size_t{2 * kPerThread});
}

TEST_F(StoreSqlite, TwoConnectionsCreatingUsersAtOnceBothSucceed) {
  ASSERT_TRUE(open_ok());  // create the file first, so both see the same schema
  auto first = open_ok();
  auto second = open_ok();
  ASSERT_TRUE(first);
  ASSERT_TRUE(second);
  constexpr int kPerThread = 25;
  std::atomic<int> failures{0};
  auto worker = [&](Store* store, const std::string& prefix) {
    for (int i = 0; i < kPerThread; ++i) {
      if (!store->create_user(prefix + std::to_string(i), {make_template("m1", float(i))})) {
        ++failures;
      }
    }
  };
  std::thread a(worker, first.get(), "a");
  std::thread b(worker, second.get(), "b");
  a.join();
  b.join();
  EXPECT_EQ(failures.load(), 0);
  auto users = first->list_users();
  ASSERT_TRUE(users.has_value());
  EXPECT_EQ(users->size(), std::size_t{2 * kPerThread});
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
