#include "store_backends.h"

#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <random>

#include "facelogin/postgres_store.h"
#include "test_data.h"

namespace facelogin::testing {
std::vector<std::string> store_backends() { return {"sqlite", "postgres"}; }

BackendDb::BackendDb(std::string backend) : backend_(std::move(backend)) {
  if (backend_ == "sqlite") {
    dir_ = make_temp_dir("facelogin-backend");
    return;
  }
  const char* conninfo = std::getenv("FACELOGIN_TEST_POSTGRES");
  if (conninfo == nullptr || *conninfo == '\0') {
    unavailable_ = "FACELOGIN_TEST_POSTGRES is not set (tools/test.sh starts a PostgreSQL "
                   "cluster and sets it): skipping the PostgreSQL case";
    return;
  }
  conninfo_ = conninfo;
  static std::atomic<int> counter{0};
  std::random_device rd;
  schema_ = "test_" + std::to_string(::getpid()) + "_" + std::to_string(counter++) + "_" +
            std::to_string(rd() % 1'000'000);
  // The schema is made by the store itself on open; dropping a leftover one makes it fresh.
  if (Status s = drop_postgres_schema(pg_options()); !s.ok()) {
    unavailable_ = "cannot reach PostgreSQL at FACELOGIN_TEST_POSTGRES: " + s.message();
  }
}

BackendDb::~BackendDb() {
  if (!dir_.empty()) {
    std::filesystem::remove_all(dir_);
  }
  if (!schema_.empty() && !unavailable_) {
    (void)drop_postgres_schema(pg_options());
  }
}

Result<std::unique_ptr<Store>> BackendDb::open_store(const std::string& key,
                                                     std::function<std::int64_t()> now) const {
  if (backend_ == "sqlite") {
    SqliteStoreOptions options;
    options.key = key;
    options.now = std::move(now);
    return open_sqlite_store(sqlite_file(), options);
  }
  PostgresOptions options = pg_options();
  options.key = key;
  options.now = std::move(now);
  return open_postgres_store(options);
}

Result<std::unique_ptr<AuthStore>> BackendDb::open_auth_store() const {
  if (backend_ == "sqlite") {
    return open_sqlite_auth_store(sqlite_file());
  }
  return open_postgres_auth_store(pg_options());
}

PostgresOptions BackendDb::pg_options() const {
  PostgresOptions options;
  options.conninfo = conninfo_;
  options.schema = schema_;
  return options;
}

}  // namespace facelogin::testing
