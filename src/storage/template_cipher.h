#pragma once

// Authenticated encryption of templates at rest (internal to the storage component).
//
// AES-256-GCM, a fresh random 96-bit nonce per encryption. A sealed value is
//   version (1 byte, kCipherFormatVersion) | nonce (12 bytes) | ciphertext | tag (16 bytes)
// and the version byte is authenticated together with the caller's associated data. The
// associated data (see make_associated_data) names what a ciphertext is for: a template sealed for
// one user and model does not open as another user's or another model's (kCorrupt).

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

#include "facelogin/status.h"

namespace facelogin::storage {

inline constexpr std::size_t kKeySize = 32;
inline constexpr std::size_t kNonceSize = 12;
inline constexpr std::size_t kTagSize = 16;
inline constexpr std::uint8_t kCipherFormatVersion = 1;
// Bytes a sealed value has beyond its plaintext.
inline constexpr std::size_t kSealOverhead = 1 + kNonceSize + kTagSize;

// Purposes bound into the associated data, so a ciphertext made for one use never opens as another.
inline constexpr std::string_view kTemplatePurpose = "facelogin/template/v1";
inline constexpr std::string_view kKeyCheckPurpose = "facelogin/key-check/v1";

// Unambiguous encoding of (purpose, user id, model id): each string is length-prefixed, so no two
// different triples give the same bytes.
[[nodiscard]] std::vector<std::uint8_t> make_associated_data(std::string_view purpose,
                                                             std::int64_t user_id,
                                                             std::string_view model_id);

// An embedding as bytes: its float count (uint32, little-endian), then each float's IEEE 754
// bits, little-endian. The same bytes on every host.
[[nodiscard]] std::vector<std::uint8_t> serialize_embedding(std::span<const float> embedding);
// The inverse. kCorrupt if the length prefix does not match the size.
[[nodiscard]] Result<std::vector<float>> parse_embedding(std::span<const std::uint8_t> bytes);

// Holds one AES-256 key; the key bytes are wiped when it is destroyed. Move-only.
// Thread-safe: seal() and open() are const and keep no state between calls.
class TemplateCipher {
 public:
  // kInvalidArgument unless `key` is exactly kKeySize bytes.
  [[nodiscard]] static Result<TemplateCipher> create(std::string_view key);

  TemplateCipher(const TemplateCipher&) = delete;
  TemplateCipher& operator=(const TemplateCipher&) = delete;
  TemplateCipher(TemplateCipher&& other) noexcept;
  TemplateCipher& operator=(TemplateCipher&& other) noexcept;
  ~TemplateCipher();

  // Encrypts `plaintext` bound to `associated_data`. kInternal if OpenSSL fails (it should not).
  [[nodiscard]] Result<std::vector<std::uint8_t>> seal(
      std::span<const std::uint8_t> plaintext,
      std::span<const std::uint8_t> associated_data) const;
  // Decrypts and authenticates. kCorrupt if anything was changed, the associated data differs,
  // or the key is not the one it was sealed with; nothing of the plaintext is returned then.
  [[nodiscard]] Result<std::vector<std::uint8_t>> open(
      std::span<const std::uint8_t> sealed, std::span<const std::uint8_t> associated_data) const;

  // Convenience for templates: seals serialize_embedding(embedding) bound to the user and model.
  [[nodiscard]] Result<std::vector<std::uint8_t>> seal_template(
      std::int64_t user_id, std::string_view model_id, std::span<const float> embedding) const;
  // The inverse; kCorrupt as for open().
  [[nodiscard]] Result<std::vector<float>> open_template(
      std::int64_t user_id, std::string_view model_id,
      std::span<const std::uint8_t> sealed) const;

 private:
  TemplateCipher() = default;

  std::array<unsigned char, kKeySize> key_{};
};

}  // namespace facelogin::storage
