#include <gtest/gtest.h>
#include <sys/stat.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "facelogin/store.h"
#include "test_data.h"

namespace facelogin {
namespace {

namespace fs = std::filesystem;

// Sets (or unsets) an environment variable for the life of the object, then restores it.
class ScopedEnv {
 public:
  ScopedEnv(const char* name, std::optional<std::string> value) : name_(name) {
    if (const char* old = std::getenv(name)) {
      old_ = old;
    }
    set(value);
  }
  ~ScopedEnv() { set(old_); }
  ScopedEnv(const ScopedEnv&) = delete;
  ScopedEnv& operator=(const ScopedEnv&) = delete;

 private:
  void set(const std::optional<std::string>& value) {
    if (value) {
      ::setenv(name_, value->c_str(), 1);
    } else {
      ::unsetenv(name_);
    }
  }
  const char* name_;
  std::optional<std::string> old_;
};

unsigned mode_of(const fs::path& path) {
  struct stat st {};
  EXPECT_EQ(::stat(path.c_str(), &st), 0) << path;
  return st.st_mode & 07777;
}

void write_file(const fs::path& path, const std::string& contents, unsigned mode) {
  std::ofstream(path, std::ios::binary) << contents;
  ASSERT_EQ(::chmod(path.c_str(), mode), 0);
}

class KeyFile : public ::testing::Test {
 protected:
  void TearDown() override { fs::remove_all(dir_); }

  const fs::path dir_ = testing::make_temp_dir("facelogin-key-test");
  const fs::path key_path_ = dir_ / "key";
  // These tests are about the key file: an FACELOGIN_KEY in the test's environment must not win.
  ScopedEnv no_env_key_{"FACELOGIN_KEY", std::nullopt};
};

TEST_F(KeyFile, IsCreatedWithThirtyTwoRandomBytesAndMode0600) {
  auto key = load_or_create_key(key_path_);
  ASSERT_TRUE(key.has_value()) << key.error().to_string();
  EXPECT_EQ(key->size(), 32u);
  EXPECT_NE(*key, std::string(32, '\0'));
  EXPECT_EQ(fs::file_size(key_path_), 32u);
  EXPECT_EQ(mode_of(key_path_), 0600u);
}

TEST_F(KeyFile, CreatesMissingParentDirectoriesPrivateToTheOwner) {
  const fs::path nested = dir_ / "a" / "b" / "key";
  auto key = load_or_create_key(nested);
  ASSERT_TRUE(key.has_value()) << key.error().to_string();
  EXPECT_EQ(mode_of(dir_ / "a") & 077, 0u);
  EXPECT_EQ(mode_of(dir_ / "a" / "b") & 077, 0u);
  EXPECT_EQ(mode_of(nested), 0600u);
}

TEST_F(KeyFile, GivesTheSameKeyWhenReadAgain) {
  auto first = load_or_create_key(key_path_);
  auto second = load_or_create_key(key_path_);
  ASSERT_TRUE(first.has_value());
  ASSERT_TRUE(second.has_value());
  EXPECT_EQ(*first, *second);
}

TEST_F(KeyFile, GivesDifferentKeysForDifferentFiles) {
  auto first = load_or_create_key(dir_ / "one");
  auto second = load_or_create_key(dir_ / "two");
  ASSERT_TRUE(first.has_value());
  ASSERT_TRUE(second.has_value());
  EXPECT_NE(*first, *second);
}

TEST_F(KeyFile, LeavesNoTemporaryFileBehind) {
  ASSERT_TRUE(load_or_create_key(key_path_).has_value());
  std::vector<std::string> names;
  for (const auto& entry : fs::directory_iterator(dir_)) {
    names.push_back(entry.path().filename().string());
  }
  EXPECT_EQ(names, std::vector<std::string>{"key"});
}

TEST_F(KeyFile, AgreesOnOneKeyWhenCreatedByManyThreadsAtOnce) {
  constexpr int kThreads = 8;
  std::vector<std::optional<std::string>> keys(kThreads);
  std::vector<std::thread> threads;
  for (int i = 0; i < kThreads; ++i) {
    threads.emplace_back([&, i] {
      auto key = load_or_create_key(key_path_);
      if (key) {
        keys[static_cast<std::size_t>(i)] = *key;
      }
    });
  }
  for (auto& t : threads) {
    t.join();
  }
  for (const auto& key : keys) {
    ASSERT_TRUE(key.has_value());
    EXPECT_EQ(*key, *keys[0]);
  }
}

TEST_F(KeyFile, TakesTheEnvironmentVariableOverTheFile) {
  ASSERT_TRUE(load_or_create_key(key_path_).has_value());
  ScopedEnv env("FACELOGIN_KEY",
                "000102030405060708090a0b0c0d0e0f101112131415161718191A1B1C1D1E1F");
  auto key = load_or_create_key(key_path_);
  ASSERT_TRUE(key.has_value()) << key.error().to_string();
  std::string expected(32, '\0');
  for (std::size_t i = 0; i < expected.size(); ++i) {
    expected[i] = static_cast<char>(i);
  }
  EXPECT_EQ(*key, expected);
}

TEST_F(KeyFile, IsNotCreatedWhenTheEnvironmentVariableIsSet) {
  ScopedEnv env("FACELOGIN_KEY", std::string(64, 'a'));
  ASSERT_TRUE(load_or_create_key(key_path_).has_value());
  EXPECT_FALSE(fs::exists(key_path_));
}

TEST_F(KeyFile, RefusesAMalformedEnvironmentVariableWithoutQuotingIt) {
  const std::string bad_values[] = {
      std::string(63, 'a'),                // too short
      std::string(65, 'a'),                // too long
      std::string(62, 'a') + "zz",         // not hex
      " " + std::string(63, 'a'),          // whitespace
      "0x" + std::string(62, 'a'),         // prefix
  };
  for (const std::string& value : bad_values) {
    ScopedEnv env("FACELOGIN_KEY", value);
    auto key = load_or_create_key(key_path_);
    ASSERT_FALSE(key.has_value()) << value;
    EXPECT_EQ(key.error().code(), ErrorCode::kInvalidArgument);
    EXPECT_NE(key.error().message().find("FACELOGIN_KEY"), std::string::npos);
    EXPECT_EQ(key.error().message().find(value), std::string::npos) << "the key was echoed";
  }
  EXPECT_FALSE(fs::exists(key_path_));
}

TEST_F(KeyFile, TreatsAnEmptyEnvironmentVariableAsUnset) {
  ScopedEnv env("FACELOGIN_KEY", std::string());
  auto key = load_or_create_key(key_path_);
  ASSERT_TRUE(key.has_value());
  EXPECT_TRUE(fs::exists(key_path_));
}

TEST_F(KeyFile, RefusesAFileThatGroupOrOthersCanAccess) {
  ASSERT_TRUE(load_or_create_key(key_path_).has_value());
  for (unsigned mode : {0644u, 0640u, 0604u, 0620u, 0602u, 0610u, 0601u}) {
    ASSERT_EQ(::chmod(key_path_.c_str(), mode), 0);
    auto key = load_or_create_key(key_path_);
    ASSERT_FALSE(key.has_value()) << std::oct << mode;
    EXPECT_EQ(key.error().code(), ErrorCode::kCorrupt);
    EXPECT_NE(key.error().message().find("chmod 600"), std::string::npos)
        << key.error().message();
  }
  // Not replaced by a new key: the operator has to decide.
  EXPECT_EQ(fs::file_size(key_path_), 32u);
}

TEST_F(KeyFile, AcceptsAReadOnlyFile) {
  ASSERT_TRUE(load_or_create_key(key_path_).has_value());
  ASSERT_EQ(::chmod(key_path_.c_str(), 0400), 0);
  EXPECT_TRUE(load_or_create_key(key_path_).has_value());
}

TEST_F(KeyFile, RefusesAFileOfTheWrongSize) {
  for (std::size_t size : {std::size_t{0}, std::size_t{31}, std::size_t{33}, std::size_t{64}}) {
    write_file(key_path_, std::string(size, 'k'), 0600);
    auto key = load_or_create_key(key_path_);
    ASSERT_FALSE(key.has_value()) << size;
    EXPECT_EQ(key.error().code(), ErrorCode::kCorrupt);
    EXPECT_NE(key.error().message().find("expected 32"), std::string::npos)
        << key.error().message();
  }
}

TEST_F(KeyFile, RefusesADirectoryInPlaceOfTheFile) {
  fs::create_directory(key_path_);
  ASSERT_EQ(::chmod(key_path_.c_str(), 0700), 0);
  auto key = load_or_create_key(key_path_);
  ASSERT_FALSE(key.has_value());
}

}  // namespace
}  // namespace facelogin
