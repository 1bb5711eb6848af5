// The Store contract, run on every backend (SQLite and PostgreSQL) by one suite: what a caller
// of Store may rely on whichever database is behind it. Backend-specific behaviour (files,
// migrations of old SQLite files, tampering with rows) is tested in sqlite_store_test.cpp.

#include <gtest/gtest.h>

#include <atomic>
#include <string>
#include <thread>
#include <vector>

#include "facelogin/store.h"
#include "store_backends.h"
#include "store_fixtures.h"

namespace facelogin {
namespace {

using testing::key_of;
using testing::kNow;
using testing::make_template;
using testing::same_bits;

class StoreContract : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override { FACELOGIN_REQUIRE_BACKEND(db_); }

  Result<std::unique_ptr<Store>> open(const std::string& key) const {
    return db_.open_store(key, [] { return kNow; });
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

  testing::BackendDb db_{GetParam()};
  const std::string key_ = key_of('k');
};

TEST_P(StoreContract, CreatesAUserWithItsTemplates) {
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

TEST_P(StoreContract, ListsUsersInNameOrder) {
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

TEST_P(StoreContract, ReportsAnUnknownUserAsNotFound) {
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

TEST_P(StoreContract, RemovesAUser) {
  auto store = open_ok();
  ASSERT_TRUE(store);
  ASSERT_TRUE(store->create_user("alice", {make_template("m1", 1)}).has_value());
  ASSERT_TRUE(store->create_user("bob", {make_template("m1", 2)}).has_value());
  ASSERT_TRUE(store->remove_user("alice").ok());
  EXPECT_EQ(store->get_user("alice").error().code(), ErrorCode::kNotFound);
  EXPECT_EQ(store->remove_user("alice").code(), ErrorCode::kNotFound);
  EXPECT_TRUE(store->get_user("bob").has_value());
}

TEST_P(StoreContract, RefusesADuplicateNameAndKeepsTheFirstUser) {
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

TEST_P(StoreContract, LooksUpNamesCaseSensitively) {
  // A login as "ALICE" must never be checked against alice's face.
  auto store = open_ok();
  ASSERT_TRUE(store);
  ASSERT_TRUE(store->create_user("alice", {make_template("m1", 1)}).has_value());
  EXPECT_EQ(store->get_user("ALICE").error().code(), ErrorCode::kNotFound);
  EXPECT_EQ(store->user_templates("Alice").error().code(), ErrorCode::kNotFound);
  EXPECT_EQ(store->remove_user("Alice").code(), ErrorCode::kNotFound);
  EXPECT_TRUE(store->get_user("alice").has_value());
}

TEST_P(StoreContract, RefusesMissingOrMalformedTemplatesAndCreatesNoUser) {
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

TEST_P(StoreContract, ReturnsTemplatesExactlyAsStored) {
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

TEST_P(StoreContract, AddsTemplatesToAnExistingUser) {
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

TEST_P(StoreContract, RemovesOnlyTheNamedTemplateOfThatUser) {
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

TEST_P(StoreContract, AllTemplatesFiltersByModelAndSkipsDisabledUsers) {
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

TEST_P(StoreContract, NeverReusesTheIdOfARemovedUser) {
  auto store = open_ok();
  ASSERT_TRUE(store);
  auto first = store->create_user("alice", {make_template("m1", 1)});
  ASSERT_TRUE(first.has_value());
  ASSERT_TRUE(store->remove_user("alice").ok());
  auto second = store->create_user("mallory", {make_template("m1", 2)});
  ASSERT_TRUE(second.has_value());
  EXPECT_GT(second->id, first->id);
}

TEST_P(StoreContract, KeepsItsDataWhenReopened) {
  int version = 0;
  {
    auto store = open_ok();
    ASSERT_TRUE(store);
    version = store->schema_version();
    ASSERT_TRUE(store->create_user("alice", {make_template("m1", 1)}));
    ASSERT_TRUE(store->set_disabled("alice", true).ok());
  }
  auto store = open_ok();
  ASSERT_TRUE(store);
  EXPECT_EQ(store->schema_version(), version);
  auto alice = store->get_user("alice");
  ASSERT_TRUE(alice.has_value());
  EXPECT_TRUE(alice->disabled);
  auto stored = store->user_templates("alice");
  ASSERT_TRUE(stored.has_value());
  ASSERT_EQ(stored->size(), 1u);
  EXPECT_TRUE(same_bits((*stored)[0].face.embedding, make_template("m1", 1).embedding));
}

TEST_P(StoreContract, RefusesTheWrongKeyWhenOpening) {
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

TEST_P(StoreContract, TwoThreadsCreatingUsersOnOneStoreBothSucceed) {
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

TEST_P(StoreContract, TwoConnectionsCreatingUsersAtOnceBothSucceed) {
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

TEST_P(StoreContract, TheGenerationMovesWithEveryChangeThatOneToNSearchSees) {
  auto store = open_ok();
  auto other = open_ok();  // another server's view of the same database
  ASSERT_TRUE(store);
  ASSERT_TRUE(other);
  std::int64_t last = *store->templates_generation();
  auto moved = [&](const char* what) {
    const std::int64_t now = *store->templates_generation();
    EXPECT_GT(now, last) << what;
    EXPECT_EQ(*other->templates_generation(), now) << what;
    last = now;
  };
  ASSERT_TRUE(store->create_user("alice", {make_template("m1", 1)}));
  moved("create_user");
  ASSERT_TRUE(store->add_templates("alice", {make_template("m1", 2)}).ok());
  moved("add_templates");
  auto stored = store->user_templates("alice");
  ASSERT_TRUE(stored);
  ASSERT_TRUE(store->remove_template("alice", (*stored)[0].id).ok());
  moved("remove_template");
  ASSERT_TRUE(store->set_disabled("alice", true).ok());
  moved("disable");
  ASSERT_TRUE(store->set_disabled("alice", false).ok());
  moved("enable");
  ASSERT_TRUE(store->remove_user("alice").ok());
  moved("remove_user");
  // Reads and refused writes change nothing.
  ASSERT_TRUE(store->list_users());
  ASSERT_TRUE(store->all_templates("m1"));
  EXPECT_FALSE(store->create_user("bad name", {make_template("m1", 3)}));
  EXPECT_EQ(*store->templates_generation(), last);
}

INSTANTIATE_TEST_SUITE_P(Backends, StoreContract, ::testing::ValuesIn(testing::store_backends()),
                         testing::backend_param_name);

}  // namespace
}  // namespace facelogin
