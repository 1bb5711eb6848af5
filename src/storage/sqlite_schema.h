#pragma once

// Identity of the SQLite schema (internal to storage; tests use it to build old databases).

#include <cstdint>

namespace facelogin::storage {

// `PRAGMA application_id` of every facelogin database: "FLGN". It tells our file from any other
// SQLite file, which a version number alone cannot.
inline constexpr std::int32_t kSqliteApplicationId = 0x464C474E;

// `PRAGMA user_version` after all migrations. Raise it only by appending a migration.
inline constexpr int kSqliteSchemaVersion = 5;

}  // namespace facelogin::storage
