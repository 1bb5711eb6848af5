#pragma once

// Storage of enrolled users and their templates. The interface is what every backend
// (SQLite now, PostgreSQL later) implements; callers never see SQL.

#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "facelogin/face_template.h"
#include "facelogin/status.h"

namespace facelogin {

struct UserInfo {
  std::int64_t id = 0;
  std::string name;
  std::int64_t created_at = 0;  // Unix seconds, UTC
  bool disabled = false;
  int template_count = 0;
};

struct StoredTemplate {
  std::int64_t id = 0;
  std::int64_t user_id = 0;
  std::int64_t created_at = 0;
  FaceTemplate face;
};

// A user name: 1-64 characters of [A-Za-z0-9._@-], not starting with '-' or '.'.
// Returns kInvalidArgument with a reason otherwise.
[[nodiscard]] Status validate_user_name(std::string_view name);

// Thread-safe: every method may be called from any thread; each call is one transaction, so a
// failed call changes nothing.
class Store {
 public:
  virtual ~Store() = default;

  // The schema version this store is at after open (migrations applied).
  virtual int schema_version() const = 0;

  // Creates a user with the given templates in one transaction (a user is never visible without
  // its templates). Errors: kInvalidArgument (bad name, no templates), kAlreadyExists.
  [[nodiscard]] virtual Result<UserInfo> create_user(
      std::string_view name, const std::vector<FaceTemplate>& templates) = 0;
  // Adds templates to an existing user. Errors: kNotFound, kInvalidArgument.
  [[nodiscard]] virtual Status add_templates(std::string_view name,
                                             const std::vector<FaceTemplate>& templates) = 0;
  [[nodiscard]] virtual Result<UserInfo> get_user(std::string_view name) const = 0;
  [[nodiscard]] virtual Result<std::vector<UserInfo>> list_users() const = 0;
  // Deletes the user and all of their templates. Errors: kNotFound.
  [[nodiscard]] virtual Status remove_user(std::string_view name) = 0;
  // Deletes one template of a user. Errors: kNotFound.
  [[nodiscard]] virtual Status remove_template(std::string_view name, std::int64_t template_id) = 0;
  [[nodiscard]] virtual Status set_disabled(std::string_view name, bool disabled) = 0;

  // Templates of one user, decrypted. Errors: kNotFound, kCorrupt (a ciphertext failed
  // authentication: tampering, a row moved to another user, or the wrong key).
  [[nodiscard]] virtual Result<std::vector<StoredTemplate>> user_templates(
      std::string_view name) const = 0;
  // How many templates of enabled users `model_id` made (cheap: nothing is decrypted).
  [[nodiscard]] virtual Result<std::int64_t> count_templates(std::string_view model_id) const = 0;
  // A number that changes (grows) whenever all_templates() of any model may have changed: a
  // template added or removed (a user removed), a user disabled or enabled. Cheap; an in-memory
  // gallery checks it before each search to stay in step with every writer of the database.
  [[nodiscard]] virtual Result<std::int64_t> templates_generation() const = 0;
  // Every template of enabled users made by `model_id` (for 1:N search), decrypted.
  [[nodiscard]] virtual Result<std::vector<StoredTemplate>> all_templates(
      std::string_view model_id) const = 0;
};

struct SqliteStoreOptions {
  // 32 bytes of AES-256 key material; see load_or_create_key().
  std::string key;
  // How long a call waits for another connection's write lock before failing with kBusy.
  int busy_timeout_ms = 5000;
  // The current time in Unix seconds (UTC), for created_at. Empty: the system clock. Tests pass a
  // fixed clock.
  std::function<std::int64_t()> now;
};

// Opens (creating if absent) the SQLite database at `path` in WAL mode and migrates its schema
// to the current version. Errors: kIoError, kCorrupt (not a facelogin database, or a schema newer
// than this program knows), kInvalidArgument (key not 32 bytes).
[[nodiscard]] Result<std::unique_ptr<Store>> open_sqlite_store(const std::filesystem::path& path,
                                                               const SqliteStoreOptions& options);

// The template key: from the environment variable FACELOGIN_KEY (64 hex digits) if set,
// otherwise from `key_file`, which is created with 32 random bytes and mode 0600 if it does not
// exist. A key file readable by group or others is refused. The key is never logged.
// Errors: kInvalidArgument (malformed key), kIoError, kCorrupt (wrong size or permissions).
[[nodiscard]] Result<std::string> load_or_create_key(const std::filesystem::path& key_file);

}  // namespace facelogin
