// AuthStore (SQLite) and Authenticator: sessions, lockout, audit, recovery codes.

#include "facelogin/auth.h"

#include <gtest/gtest.h>

#include <atomic>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <set>
#include <thread>

#include "facelogin/auth_store.h"
#include "facelogin/store.h"
#include "storage/store_rules.h"
#include "store_backends.h"
#include "test_data.h"

namespace facelogin {
namespace {

namespace fs = std::filesystem;

FaceTemplate some_template() {
  FaceTemplate t;
  t.model_id = "test-model";
  t.quality = 0.9f;
  t.embedding.assign(8, 1.f / std::sqrt(8.f));
  return t;
}

// Runs on every storage backend (SQLite, PostgreSQL): the AuthStore contract and the
// Authenticator on top of it.
class AuthTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    FACELOGIN_REQUIRE_BACKEND(db_);
    auto store = db_.open_store(std::string(32, 'k'));
    ASSERT_TRUE(store) << store.error().to_string();
    store_ = std::move(*store);
    auto auth = db_.open_auth_store();
    ASSERT_TRUE(auth) << auth.error().to_string();
    auth_store_ = std::move(*auth);
    ASSERT_TRUE(store_->create_user("alice", {some_template()}));
    ASSERT_TRUE(store_->create_user("bob", {some_template()}));
    auth_ = std::make_unique<Authenticator>(*store_, *auth_store_, AuthOptions{},
                                            [this] { return now_ms_.load(); });
  }

  testing::BackendDb db_{GetParam()};
  std::unique_ptr<Store> store_;
  std::unique_ptr<AuthStore> auth_store_;
  std::unique_ptr<Authenticator> auth_;
  std::atomic<std::int64_t> now_ms_{1'700'000'000'000};
};

// The lockout arithmetic both backends share (storage::next_failure_state).
TEST(FailureCounter, CountsForgetsAndNeverShortensALock) {
  using storage::next_failure_state;
  const LockoutRule lock_from_3 = [](int failures) -> std::int64_t {
    return failures >= 3 ? 60'000 : 0;
  };
  const std::int64_t forget = 3'600'000;
  FailureState s = next_failure_state({}, 0, 1'000, forget, lock_from_3);
  EXPECT_EQ(s.failures, 1);
  EXPECT_EQ(s.locked_until_ms, 0);
  s = next_failure_state(s, 1'000, 2'000, forget, lock_from_3);
  s = next_failure_state(s, 2'000, 3'000, forget, lock_from_3);
  EXPECT_EQ(s.failures, 3);
  EXPECT_EQ(s.locked_until_ms, 63'000);
  // A later failure under a shorter rule keeps the lock in force.
  const FailureState kept = next_failure_state(
      s, 3'000, 4'000, forget, [](int) -> std::int64_t { return 1'000; });
  EXPECT_EQ(kept.locked_until_ms, 63'000);
  // Untouched for longer than `forget` and no longer locked: it starts again from zero.
  const FailureState fresh = next_failure_state(s, 3'000, 3'000 + forget + 70'000, forget, {});
  EXPECT_EQ(fresh.failures, 1);
  EXPECT_EQ(fresh.locked_until_ms, 0);
  // ... but not while a lock holds, however old the last write.
  FailureState long_lock{4, 10 * forget};
  const FailureState held = next_failure_state(long_lock, 0, 2 * forget, forget, {});
  EXPECT_EQ(held.failures, 5);
  EXPECT_EQ(held.locked_until_ms, 10 * forget);
}

TEST(Tokens, RandomHexAndDistinct) {
  std::set<std::string> seen;
  for (int i = 0; i < 100; ++i) {
    auto t = random_token();
    ASSERT_TRUE(t);
    EXPECT_EQ(t->size(), 64u);
    EXPECT_EQ(t->find_first_not_of("0123456789abcdef"), std::string::npos);
    seen.insert(*t);
  }
  EXPECT_EQ(seen.size(), 100u);
}

TEST(Tokens, HashIsSha256) {
  // SHA-256("abc"), FIPS 180-2 appendix B.1.
  const std::string h = token_hash("abc");
  ASSERT_EQ(h.size(), 32u);
  EXPECT_EQ(static_cast<unsigned char>(h[0]), 0xbau);
  EXPECT_EQ(static_cast<unsigned char>(h[31]), 0xadu);
  EXPECT_TRUE(constant_time_equal("same", "same"));
  EXPECT_FALSE(constant_time_equal("same", "sane"));
  EXPECT_FALSE(constant_time_equal("same", "same!"));
}

TEST_P(AuthTest, SessionRoundTripStoresOnlyTheHash) {
  auto issued = auth_->issue_session("alice", "cookie", "192.0.2.1", "test-agent");
  ASSERT_TRUE(issued) << issued.error().to_string();
  EXPECT_FALSE(issued->csrf.empty());
  EXPECT_EQ(issued->csrf, Authenticator::csrf_for(issued->token));
  auto who = auth_->authenticate(issued->token);
  ASSERT_TRUE(who) << who.error().to_string();
  EXPECT_EQ(who->user.name, "alice");
  EXPECT_EQ(who->session.address, "192.0.2.1");

  // The database holds no copy of the token (checked on the SQLite file; both backends store
  // the same columns).
  if (db_.backend() == "sqlite") {
    std::ifstream in(db_.sqlite_file(), std::ios::binary);
    const std::string raw_db((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    EXPECT_FALSE(raw_db.empty());
    EXPECT_EQ(raw_db.find(issued->token), std::string::npos);
  }
  auto found = auth_store_->find_session(token_hash(issued->token));
  ASSERT_TRUE(found) << found.error().to_string();
  EXPECT_EQ(found->user, "alice");

  // A token one digit off, a malformed one and an empty one authenticate nobody.
  std::string other = issued->token;
  other[10] = other[10] == 'a' ? 'b' : 'a';
  for (const std::string& bad : {other, std::string("not-a-token"), std::string()}) {
    auto r = auth_->authenticate(bad);
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().code(), ErrorCode::kUnauthenticated);
  }
}

TEST_P(AuthTest, SessionsEndByExpiryLogoutDisableAndDeletion) {
  auto a = auth_->issue_session("alice", "bearer", "192.0.2.1", "");
  ASSERT_TRUE(a);
  EXPECT_TRUE(a->csrf.empty());
  now_ms_ += std::chrono::milliseconds(AuthOptions{}.bearer_session_ttl).count() + 1;
  EXPECT_FALSE(auth_->authenticate(a->token));

  auto b = auth_->issue_session("alice", "cookie", "192.0.2.1", "");
  ASSERT_TRUE(b);
  ASSERT_TRUE(auth_->authenticate(b->token));
  ASSERT_TRUE(auth_->logout(b->token).ok());
  EXPECT_FALSE(auth_->authenticate(b->token));
  EXPECT_TRUE(auth_->logout(b->token).ok());  // twice is fine

  auto c = auth_->issue_session("alice", "cookie", "192.0.2.1", "");
  ASSERT_TRUE(c);
  ASSERT_TRUE(store_->set_disabled("alice", true).ok());
  EXPECT_FALSE(auth_->authenticate(c->token));
  auto refused = auth_->issue_session("alice", "cookie", "192.0.2.1", "");
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().code(), ErrorCode::kForbidden);
  ASSERT_TRUE(store_->set_disabled("alice", false).ok());
  EXPECT_TRUE(auth_->authenticate(c->token));

  auto sessions = auth_store_->user_sessions("alice", now_ms_ / 1000);
  ASSERT_TRUE(sessions);
  EXPECT_EQ(sessions->size(), 1u);
  ASSERT_TRUE(store_->remove_user("alice").ok());
  EXPECT_FALSE(auth_->authenticate(c->token));  // cascaded away with the account

  auto nobody = auth_->issue_session("carol", "cookie", "192.0.2.1", "");
  ASSERT_FALSE(nobody);
  EXPECT_EQ(nobody.error().code(), ErrorCode::kNotFound);
}

TEST_P(AuthTest, RevokeOnlyOwnSessions) {
  auto a = auth_->issue_session("alice", "cookie", "192.0.2.1", "");
  auto b = auth_->issue_session("bob", "cookie", "192.0.2.2", "");
  ASSERT_TRUE(a && b);
  EXPECT_EQ(auth_store_->revoke_session("alice", b->id).code(), ErrorCode::kNotFound);
  EXPECT_TRUE(auth_->authenticate(b->token));
  ASSERT_TRUE(auth_store_->revoke_user_sessions("alice").ok());
  EXPECT_FALSE(auth_->authenticate(a->token));
  EXPECT_TRUE(auth_->authenticate(b->token));
}

TEST_P(AuthTest, ProgressiveLockoutPerAccountAndAddress) {
  const int free = AuthOptions{}.free_failures;
  for (int i = 0; i < free; ++i) {
    auto locked = auth_->record_failure("alice", "192.0.2.1");
    ASSERT_TRUE(locked);
    EXPECT_EQ(*locked, 0) << "failure " << i + 1;
  }
  auto first = auth_->record_failure("alice", "192.0.2.1");
  ASSERT_TRUE(first);
  EXPECT_EQ(*first, 60'000);
  // Locked for the account from any address, and for the address against any account.
  EXPECT_GT(*auth_->locked_for_ms("alice", "198.51.100.7"), 0);
  EXPECT_GT(*auth_->locked_for_ms("bob", "192.0.2.1"), 0);
  EXPECT_EQ(*auth_->locked_for_ms("bob", "198.51.100.7"), 0);

  auto second = auth_->record_failure("alice", "192.0.2.1");
  ASSERT_TRUE(second);
  EXPECT_EQ(*second, 120'000);  // doubles
  for (int i = 0; i < 30; ++i) {
    ASSERT_TRUE(auth_->record_failure("alice", ""));
  }
  EXPECT_EQ(*auth_->locked_for_ms("alice", ""), 3'600'000);  // capped at max_lock

  now_ms_ += 3'600'001;
  EXPECT_EQ(*auth_->locked_for_ms("alice", ""), 0);
  ASSERT_TRUE(auth_->record_success("alice").ok());
  auto after = auth_->record_failure("alice", "");
  ASSERT_TRUE(after);
  EXPECT_EQ(*after, 0);  // counting starts again after a success
}

// Issue 17: the lockout model. An address's own failures lock it; strangers' failures on an
// account lock that account's face login from strangers' contexts only; recovery codes are held
// per address and (account, address), never for the account as a whole.
TEST_P(AuthTest, StrangersCannotLockTheOwnerOutOfAKnownContextOrRecovery) {
  const int free = AuthOptions{}.free_failures;
  // alice has logged in from 192.0.2.1: that address is a known context for her.
  ASSERT_TRUE(auth_->issue_session("alice", "cookie", "192.0.2.1", ""));
  EXPECT_TRUE(*auth_->known_context("alice", "192.0.2.1"));
  EXPECT_FALSE(*auth_->known_context("alice", "198.51.100.1"));
  EXPECT_FALSE(*auth_->known_context("bob", "192.0.2.1"));

  // Face failures from many strangers' addresses, one each: no address or pair is locked...
  for (int i = 0; i <= free; ++i) {
    ASSERT_TRUE(auth_->record_failure("alice", "198.51.100." + std::to_string(i)));
  }
  // ...but the account is, for any address she has not used,
  EXPECT_GT(*auth_->locked_for_ms("alice", "203.0.113.9"), 0);
  // not for her own address, and not for her recovery code from anywhere.
  EXPECT_EQ(*auth_->locked_for_ms("alice", "192.0.2.1"), 0);
  EXPECT_EQ(*auth_->locked_for_ms("alice", "203.0.113.9", AttemptKind::kRecovery), 0);
  EXPECT_EQ(*auth_->locked_for_ms("bob", "203.0.113.9"), 0);

  // Her own failures from her known address feed the pair, not the account-wide counter.
  const auto before = auth_store_->failure_state("user:alice")->failures;
  ASSERT_TRUE(auth_->record_failure("alice", "192.0.2.1"));
  EXPECT_EQ(auth_store_->failure_state("user:alice")->failures, before);
  EXPECT_EQ(auth_store_->failure_state("pair:192.0.2.1/alice")->failures, 1);

  // Wrong recovery codes count for the address and the pair only.
  for (int i = 0; i <= free; ++i) {
    ASSERT_TRUE(auth_->record_failure("bob", "203.0.113.50", AttemptKind::kRecovery));
  }
  EXPECT_EQ(auth_store_->failure_state("user:bob")->failures, 0);
  EXPECT_GT(*auth_->locked_for_ms("bob", "203.0.113.50", AttemptKind::kRecovery), 0);
  EXPECT_EQ(*auth_->locked_for_ms("bob", "203.0.113.51", AttemptKind::kRecovery), 0);
  EXPECT_EQ(*auth_->locked_for_ms("bob", "203.0.113.51"), 0);

  // A success clears the account's counter and the pair's, not the address's.
  ASSERT_TRUE(auth_->record_success("bob", "203.0.113.50").ok());
  EXPECT_EQ(auth_store_->failure_state("pair:203.0.113.50/bob")->failures, 0);
  EXPECT_GT(auth_store_->failure_state("addr:203.0.113.50")->failures, 0);

  // A context is known for known_context_ttl after the session was given.
  now_ms_ += std::chrono::milliseconds(AuthOptions{}.known_context_ttl).count() + 1000;
  EXPECT_FALSE(*auth_->known_context("alice", "192.0.2.1"));
}

TEST_P(AuthTest, ConcurrentFailuresAreAllCounted) {
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      auto other = db_.open_auth_store();  // like another server
      ASSERT_TRUE(other);
      for (int i = 0; i < 10; ++i) {
        ASSERT_TRUE((*other)->record_failure("user:bob", now_ms_, 86'400'000, {}));
      }
    });
  }
  for (auto& t : threads) {
    t.join();
  }
  auto state = auth_store_->failure_state("user:bob");
  ASSERT_TRUE(state);
  EXPECT_EQ(state->failures, 40);
}

TEST_P(AuthTest, AuditIsAppendOnlyNewestFirstAndFiltered) {
  for (int i = 0; i < 5; ++i) {
    AuditEvent e;
    e.event = "login";
    e.actor = "anonymous";
    e.subject = i % 2 == 0 ? "alice" : "bob";
    e.address = "192.0.2.1";
    e.outcome = i == 4 ? "ok" : "no_match";
    e.detail = R"({"best_score":0.42})";
    ASSERT_TRUE(auth_->audit(e).ok());
  }
  auto all = auth_store_->list_audit({});
  ASSERT_TRUE(all);
  ASSERT_EQ(all->size(), 5u);
  EXPECT_EQ(all->front().outcome, "ok");
  EXPECT_EQ(all->front().at_ms, now_ms_.load());
  auto alice = auth_store_->list_audit({.subject = "alice", .before_id = 0, .limit = 2});
  ASSERT_TRUE(alice);
  ASSERT_EQ(alice->size(), 2u);
  auto older =
      auth_store_->list_audit({.subject = "alice", .before_id = alice->back().id, .limit = 100});
  ASSERT_TRUE(older);
  EXPECT_EQ(older->size(), 1u);
  EXPECT_FALSE(auth_store_->list_audit({.subject = "", .before_id = 0, .limit = 0}));
  AuditEvent empty;
  EXPECT_EQ(auth_->audit(empty).code(), ErrorCode::kInvalidArgument);
}

TEST_P(AuthTest, RecoveryCodeWorksOnceForItsOwner) {
  auto code = random_token();
  ASSERT_TRUE(code);
  ASSERT_TRUE(auth_store_->set_recovery_code("alice", token_hash(*code)).ok());
  EXPECT_FALSE(*auth_store_->consume_recovery_code("bob", token_hash(*code)));
  EXPECT_FALSE(*auth_store_->consume_recovery_code("alice", token_hash("guess")));
  EXPECT_TRUE(*auth_store_->consume_recovery_code("alice", token_hash(*code)));
  EXPECT_FALSE(*auth_store_->consume_recovery_code("alice", token_hash(*code)));
  EXPECT_EQ(auth_store_->set_recovery_code("carol", token_hash(*code)).code(),
            ErrorCode::kNotFound);
}

TEST_P(AuthTest, RateTokensAreSharedByEveryStoreAndRefillWithTime) {
  auto other = db_.open_auth_store();  // like another server
  ASSERT_TRUE(other) << other.error().to_string();
  const std::int64_t t0 = now_ms_;
  int allowed = 0;
  RateDecision last;
  for (int i = 0; i < 8; ++i) {
    AuthStore& store = i % 2 == 0 ? *auth_store_ : **other;
    auto d = store.take_rate_token("addr:192.0.2.7", t0, 6);
    ASSERT_TRUE(d) << d.error().to_string();
    allowed += d->allowed ? 1 : 0;
    last = *d;
  }
  EXPECT_EQ(allowed, 6);
  EXPECT_FALSE(last.allowed);
  EXPECT_EQ(last.retry_after_s, 10);  // 6 a minute: one every 10 s
  // Another key has its own bucket; a clock going backwards refills nothing; time does.
  EXPECT_TRUE(auth_store_->take_rate_token("user:alice", t0, 6)->allowed);
  EXPECT_FALSE((*other)->take_rate_token("addr:192.0.2.7", t0 - 60'000, 6)->allowed);
  EXPECT_TRUE((*other)->take_rate_token("addr:192.0.2.7", t0 + 10'000, 6)->allowed);
  EXPECT_FALSE(auth_store_->take_rate_token("addr:192.0.2.7", t0 + 10'000, 6)->allowed);
  EXPECT_EQ(auth_store_->take_rate_token("", t0, 6).error().code(), ErrorCode::kInvalidArgument);
  EXPECT_EQ(auth_store_->take_rate_token("k", t0, 0).error().code(), ErrorCode::kInvalidArgument);
}

INSTANTIATE_TEST_SUITE_P(Backends, AuthTest, ::testing::ValuesIn(testing::store_backends()),
                         testing::backend_param_name);

}  // namespace
}  // namespace facelogin
