// The evaluation embedding cache: a small binary file, little-endian whatever the host.
//
//   "FLEMBC01"                          8 bytes, magic and format version
//   u32 length, recogniser id bytes
//   u32 length, fingerprint bytes
//   u32 dim
//   u64 entry count
//   per entry: u32 key length, key bytes, u8 kind (0 = no face, 1 = embedding),
//              then for kind 1: dim float32
//   u64 FNV-1a hash of every byte before it

#include <fmt/core.h>

#include <bit>
#include <cmath>
#include <cstring>
#include <fstream>
#include <limits>
#include <new>

#include "facelogin/eval.h"

namespace facelogin::eval {
namespace {

constexpr char kMagic[8] = {'F', 'L', 'E', 'M', 'B', 'C', '0', '1'};
constexpr std::size_t kMaxString = 64 * 1024;
constexpr std::size_t kMaxDim = 1 << 16;
constexpr std::uintmax_t kMaxFileBytes = std::uintmax_t{4} << 30;

std::uint64_t fnv1a(const unsigned char* data, std::size_t size) {
  std::uint64_t h = 0xcbf29ce484222325ull;
  for (std::size_t i = 0; i < size; ++i) {
    h ^= data[i];
    h *= 0x100000001b3ull;
  }
  return h;
}

class Writer {
 public:
  void bytes(const void* p, std::size_t n) {
    const auto* c = static_cast<const unsigned char*>(p);
    buf_.insert(buf_.end(), c, c + n);
  }
  void u8(std::uint8_t v) { buf_.push_back(v); }
  void u32(std::uint32_t v) {
    for (int i = 0; i < 4; ++i) {
      buf_.push_back(static_cast<unsigned char>(v >> (8 * i)));
    }
  }
  void u64(std::uint64_t v) {
    for (int i = 0; i < 8; ++i) {
      buf_.push_back(static_cast<unsigned char>(v >> (8 * i)));
    }
  }
  void str(std::string_view s) {
    u32(static_cast<std::uint32_t>(s.size()));
    bytes(s.data(), s.size());
  }
  void f32(float v) { u32(std::bit_cast<std::uint32_t>(v)); }
  std::vector<unsigned char>& buffer() { return buf_; }

 private:
  std::vector<unsigned char> buf_;
};

// Bounds-checked reader: every read fails (and stays failed) past the end.
class Reader {
 public:
  Reader(const unsigned char* data, std::size_t size) : data_(data), size_(size) {}
  bool ok() const { return ok_; }
  std::size_t remaining() const { return size_ - pos_; }
  bool take(std::size_t n, const unsigned char** out) {
    if (!ok_ || n > remaining()) {
      ok_ = false;
      return false;
    }
    *out = data_ + pos_;
    pos_ += n;
    return true;
  }
  std::uint8_t u8() {
    const unsigned char* p = nullptr;
    return take(1, &p) ? p[0] : 0;
  }
  std::uint32_t u32() {
    const unsigned char* p = nullptr;
    if (!take(4, &p)) {
      return 0;
    }
    std::uint32_t v = 0;
    for (int i = 0; i < 4; ++i) {
      v |= static_cast<std::uint32_t>(p[i]) << (8 * i);
    }
    return v;
  }
  std::uint64_t u64() {
    const unsigned char* p = nullptr;
    if (!take(8, &p)) {
      return 0;
    }
    std::uint64_t v = 0;
    for (int i = 0; i < 8; ++i) {
      v |= static_cast<std::uint64_t>(p[i]) << (8 * i);
    }
    return v;
  }
  float f32() { return std::bit_cast<float>(u32()); }
  std::string str() {
    const std::uint32_t n = u32();
    const unsigned char* p = nullptr;
    if (n > kMaxString || !take(n, &p)) {
      ok_ = false;
      return {};
    }
    return std::string(reinterpret_cast<const char*>(p), n);
  }

 private:
  const unsigned char* data_;
  std::size_t size_;
  std::size_t pos_ = 0;
  bool ok_ = true;
};

}  // namespace

Status save_embedding_cache(const std::filesystem::path& path, const EmbeddingCache& cache) {
  if (cache.recognizer_id.size() > kMaxString || cache.fingerprint.size() > kMaxString) {
    return Status(ErrorCode::kInvalidArgument, "recogniser id or fingerprint over 64 KiB");
  }
  if (cache.dim > kMaxDim) {
    return Status(ErrorCode::kInvalidArgument,
                  fmt::format("embedding dimension {} is over {}", cache.dim, kMaxDim));
  }
  try {
    Writer w;
    w.bytes(kMagic, sizeof kMagic);
    w.str(cache.recognizer_id);
    w.str(cache.fingerprint);
    w.u32(static_cast<std::uint32_t>(cache.dim));
    w.u64(cache.entries.size());
    for (const auto& [key, embedding] : cache.entries) {
      if (key.empty() || key.size() > kMaxString) {
        return Status(ErrorCode::kInvalidArgument, "an image key is empty or over 64 KiB");
      }
      if (embedding && embedding->size() != cache.dim) {
        return Status(ErrorCode::kInvalidArgument,
                      fmt::format("the embedding of {} has {} values, not {}", key,
                                  embedding->size(), cache.dim));
      }
      w.str(key);
      w.u8(embedding ? 1 : 0);
      if (embedding) {
        for (float v : *embedding) {
          w.f32(v);
        }
      }
    }
    std::vector<unsigned char>& buf = w.buffer();
    w.u64(fnv1a(buf.data(), buf.size()));

    std::error_code ec;
    if (path.has_parent_path()) {
      std::filesystem::create_directories(path.parent_path(), ec);
    }
    std::filesystem::path tmp = path;
    tmp += ".tmp";
    {
      std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
      out.write(reinterpret_cast<const char*>(buf.data()),
                static_cast<std::streamsize>(buf.size()));
      out.close();
      if (!out) {
        std::filesystem::remove(tmp, ec);
        return Status(ErrorCode::kIoError,
                      fmt::format("cannot write embedding cache {}", tmp.string()));
      }
    }
    std::filesystem::rename(tmp, path, ec);
    if (ec) {
      std::error_code ignored;
      std::filesystem::remove(tmp, ignored);
      return Status(ErrorCode::kIoError, fmt::format("cannot move {} to {}: {}", tmp.string(),
                                                     path.string(), ec.message()));
    }
    return Status::Ok();
  } catch (const std::bad_alloc&) {
    return Status(ErrorCode::kInternal, "out of memory writing the embedding cache");
  }
}

Result<EmbeddingCache> load_embedding_cache(const std::filesystem::path& path,
                                            std::string_view recognizer_id,
                                            std::string_view fingerprint) {
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec)) {
    return make_error(ErrorCode::kNotFound, fmt::format("no embedding cache at {}", path.string()));
  }
  const std::uintmax_t size = std::filesystem::file_size(path, ec);
  if (ec || size > kMaxFileBytes) {
    return make_error(ErrorCode::kIoError,
                      fmt::format("cannot read embedding cache {}: {}", path.string(),
                                  ec ? ec.message() : "larger than 4 GiB"));
  }
  const auto corrupt = [&path](std::string_view why) {
    return make_error(ErrorCode::kCorrupt,
                      fmt::format("embedding cache {} is unusable ({}); delete it to rebuild",
                                  path.string(), why));
  };
  try {
    std::vector<unsigned char> buf(static_cast<std::size_t>(size));
    std::ifstream in(path, std::ios::binary);
    in.read(reinterpret_cast<char*>(buf.data()), static_cast<std::streamsize>(buf.size()));
    if (!in || in.gcount() != static_cast<std::streamsize>(buf.size())) {
      return make_error(ErrorCode::kIoError,
                        fmt::format("cannot read embedding cache {}", path.string()));
    }
    if (buf.size() < sizeof kMagic + 8 || std::memcmp(buf.data(), kMagic, sizeof kMagic) != 0) {
      return corrupt("not an embedding cache of this version");
    }
    Reader trailer(buf.data() + buf.size() - 8, 8);
    if (trailer.u64() != fnv1a(buf.data(), buf.size() - 8)) {
      return corrupt("checksum mismatch: truncated or damaged");
    }

    Reader r(buf.data() + sizeof kMagic, buf.size() - sizeof kMagic - 8);
    EmbeddingCache cache;
    cache.recognizer_id = r.str();
    cache.fingerprint = r.str();
    const std::uint32_t dim = r.u32();
    const std::uint64_t count = r.u64();
    if (!r.ok()) {
      return corrupt("truncated header");
    }
    if (cache.recognizer_id != recognizer_id || cache.fingerprint != fingerprint) {
      return make_error(ErrorCode::kModelMismatch,
                        fmt::format("embedding cache {} was made by recogniser \"{}\" (fingerprint "
                                    "\"{}\"), not \"{}\" (\"{}\"): ignoring it",
                                    path.string(), cache.recognizer_id, cache.fingerprint,
                                    recognizer_id, fingerprint));
    }
    // Each entry takes at least 5 bytes, which bounds what a corrupt count can make us do.
    if (dim > kMaxDim || count > r.remaining() / 5) {
      return corrupt("implausible header");
    }
    cache.dim = dim;
    for (std::uint64_t e = 0; e < count; ++e) {
      std::string key = r.str();
      const std::uint8_t kind = r.u8();
      if (!r.ok() || key.empty() || kind > 1) {
        return corrupt(fmt::format("bad entry {}", e));
      }
      std::optional<std::vector<float>> embedding;
      if (kind == 1) {
        if (r.remaining() / 4 < dim) {
          return corrupt(fmt::format("entry {} is truncated", e));
        }
        embedding.emplace(dim);
        for (float& v : *embedding) {
          v = r.f32();
        }
      }
      if (!cache.entries.emplace(std::move(key), std::move(embedding)).second) {
        return corrupt(fmt::format("entry {} repeats a key", e));
      }
    }
    if (r.remaining() != 0) {
      return corrupt("trailing bytes");
    }
    return cache;
  } catch (const std::bad_alloc&) {
    return make_error(ErrorCode::kInternal,
                      fmt::format("out of memory reading embedding cache {}", path.string()));
  }
}

Result<std::vector<float>> score_pairs(std::span<const Pair> pairs, const EmbeddingCache& cache) {
  std::vector<float> scores;
  scores.reserve(pairs.size());
  for (const Pair& p : pairs) {
    auto a = cache.entries.find(p.first);
    auto b = cache.entries.find(p.second);
    if (a == cache.entries.end() || b == cache.entries.end()) {
      return make_error(
          ErrorCode::kNotFound,
          fmt::format("no cached embedding for {}", a == cache.entries.end() ? p.first : p.second));
    }
    if (!a->second || !b->second) {
      scores.push_back(-std::numeric_limits<float>::infinity());
      continue;
    }
    const std::vector<float>& x = *a->second;
    const std::vector<float>& y = *b->second;
    if (x.size() != y.size()) {
      return make_error(ErrorCode::kInvalidArgument,
                        fmt::format("embeddings of {} and {} differ in length", p.first, p.second));
    }
    double dot = 0.0;
    for (std::size_t k = 0; k < x.size(); ++k) {
      dot += static_cast<double>(x[k]) * static_cast<double>(y[k]);
    }
    scores.push_back(static_cast<float>(dot));
  }
  return scores;
}

}  // namespace facelogin::eval
