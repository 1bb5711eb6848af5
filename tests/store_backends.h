#pragma once

// The storage backends the shared suites (store_contract_test.cpp, auth_test.cpp) run on, each
// test on a fresh database: SQLite in a temporary file, PostgreSQL in a fresh schema of the
// database that FACELOGIN_TEST_POSTGRES names (a libpq connection string; tools/test.sh starts a
// throwaway cluster and sets it). Without it the PostgreSQL cases skip, except under CI, where
// that is a failure.

#include <gtest/gtest.h>

#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "facelogin/auth_store.h"
#include "facelogin/postgres_store.h"
#include "facelogin/status.h"
#include "facelogin/store.h"

namespace facelogin::testing {

// "sqlite", "postgres".
std::vector<std::string> store_backends();
// The test name suffix of a backend parameter ("sqlite", "postgres").
inline std::string backend_param_name(const ::testing::TestParamInfo<std::string>& param) {
  return param.param;
}

class BackendDb {
 public:
  explicit BackendDb(std::string backend);
  ~BackendDb();
  BackendDb(const BackendDb&) = delete;
  BackendDb& operator=(const BackendDb&) = delete;

  // Why this backend cannot run here (the test should skip), or nullopt.
  const std::optional<std::string>& unavailable() const { return unavailable_; }
  const std::string& backend() const { return backend_; }
  // The SQLite backend's database file.
  std::filesystem::path sqlite_file() const { return dir_ / "facelogin.db"; }

  // A new store object on this database (call again to "reopen").
  [[nodiscard]] Result<std::unique_ptr<Store>> open_store(
      const std::string& key, std::function<std::int64_t()> now = {}) const;
  [[nodiscard]] Result<std::unique_ptr<AuthStore>> open_auth_store() const;

 private:
  PostgresOptions pg_options() const;

  std::string backend_;
  std::optional<std::string> unavailable_;
  std::filesystem::path dir_;     // sqlite
  std::string conninfo_;          // postgres
  std::string schema_;            // postgres
};

}  // namespace facelogin::testing

// Skips (or, under CI, fails) a test whose backend is not available.
#define FACELOGIN_REQUIRE_BACKEND(db)                                              \
  if ((db).unavailable()) {                                                        \
    if (std::getenv("CI") != nullptr) {                                            \
      FAIL() << *(db).unavailable();                                               \
    }                                                                              \
    GTEST_SKIP() << *(db).unavailable();                                           \
  }
