#pragma once

// What every storage backend checks and encodes the same way (internal to storage): template
// and API-key validation, token hashes, scope lists. One copy, so SQLite and PostgreSQL cannot
// drift apart (the shared test suites check the results).

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "facelogin/auth_store.h"
#include "facelogin/face_template.h"
#include "facelogin/status.h"
#include "facelogin/store.h"
#include "storage/template_cipher.h"

namespace facelogin::storage {

inline constexpr std::size_t kTokenHashSize = 32;  // SHA-256
inline constexpr std::size_t kMaxFieldLength = 512;
inline constexpr std::size_t kMaxModelIdLength = 128;
inline constexpr std::size_t kMaxEmbeddingSize = 8192;

// kInvalidArgument naming the template (1-based) and what is wrong: none given, a model id
// that is empty or too long, an empty or oversized embedding, a value that is not finite.
[[nodiscard]] Status validate_templates(const std::vector<FaceTemplate>& templates);

// kInvalidArgument unless `hash` is kTokenHashSize bytes.
[[nodiscard]] Status check_token_hash(std::string_view hash);

// kInvalidArgument for a bad name (user name rules), no scope or an unknown one, or a liveness
// policy other than "", "adaptive", "passive", "active", "off". An unknown scope is echoed with anything but
// printable ASCII replaced by '?'.
[[nodiscard]] Status validate_api_key(const ApiKeyRecord& key);

// A template row as read, before decryption.
struct SealedRow {
  std::int64_t id;
  std::int64_t user_id;
  std::int64_t created_at;
  std::string model_id;
  float quality;
  std::vector<std::uint8_t> ciphertext;
};

// Decrypts rows read by a store (call it with no lock or connection held: the cipher is
// thread-safe and decryption is the slow part). Errors: kCorrupt naming the template that failed
// its integrity check (tampered with, moved to another user or model, or the wrong key).
[[nodiscard]] Result<std::vector<StoredTemplate>> decrypt_templates(const TemplateCipher& cipher,
                                                                    std::vector<SealedRow> rows);

// kInvalidArgument unless a failure counter's key is 1-512 bytes.
[[nodiscard]] Status check_failure_key(std::string_view key);

// The lockout arithmetic of AuthStore::record_failure, one copy for every backend: the counter
// `current` (zeros when there is none), last written at `updated_ms`, takes one more failure at
// `now_ms`. A counter untouched for `forget_after_ms` and not locked starts again from zero;
// `rule` gives the lock for the new count (0: none), which never shortens a lock in force.
[[nodiscard]] FailureState next_failure_state(const FailureState& current, std::int64_t updated_ms,
                                              std::int64_t now_ms, std::int64_t forget_after_ms,
                                              const LockoutRule& rule);

// Scopes as stored: "login,enroll".
[[nodiscard]] std::string join_scopes(const std::vector<std::string>& scopes);
[[nodiscard]] std::vector<std::string> split_scopes(std::string_view text);

}  // namespace facelogin::storage
