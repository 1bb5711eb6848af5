#include "storage/store_rules.h"

#include "facelogin/store.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>

namespace facelogin::storage {

Status validate_templates(const std::vector<FaceTemplate>& templates) {
  if (templates.empty()) {
    return Status(ErrorCode::kInvalidArgument, "at least one template is needed");
  }
  for (std::size_t i = 0; i < templates.size(); ++i) {
    const FaceTemplate& t = templates[i];
    const std::string which = fmt::format("template {}", i + 1);
    if (t.model_id.empty() || t.model_id.size() > kMaxModelIdLength) {
      return Status(ErrorCode::kInvalidArgument,
                    fmt::format("{}: model id must be 1-{} bytes", which, kMaxModelIdLength));
    }
    if (t.embedding.empty() || t.embedding.size() > kMaxEmbeddingSize) {
      return Status(ErrorCode::kInvalidArgument,
                    fmt::format("{}: embedding must have 1-{} values", which, kMaxEmbeddingSize));
    }
    for (float v : t.embedding) {
      if (!std::isfinite(v)) {
        return Status(ErrorCode::kInvalidArgument,
                      fmt::format("{}: embedding has a value that is not finite", which));
      }
    }
    if (!std::isfinite(t.quality)) {
      return Status(ErrorCode::kInvalidArgument, fmt::format("{}: quality is not finite", which));
    }
  }
  return Status::Ok();
}

Status check_token_hash(std::string_view hash) {
  if (hash.size() != kTokenHashSize) {
    return Status(ErrorCode::kInvalidArgument, "a token hash must be 32 bytes");
  }
  return Status::Ok();
}

Status check_failure_key(std::string_view key) {
  if (key.empty() || key.size() > kMaxFieldLength) {
    return Status(ErrorCode::kInvalidArgument, "failure key must be 1-512 bytes");
  }
  return Status::Ok();
}

FailureState next_failure_state(const FailureState& current, std::int64_t updated_ms,
                                std::int64_t now_ms, std::int64_t forget_after_ms,
                                const LockoutRule& rule) {
  FailureState next;
  const bool stale = updated_ms + forget_after_ms < now_ms && current.locked_until_ms < now_ms;
  next.failures = (stale ? 0 : current.failures) + 1;
  const std::int64_t lock_ms = rule ? rule(next.failures) : 0;
  next.locked_until_ms = lock_ms > 0 ? std::max(current.locked_until_ms, now_ms + lock_ms)
                                     : (stale ? 0 : current.locked_until_ms);
  return next;
}

Status validate_api_key(const ApiKeyRecord& key) {
  if (Status s = validate_user_name(key.name); !s.ok()) {
    return Status(ErrorCode::kInvalidArgument,
                  "an API key name follows the user name rules: " + s.message());
  }
  if (key.scopes.empty()) {
    return Status(ErrorCode::kInvalidArgument, "an API key needs at least one scope");
  }
  for (const auto& scope : key.scopes) {
    if (scope != "login" && scope != "enroll" && scope != "admin") {
      std::string shown = scope.substr(0, 64);
      std::replace_if(
          shown.begin(), shown.end(), [](char c) { return c < 0x20 || c > 0x7e; }, '?');
      return Status(ErrorCode::kInvalidArgument,
                    fmt::format("unknown scope '{}' (login, enroll, admin)", shown));
    }
  }
  if (!key.liveness.empty() && key.liveness != "adaptive" && key.liveness != "passive" &&
      key.liveness != "active" && key.liveness != "off") {
    return Status(ErrorCode::kInvalidArgument,
                  "liveness must be adaptive, passive, active, off or empty");
  }
  return Status::Ok();
}

Result<std::vector<StoredTemplate>> decrypt_templates(const TemplateCipher& cipher,
                                                      std::vector<SealedRow> rows) {
  std::vector<StoredTemplate> out;
  out.reserve(rows.size());
  for (SealedRow& row : rows) {
    auto embedding = cipher.open_template(row.user_id, row.model_id, row.ciphertext);
    if (!embedding) {
      return make_error(ErrorCode::kCorrupt,
                        fmt::format("template {} failed its integrity check (tampered with, "
                                    "moved to another user or model, or the wrong key)",
                                    row.id));
    }
    StoredTemplate t;
    t.id = row.id;
    t.user_id = row.user_id;
    t.created_at = row.created_at;
    t.face.model_id = std::move(row.model_id);
    t.face.embedding = std::move(*embedding);
    t.face.quality = row.quality;
    out.push_back(std::move(t));
  }
  return out;
}

std::string join_scopes(const std::vector<std::string>& scopes) {
  std::string out;
  for (const auto& s : scopes) {
    out += out.empty() ? s : "," + s;
  }
  return out;
}

std::vector<std::string> split_scopes(std::string_view text) {
  std::vector<std::string> out;
  while (!text.empty()) {
    const std::size_t comma = std::min(text.find(','), text.size());
    out.emplace_back(text.substr(0, comma));
    text = comma < text.size() ? text.substr(comma + 1) : std::string_view();
  }
  return out;
}

}  // namespace facelogin::storage
