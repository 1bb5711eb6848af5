#include "storage/template_cipher.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <set>
#include <string>
#include <vector>

namespace facelogin::storage {
namespace {

std::string key_of(unsigned char seed) {
  std::string key(kKeySize, '\0');
  for (std::size_t i = 0; i < key.size(); ++i) {
    key[i] = static_cast<char>(seed + 31 * i);
  }
  return key;
}

std::vector<float> sample_embedding(float phase = 0.f) {
  std::vector<float> v(128);
  for (std::size_t i = 0; i < v.size(); ++i) {
    v[i] = std::sin(phase + 0.37f * static_cast<float>(i));
  }
  return v;
}

TemplateCipher make_cipher(unsigned char seed = 1) {
  auto cipher = TemplateCipher::create(key_of(seed));
  EXPECT_TRUE(cipher.has_value());
  return std::move(*cipher);
}

bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

TEST(CryptoTemplateCipher, OpensWhatItSealed) {
  const TemplateCipher cipher = make_cipher();
  const std::vector<float> embedding = sample_embedding();
  auto sealed = cipher.seal_template(42, "sface-2021dec", embedding);
  ASSERT_TRUE(sealed.has_value()) << sealed.error().to_string();
  auto opened = cipher.open_template(42, "sface-2021dec", *sealed);
  ASSERT_TRUE(opened.has_value()) << opened.error().to_string();
  EXPECT_TRUE(same_bits(*opened, embedding));
}

TEST(CryptoTemplateCipher, LaysOutVersionNonceCiphertextAndTag) {
  const TemplateCipher cipher = make_cipher();
  const std::vector<std::uint8_t> plaintext = {1, 2, 3, 4, 5};
  auto sealed = cipher.seal(plaintext, {});
  ASSERT_TRUE(sealed.has_value());
  ASSERT_EQ(sealed->size(), 1 + kNonceSize + plaintext.size() + kTagSize);
  EXPECT_EQ((*sealed)[0], kCipherFormatVersion);
  // The ciphertext is not the plaintext.
  EXPECT_NE(std::vector<std::uint8_t>(sealed->begin() + 1 + kNonceSize,
                                      sealed->begin() + 1 + kNonceSize + plaintext.size()),
            plaintext);
}

TEST(CryptoTemplateCipher, SealsAndOpensAnEmptyValue) {
  const TemplateCipher cipher = make_cipher();
  auto sealed = cipher.seal({}, {});
  ASSERT_TRUE(sealed.has_value());
  EXPECT_EQ(sealed->size(), kSealOverhead);
  auto opened = cipher.open(*sealed, {});
  ASSERT_TRUE(opened.has_value());
  EXPECT_TRUE(opened->empty());
}

TEST(CryptoTemplateCipher, RejectsAChangeToAnyByte) {
  const TemplateCipher cipher = make_cipher();
  auto sealed = cipher.seal_template(7, "model", sample_embedding());
  ASSERT_TRUE(sealed.has_value());
  for (std::size_t i = 0; i < sealed->size(); ++i) {
    for (std::uint8_t flip : {std::uint8_t{0x01}, std::uint8_t{0x80}}) {
      std::vector<std::uint8_t> tampered = *sealed;
      tampered[i] ^= flip;
      auto opened = cipher.open_template(7, "model", tampered);
      ASSERT_FALSE(opened.has_value()) << "byte " << i << " flip " << int{flip};
      EXPECT_EQ(opened.error().code(), ErrorCode::kCorrupt);
    }
  }
}

TEST(CryptoTemplateCipher, RejectsATruncatedOrExtendedValue) {
  const TemplateCipher cipher = make_cipher();
  auto sealed = cipher.seal_template(7, "model", sample_embedding());
  ASSERT_TRUE(sealed.has_value());
  for (std::size_t size : {std::size_t{0}, std::size_t{1}, kSealOverhead - 1, kSealOverhead,
                           sealed->size() - 1}) {
    std::vector<std::uint8_t> cut(sealed->begin(), sealed->begin() + static_cast<long>(size));
    auto opened = cipher.open_template(7, "model", cut);
    ASSERT_FALSE(opened.has_value()) << "size " << size;
    EXPECT_EQ(opened.error().code(), ErrorCode::kCorrupt);
  }
  std::vector<std::uint8_t> longer = *sealed;
  longer.push_back(0);
  auto opened = cipher.open_template(7, "model", longer);
  ASSERT_FALSE(opened.has_value());
  EXPECT_EQ(opened.error().code(), ErrorCode::kCorrupt);
}

TEST(CryptoTemplateCipher, RejectsAnotherUserModelOrPurpose) {
  const TemplateCipher cipher = make_cipher();
  const std::vector<float> embedding = sample_embedding();
  auto sealed = cipher.seal_template(7, "model-a", embedding);
  ASSERT_TRUE(sealed.has_value());

  auto other_user = cipher.open_template(8, "model-a", *sealed);
  ASSERT_FALSE(other_user.has_value());
  EXPECT_EQ(other_user.error().code(), ErrorCode::kCorrupt);

  auto other_model = cipher.open_template(7, "model-b", *sealed);
  ASSERT_FALSE(other_model.has_value());
  EXPECT_EQ(other_model.error().code(), ErrorCode::kCorrupt);

  auto other_purpose = cipher.open(*sealed, make_associated_data(kKeyCheckPurpose, 7, "model-a"));
  ASSERT_FALSE(other_purpose.has_value());
  EXPECT_EQ(other_purpose.error().code(), ErrorCode::kCorrupt);
}

TEST(CryptoTemplateCipher, RejectsTheWrongKey) {
  const TemplateCipher right = make_cipher(1);
  const TemplateCipher wrong = make_cipher(2);
  auto sealed = right.seal_template(7, "model", sample_embedding());
  ASSERT_TRUE(sealed.has_value());
  auto opened = wrong.open_template(7, "model", *sealed);
  ASSERT_FALSE(opened.has_value());
  EXPECT_EQ(opened.error().code(), ErrorCode::kCorrupt);
}

TEST(CryptoTemplateCipher, UsesAFreshNonceForEverySeal) {
  const TemplateCipher cipher = make_cipher();
  const std::vector<float> embedding = sample_embedding();
  // Kept as strings: GCC 12 reports a false -Wstringop-overread for std::set of byte vectors.
  std::set<std::string> nonces;
  std::set<std::string> sealed_values;
  constexpr int kSeals = 200;
  for (int i = 0; i < kSeals; ++i) {
    auto sealed = cipher.seal_template(7, "model", embedding);
    ASSERT_TRUE(sealed.has_value());
    nonces.emplace(sealed->begin() + 1, sealed->begin() + 1 + kNonceSize);
    sealed_values.emplace(sealed->begin(), sealed->end());
  }
  EXPECT_EQ(nonces.size(), std::size_t{kSeals});
  EXPECT_EQ(sealed_values.size(), std::size_t{kSeals});
}

TEST(CryptoTemplateCipher, RefusesAKeyOfTheWrongSize) {
  for (std::size_t size : {std::size_t{0}, std::size_t{16}, kKeySize - 1, kKeySize + 1}) {
    auto cipher = TemplateCipher::create(std::string(size, 'k'));
    ASSERT_FALSE(cipher.has_value()) << "size " << size;
    EXPECT_EQ(cipher.error().code(), ErrorCode::kInvalidArgument);
  }
}

TEST(CryptoTemplateCipher, KeepsWorkingAfterAMove) {
  TemplateCipher first = make_cipher(3);
  auto sealed = first.seal_template(1, "m", sample_embedding());
  ASSERT_TRUE(sealed.has_value());
  TemplateCipher second = std::move(first);
  auto opened = second.open_template(1, "m", *sealed);
  ASSERT_TRUE(opened.has_value());
  EXPECT_TRUE(same_bits(*opened, sample_embedding()));
}

TEST(CryptoEmbeddingFormat, IsALittleEndianCountFollowedByLittleEndianFloats) {
  const std::vector<float> embedding = {1.0f, -2.0f};
  const std::vector<std::uint8_t> expected = {
      2, 0, 0,    0,     // count
      0, 0, 0x80, 0x3f,  // 1.0f
      0, 0, 0,    0xc0,  // -2.0f
  };
  EXPECT_EQ(serialize_embedding(embedding), expected);
}

TEST(CryptoEmbeddingFormat, RoundTripsEveryFloatBitExactly) {
  const std::vector<float> embedding = {0.f,
                                        -0.f,
                                        std::numeric_limits<float>::denorm_min(),
                                        std::numeric_limits<float>::max(),
                                        std::numeric_limits<float>::lowest(),
                                        0.1f};
  auto parsed = parse_embedding(serialize_embedding(embedding));
  ASSERT_TRUE(parsed.has_value());
  EXPECT_TRUE(same_bits(*parsed, embedding));
}

TEST(CryptoEmbeddingFormat, RejectsACountThatDoesNotMatchTheSize) {
  std::vector<std::uint8_t> bytes = serialize_embedding(std::vector<float>{1.f, 2.f, 3.f});
  for (std::vector<std::uint8_t> bad :
       {std::vector<std::uint8_t>{}, std::vector<std::uint8_t>{3, 0, 0},
        std::vector<std::uint8_t>(bytes.begin(), bytes.end() - 4),
        std::vector<std::uint8_t>(bytes.begin(), bytes.end() - 1)}) {
    auto parsed = parse_embedding(bad);
    ASSERT_FALSE(parsed.has_value()) << "size " << bad.size();
    EXPECT_EQ(parsed.error().code(), ErrorCode::kCorrupt);
  }
  bytes[0] = 0xff;  // claims 255 floats
  EXPECT_FALSE(parse_embedding(bytes).has_value());
}

TEST(CryptoAssociatedData, TellsApartFieldsThatConcatenateTheSame) {
  EXPECT_NE(make_associated_data("ab", 1, "c"), make_associated_data("a", 1, "bc"));
  EXPECT_NE(make_associated_data(kTemplatePurpose, 1, "m"),
            make_associated_data(kTemplatePurpose, 2, "m"));
  EXPECT_NE(make_associated_data(kTemplatePurpose, 1, "m"),
            make_associated_data(kKeyCheckPurpose, 1, "m"));
}

}  // namespace
}  // namespace facelogin::storage
