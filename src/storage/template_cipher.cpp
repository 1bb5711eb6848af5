#include "storage/template_cipher.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include <bit>
#include <climits>
#include <cstring>
#include <limits>
#include <memory>
#include <string>

namespace facelogin::storage {
namespace {

static_assert(std::numeric_limits<float>::is_iec559 && sizeof(float) == 4,
              "templates are stored as IEEE 754 binary32");

struct CipherCtxDeleter {
  void operator()(EVP_CIPHER_CTX* ctx) const { EVP_CIPHER_CTX_free(ctx); }
};
using CipherCtx = std::unique_ptr<EVP_CIPHER_CTX, CipherCtxDeleter>;

void append_u32(std::vector<std::uint8_t>& out, std::uint32_t v) {
  for (int i = 0; i < 4; ++i) {
    out.push_back(static_cast<std::uint8_t>(v >> (8 * i)));
  }
}

void append_u64(std::vector<std::uint8_t>& out, std::uint64_t v) {
  for (int i = 0; i < 8; ++i) {
    out.push_back(static_cast<std::uint8_t>(v >> (8 * i)));
  }
}

std::uint32_t read_u32(const std::uint8_t* p) {
  return static_cast<std::uint32_t>(p[0]) | (static_cast<std::uint32_t>(p[1]) << 8) |
         (static_cast<std::uint32_t>(p[2]) << 16) | (static_cast<std::uint32_t>(p[3]) << 24);
}

void append_string(std::vector<std::uint8_t>& out, std::string_view s) {
  append_u32(out, static_cast<std::uint32_t>(s.size()));
  out.insert(out.end(), s.begin(), s.end());
}

tl::unexpected<Status> openssl_failure(std::string_view what) {
  return make_error(ErrorCode::kInternal, "OpenSSL failed to " + std::string(what));
}

// The authenticated data of every seal starts with the format version, so a value whose version
// byte was changed does not open even if a later version reused the layout.
bool add_associated_data(EVP_CIPHER_CTX* ctx, std::span<const std::uint8_t> associated_data,
                         bool encrypt) {
  auto update = encrypt ? EVP_EncryptUpdate : EVP_DecryptUpdate;
  int len = 0;
  const unsigned char version = kCipherFormatVersion;
  if (update(ctx, nullptr, &len, &version, 1) != 1) {
    return false;
  }
  if (!associated_data.empty() &&
      update(ctx, nullptr, &len, associated_data.data(), static_cast<int>(associated_data.size())) !=
          1) {
    return false;
  }
  return true;
}

}  // namespace

std::vector<std::uint8_t> make_associated_data(std::string_view purpose, std::int64_t user_id,
                                               std::string_view model_id) {
  std::vector<std::uint8_t> out;
  out.reserve(4 + purpose.size() + 8 + 4 + model_id.size());
  append_string(out, purpose);
  append_u64(out, static_cast<std::uint64_t>(user_id));
  append_string(out, model_id);
  return out;
}

std::vector<std::uint8_t> serialize_embedding(std::span<const float> embedding) {
  std::vector<std::uint8_t> out;
  out.reserve(4 + 4 * embedding.size());
  append_u32(out, static_cast<std::uint32_t>(embedding.size()));
  for (float f : embedding) {
    append_u32(out, std::bit_cast<std::uint32_t>(f));
  }
  return out;
}

Result<std::vector<float>> parse_embedding(std::span<const std::uint8_t> bytes) {
  if (bytes.size() < 4) {
    return make_error(ErrorCode::kCorrupt, "template is too short to hold its length");
  }
  const std::uint64_t count = read_u32(bytes.data());
  if ((bytes.size() - 4) % 4 != 0 || (bytes.size() - 4) / 4 != count) {
    return make_error(ErrorCode::kCorrupt, "template length does not match its size");
  }
  std::vector<float> out(count);
  for (std::size_t i = 0; i < count; ++i) {
    out[i] = std::bit_cast<float>(read_u32(bytes.data() + 4 + 4 * i));
  }
  return out;
}

Result<TemplateCipher> TemplateCipher::create(std::string_view key) {
  if (key.size() != kKeySize) {
    return make_error(ErrorCode::kInvalidArgument,
                      "template key must be " + std::to_string(kKeySize) + " bytes, got " +
                          std::to_string(key.size()));
  }
  TemplateCipher cipher;
  std::memcpy(cipher.key_.data(), key.data(), kKeySize);
  return cipher;
}

TemplateCipher::TemplateCipher(TemplateCipher&& other) noexcept : key_(other.key_) {
  OPENSSL_cleanse(other.key_.data(), other.key_.size());
}

TemplateCipher& TemplateCipher::operator=(TemplateCipher&& other) noexcept {
  if (this != &other) {
    key_ = other.key_;
    OPENSSL_cleanse(other.key_.data(), other.key_.size());
  }
  return *this;
}

TemplateCipher::~TemplateCipher() { OPENSSL_cleanse(key_.data(), key_.size()); }

Result<std::vector<std::uint8_t>> TemplateCipher::seal(
    std::span<const std::uint8_t> plaintext, std::span<const std::uint8_t> associated_data) const {
  if (plaintext.size() > static_cast<std::size_t>(INT_MAX) - kSealOverhead ||
      associated_data.size() > static_cast<std::size_t>(INT_MAX)) {
    return make_error(ErrorCode::kInvalidArgument, "value too large to encrypt");
  }
  std::vector<std::uint8_t> out(kSealOverhead + plaintext.size());
  out[0] = kCipherFormatVersion;
  unsigned char* nonce = out.data() + 1;
  unsigned char* body = nonce + kNonceSize;
  unsigned char* tag = body + plaintext.size();

  // A random 96-bit nonce per seal: with one key per installation and far fewer than 2^32 seals,
  // the chance of a repeat is negligible.
  if (RAND_bytes(nonce, static_cast<int>(kNonceSize)) != 1) {
    return openssl_failure("generate a nonce");
  }
  CipherCtx ctx(EVP_CIPHER_CTX_new());
  if (!ctx) {
    return openssl_failure("allocate a cipher context");
  }
  if (EVP_EncryptInit_ex(ctx.get(), EVP_aes_256_gcm(), nullptr, nullptr, nullptr) != 1 ||
      EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_SET_IVLEN, static_cast<int>(kNonceSize),
                          nullptr) != 1 ||
      EVP_EncryptInit_ex(ctx.get(), nullptr, nullptr, key_.data(), nonce) != 1) {
    return openssl_failure("initialise AES-256-GCM");
  }
  if (!add_associated_data(ctx.get(), associated_data, /*encrypt=*/true)) {
    return openssl_failure("authenticate the associated data");
  }
  int len = 0;
  if (!plaintext.empty() && EVP_EncryptUpdate(ctx.get(), body, &len, plaintext.data(),
                                              static_cast<int>(plaintext.size())) != 1) {
    return openssl_failure("encrypt");
  }
  int final_len = 0;
  if (EVP_EncryptFinal_ex(ctx.get(), body + len, &final_len) != 1 ||
      static_cast<std::size_t>(len + final_len) != plaintext.size()) {
    return openssl_failure("finish encryption");
  }
  if (EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_GET_TAG, static_cast<int>(kTagSize), tag) != 1) {
    return openssl_failure("produce the tag");
  }
  return out;
}

Result<std::vector<std::uint8_t>> TemplateCipher::open(
    std::span<const std::uint8_t> sealed, std::span<const std::uint8_t> associated_data) const {
  if (sealed.size() < kSealOverhead) {
    return make_error(ErrorCode::kCorrupt, "encrypted value is truncated");
  }
  if (sealed.size() > static_cast<std::size_t>(INT_MAX) ||
      associated_data.size() > static_cast<std::size_t>(INT_MAX)) {
    return make_error(ErrorCode::kCorrupt, "encrypted value is too large");
  }
  if (sealed[0] != kCipherFormatVersion) {
    return make_error(ErrorCode::kCorrupt, "encrypted value has unknown format version " +
                                               std::to_string(sealed[0]));
  }
  const std::size_t body_size = sealed.size() - kSealOverhead;
  const unsigned char* nonce = sealed.data() + 1;
  const unsigned char* body = nonce + kNonceSize;
  const unsigned char* tag = body + body_size;

  CipherCtx ctx(EVP_CIPHER_CTX_new());
  if (!ctx) {
    return openssl_failure("allocate a cipher context");
  }
  if (EVP_DecryptInit_ex(ctx.get(), EVP_aes_256_gcm(), nullptr, nullptr, nullptr) != 1 ||
      EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_SET_IVLEN, static_cast<int>(kNonceSize),
                          nullptr) != 1 ||
      EVP_DecryptInit_ex(ctx.get(), nullptr, nullptr, key_.data(), nonce) != 1) {
    return openssl_failure("initialise AES-256-GCM");
  }
  if (!add_associated_data(ctx.get(), associated_data, /*encrypt=*/false)) {
    return openssl_failure("authenticate the associated data");
  }
  std::vector<std::uint8_t> out(body_size);
  int len = 0;
  if (body_size > 0 &&
      EVP_DecryptUpdate(ctx.get(), out.data(), &len, body, static_cast<int>(body_size)) != 1) {
    return openssl_failure("decrypt");
  }
  // OpenSSL takes a non-const pointer for the expected tag but only reads it.
  std::array<unsigned char, kTagSize> expected_tag{};
  std::memcpy(expected_tag.data(), tag, kTagSize);
  if (EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_SET_TAG, static_cast<int>(kTagSize),
                          expected_tag.data()) != 1) {
    return openssl_failure("set the tag");
  }
  int final_len = 0;
  if (EVP_DecryptFinal_ex(ctx.get(), out.data() + len, &final_len) != 1) {
    // Unauthenticated plaintext must not leave this function, nor linger in memory.
    OPENSSL_cleanse(out.data(), out.size());
    return make_error(ErrorCode::kCorrupt,
                      "encrypted value failed authentication (tampered, moved, or wrong key)");
  }
  return out;
}

Result<std::vector<std::uint8_t>> TemplateCipher::seal_template(
    std::int64_t user_id, std::string_view model_id, std::span<const float> embedding) const {
  std::vector<std::uint8_t> plaintext = serialize_embedding(embedding);
  auto sealed = seal(plaintext, make_associated_data(kTemplatePurpose, user_id, model_id));
  OPENSSL_cleanse(plaintext.data(), plaintext.size());
  return sealed;
}

Result<std::vector<float>> TemplateCipher::open_template(
    std::int64_t user_id, std::string_view model_id, std::span<const std::uint8_t> sealed) const {
  auto plaintext = open(sealed, make_associated_data(kTemplatePurpose, user_id, model_id));
  if (!plaintext) {
    return make_error(plaintext.error());
  }
  auto embedding = parse_embedding(*plaintext);
  OPENSSL_cleanse(plaintext->data(), plaintext->size());
  return embedding;
}

}  // namespace facelogin::storage
