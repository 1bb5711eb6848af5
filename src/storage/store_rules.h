#pragma once

// What every storage backend checks and encodes the same way (internal to storage): template
// and API-key validation, token hashes, scope lists. One copy, so SQLite and PostgreSQL cannot
// drift apart (the shared test suites check the results).

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include "facelogin/auth_store.h"
#include "facelogin/face_template.h"
#include "facelogin/status.h"

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
// policy other than "", "passive", "active", "off". An unknown scope is echoed with anything but
// printable ASCII replaced by '?'.
[[nodiscard]] Status validate_api_key(const ApiKeyRecord& key);

// Scopes as stored: "login,enroll".
[[nodiscard]] std::string join_scopes(const std::vector<std::string>& scopes);
[[nodiscard]] std::vector<std::string> split_scopes(std::string_view text);

}  // namespace facelogin::storage
