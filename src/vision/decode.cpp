// Turning untrusted bytes into an Image (include/facelogin/image.h).
//
// Order of checks, cheapest and safest first:
//   1. the byte count against limits.max_bytes;
//   2. the format, by magic bytes (never by file name);
//   3. the dimensions, read by our own bounds-checked header parser, against the pixel and side
//      limits: a decompression bomb (a tiny file whose header claims 100000 x 100000) is refused
//      here, before any decoder allocates a pixel;
//   4. the file's structure, walked to its end: a JPEG must reach its end-of-image marker and a
//      PNG its IEND chunk. libjpeg decodes a truncated JPEG "successfully", padding it with grey,
//      so truncation has to be caught here;
//   5. only then cv::imdecode, whose exceptions stop at this adapter.
//
// OpenCV's own guard (OPENCV_IO_MAX_IMAGE_PIXELS, default 2^30 pixels) is left alone. In OpenCV
// 4.6 it is read once when libopencv_imgcodecs is loaded (a namespace-scope static), so a setenv()
// from here would come too late and have no effect (checked: setenv before the first imdecode
// changes nothing; the variable set before start-up does). Its default is also 20 times looser
// than ours. Our header check, made with the caller's limits on every call, is the guard; OpenCV's
// stays as a second line for whatever reaches it. Setting the variable before start-up is
// harmless: it can only refuse more.
//
// Only JPEG and PNG reach cv::imdecode: imdecode would otherwise pick any of its decoders (TIFF,
// OpenEXR, JPEG 2000, HDR, ...) by signature, and those are more attack surface than a login needs.

#include "facelogin/image.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <climits>
#include <cstdint>
#include <cstring>
#include <exception>
#include <optional>
#include <span>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

#include <fmt/format.h>
#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>

#include "vision/cv_image.h"

namespace facelogin {
namespace {

constexpr std::array<std::uint8_t, 8> kPngSignature = {0x89, 0x50, 0x4E, 0x47,
                                                       0x0D, 0x0A, 0x1A, 0x0A};
constexpr std::array<std::uint8_t, 3> kJpegSignature = {0xFF, 0xD8, 0xFF};
constexpr std::uint32_t kPngMaxLength = 0x7FFFFFFFu;  // PNG's limit for lengths and dimensions

using Bytes = std::span<const std::uint8_t>;

std::uint16_t read_be16(Bytes b, std::size_t pos) {
  return static_cast<std::uint16_t>((b[pos] << 8) | b[pos + 1]);
}

std::uint32_t read_be32(Bytes b, std::size_t pos) {
  return (std::uint32_t{b[pos]} << 24) | (std::uint32_t{b[pos + 1]} << 16) |
         (std::uint32_t{b[pos + 2]} << 8) | std::uint32_t{b[pos + 3]};
}

bool starts_with(Bytes bytes, std::span<const std::uint8_t> prefix) {
  return bytes.size() >= prefix.size() &&
         std::memcmp(bytes.data(), prefix.data(), prefix.size()) == 0;
}

// True if the `n` bytes at `pos` lie inside `bytes`, written so that it cannot overflow.
bool fits(Bytes bytes, std::size_t pos, std::size_t n) {
  return pos <= bytes.size() && n <= bytes.size() - pos;
}

struct Dimensions {
  std::int64_t width = 0;
  std::int64_t height = 0;
};

// ---- PNG --------------------------------------------------------------------------------------

bool is_chunk(Bytes bytes, std::size_t type_pos, const char (&type)[5]) {
  return std::memcmp(bytes.data() + type_pos, type, 4) == 0;
}

bool valid_png_depth(std::uint8_t colour_type, std::uint8_t depth) {
  switch (colour_type) {
    case 0:
      return depth == 1 || depth == 2 || depth == 4 || depth == 8 || depth == 16;
    case 3:
      return depth == 1 || depth == 2 || depth == 4 || depth == 8;
    case 2:
    case 4:
    case 6:
      return depth == 8 || depth == 16;
    default:
      return false;
  }
}

// The IHDR chunk must come first: signature (8), length (4) = 13, "IHDR" (4), data (13), CRC (4).
// The CRC is left to libpng, which checks it.
Result<Dimensions> read_png_header(Bytes bytes) {
  constexpr std::size_t kIhdrEnd = 8 + 8 + 13 + 4;
  if (bytes.size() < kIhdrEnd) {
    return make_error(ErrorCode::kBadImage, "truncated PNG header");
  }
  if (read_be32(bytes, 8) != 13 || !is_chunk(bytes, 12, "IHDR")) {
    return make_error(ErrorCode::kBadImage, "malformed PNG: the first chunk is not a valid IHDR");
  }
  const std::uint32_t width = read_be32(bytes, 16);
  const std::uint32_t height = read_be32(bytes, 20);
  if (width == 0 || height == 0 || width > kPngMaxLength || height > kPngMaxLength) {
    return make_error(ErrorCode::kBadImage,
                      fmt::format("malformed PNG: invalid dimensions {}x{}", width, height));
  }
  const std::uint8_t depth = bytes[24];
  const std::uint8_t colour_type = bytes[25];
  if (!valid_png_depth(colour_type, depth)) {
    return make_error(
        ErrorCode::kBadImage,
        fmt::format("malformed PNG: bit depth {} with colour type {}", depth, colour_type));
  }
  // Compression and filter method must be 0, interlace 0 (none) or 1 (Adam7).
  if (bytes[26] != 0 || bytes[27] != 0 || bytes[28] > 1) {
    return make_error(ErrorCode::kBadImage,
                      "malformed PNG: unknown compression, filter or interlace method");
  }
  return Dimensions{width, height};
}

// Walks the chunks after the signature up to IEND, checking every length against the buffer and
// their number against the limit.
Status check_png_structure(Bytes bytes, int max_chunks) {
  std::size_t pos = kPngSignature.size();
  bool seen_idat = false;
  int chunks = 0;
  while (fits(bytes, pos, 8)) {
    if (++chunks > max_chunks) {
      return Status(ErrorCode::kImageTooLarge,
                    fmt::format("PNG has more than {} chunks; refusing to decode it", max_chunks));
    }
    const std::uint32_t length = read_be32(bytes, pos);
    if (length > kPngMaxLength) {
      return Status(ErrorCode::kBadImage, "malformed PNG: chunk length out of range");
    }
    // length + type + data + CRC
    if (!fits(bytes, pos, std::size_t{12} + length)) {
      break;
    }
    if (is_chunk(bytes, pos + 4, "IDAT")) {
      seen_idat = true;
    } else if (is_chunk(bytes, pos + 4, "IEND")) {
      if (!seen_idat) {
        return Status(ErrorCode::kBadImage, "malformed PNG: no image data (IDAT)");
      }
      return Status::Ok();
    }
    pos += std::size_t{12} + length;
  }
  return Status(ErrorCode::kBadImage, "corrupt or truncated PNG: it ends before its IEND chunk");
}

// ---- JPEG -------------------------------------------------------------------------------------

namespace marker {
constexpr std::uint8_t kTem = 0x01;
constexpr std::uint8_t kRst0 = 0xD0;
constexpr std::uint8_t kRst7 = 0xD7;
constexpr std::uint8_t kSoi = 0xD8;
constexpr std::uint8_t kEoi = 0xD9;
constexpr std::uint8_t kSos = 0xDA;
}  // namespace marker

// SOF0-3, 5-7, 9-11, 13-15. C4 (DHT), C8 (JPG, reserved) and CC (DAC) are not frame headers.
bool is_sof(std::uint8_t m) {
  return m >= 0xC0 && m <= 0xCF && m != 0xC4 && m != 0xC8 && m != 0xCC;
}

// Markers without a length field.
bool is_standalone(std::uint8_t m) {
  return m == marker::kTem || (m >= marker::kRst0 && m <= marker::kRst7) || m == marker::kSoi ||
         m == marker::kEoi;
}

// Finds the next marker at or after `pos` and leaves `pos` just past it. It skips exactly what
// libjpeg's next_marker() skips (stray bytes, 0xFF fill bytes, stuffed FF 00 pairs), so that our
// walk sees the same segments, and so the same frame header, as the decoder will. The same rule
// skips entropy-coded data after a scan header. nullopt at the end of the buffer.
std::optional<std::uint8_t> next_marker(Bytes bytes, std::size_t& pos) {
  for (;;) {
    while (pos < bytes.size() && bytes[pos] != 0xFF) {
      ++pos;
    }
    while (pos < bytes.size() && bytes[pos] == 0xFF) {
      ++pos;
    }
    if (pos >= bytes.size()) {
      return std::nullopt;
    }
    const std::uint8_t m = bytes[pos++];
    if (m != 0x00) {
      return m;
    }
  }
}

// Reads the length of the segment whose marker ends just before `pos` and checks that the whole
// segment is inside the buffer. The length counts its own two bytes.
Result<std::uint16_t> segment_length(Bytes bytes, std::size_t pos) {
  if (!fits(bytes, pos, 2)) {
    return make_error(ErrorCode::kBadImage, "truncated JPEG: a segment ends before its length");
  }
  const std::uint16_t length = read_be16(bytes, pos);
  if (length < 2) {
    return make_error(ErrorCode::kBadImage, "malformed JPEG: segment length below 2");
  }
  if (!fits(bytes, pos, length)) {
    return make_error(ErrorCode::kBadImage, "truncated JPEG: a segment runs past the end");
  }
  return length;
}

struct JpegFrame {
  Dimensions dimensions;
  std::size_t end = 0;  // offset just past the frame header
};

// Walks the markers from SOI to the first frame header (SOFn) and reads its dimensions.
Result<JpegFrame> read_jpeg_header(Bytes bytes) {
  std::size_t pos = 2;  // past SOI; the caller has checked the signature
  for (;;) {
    const std::optional<std::uint8_t> m = next_marker(bytes, pos);
    if (!m) {
      return make_error(ErrorCode::kBadImage, "truncated JPEG: no frame header");
    }
    if (*m == marker::kSoi || *m == marker::kEoi || *m == marker::kSos) {
      return make_error(ErrorCode::kBadImage,
                        "malformed JPEG: no frame header before the image data");
    }
    if (is_standalone(*m)) {
      continue;
    }
    Result<std::uint16_t> length = segment_length(bytes, pos);
    if (!length) {
      return make_error(length.error());
    }
    if (is_sof(*m)) {
      // length (2), sample precision (1), height (2), width (2), components (1), then 3 bytes
      // for each component.
      if (*length < 8) {
        return make_error(ErrorCode::kBadImage, "malformed JPEG: frame header too short");
      }
      const std::uint16_t height = read_be16(bytes, pos + 3);
      const std::uint16_t width = read_be16(bytes, pos + 5);
      const std::uint8_t components = bytes[pos + 7];
      if (components == 0 || *length != 8 + 3 * components) {
        return make_error(ErrorCode::kBadImage, "malformed JPEG: bad frame header length");
      }
      // A height of 0 defers it to a DNL marker, which libjpeg does not support.
      if (width == 0 || height == 0) {
        return make_error(ErrorCode::kBadImage,
                          fmt::format("malformed JPEG: invalid dimensions {}x{}", width, height));
      }
      return JpegFrame{Dimensions{width, height}, pos + *length};
    }
    pos += *length;
  }
}

// Walks the rest of the file from the end of the frame header: scan headers, the entropy-coded
// data after them, tables between scans, up to the end-of-image marker. Bytes after it (some
// phones append data there) are allowed. Counts the scans against the limit.
Status check_jpeg_structure(Bytes bytes, std::size_t pos, int max_scans) {
  bool seen_scan = false;
  int scans = 0;
  for (;;) {
    const std::optional<std::uint8_t> m = next_marker(bytes, pos);
    if (!m) {
      return Status(ErrorCode::kBadImage,
                    "corrupt or truncated JPEG: it ends before its end-of-image marker");
    }
    if (*m == marker::kEoi) {
      if (!seen_scan) {
        return Status(ErrorCode::kBadImage, "malformed JPEG: no image data");
      }
      return Status::Ok();
    }
    if (*m == marker::kSoi) {
      return Status(ErrorCode::kBadImage, "malformed JPEG: a second start-of-image marker");
    }
    if (is_standalone(*m)) {
      continue;
    }
    if (is_sof(*m)) {
      return Status(ErrorCode::kBadImage, "malformed JPEG: more than one frame header");
    }
    Result<std::uint16_t> length = segment_length(bytes, pos);
    if (!length) {
      return length.error();
    }
    if (*m == marker::kSos) {
      seen_scan = true;
      if (++scans > max_scans) {
        return Status(ErrorCode::kImageTooLarge,
                      fmt::format("JPEG has more than {} scans; refusing to decode it (each scan "
                                  "decodes the whole image again)",
                                  max_scans));
      }
    }
    pos += *length;
  }
}

// ---- Both -------------------------------------------------------------------------------------

Status check_limits(const Dimensions& d, const DecodeLimits& limits) {
  if (d.width > limits.max_side || d.height > limits.max_side) {
    return Status(ErrorCode::kImageTooLarge,
                  fmt::format("image is {}x{} pixels; the limit is {} pixels per side", d.width,
                              d.height, limits.max_side));
  }
  // Both sides are at most 2^31 - 1, so the product fits in int64.
  const std::int64_t pixels = d.width * d.height;
  if (pixels > limits.max_pixels) {
    return Status(ErrorCode::kImageTooLarge,
                  fmt::format("image is {}x{} = {} pixels; the limit is {} pixels", d.width,
                              d.height, pixels, limits.max_pixels));
  }
  return Status::Ok();
}

// Reads the header and checks the limits and the structure: everything short of decoding.
Result<Dimensions> validate(Bytes bytes, ImageFormat format, const DecodeLimits& limits) {
  if (format == ImageFormat::kPng) {
    Result<Dimensions> dims = read_png_header(bytes);
    if (!dims) {
      return dims;
    }
    if (Status s = check_limits(*dims, limits); !s.ok()) {
      return make_error(std::move(s));
    }
    if (Status s = check_png_structure(bytes, limits.max_png_chunks); !s.ok()) {
      return make_error(std::move(s));
    }
    return dims;
  }
  Result<JpegFrame> frame = read_jpeg_header(bytes);
  if (!frame) {
    return make_error(frame.error());
  }
  if (Status s = check_limits(frame->dimensions, limits); !s.ok()) {
    return make_error(std::move(s));
  }
  if (Status s = check_jpeg_structure(bytes, frame->end, limits.max_jpeg_scans); !s.ok()) {
    return make_error(std::move(s));
  }
  return frame->dimensions;
}

std::string format_name(ImageFormat format) { return format == ImageFormat::kPng ? "PNG" : "JPEG"; }

// ---- Files ------------------------------------------------------------------------------------

// Owns a file descriptor.
class FileDescriptor {
 public:
  explicit FileDescriptor(int fd) : fd_(fd) {}
  ~FileDescriptor() {
    if (fd_ >= 0) {
      ::close(fd_);
    }
  }
  FileDescriptor(const FileDescriptor&) = delete;
  FileDescriptor& operator=(const FileDescriptor&) = delete;

  int get() const { return fd_; }

 private:
  int fd_;
};

std::string errno_message(int err) { return std::generic_category().message(err); }

}  // namespace

ImageFormat sniff_image_format(std::span<const std::uint8_t> bytes) {
  if (starts_with(bytes, kJpegSignature)) {
    return ImageFormat::kJpeg;
  }
  if (starts_with(bytes, kPngSignature)) {
    return ImageFormat::kPng;
  }
  return ImageFormat::kUnknown;
}

Result<Image> decode_image(std::span<const std::uint8_t> bytes, const DecodeLimits& limits) {
  if (bytes.empty()) {
    return make_error(ErrorCode::kBadImage, "empty image data");
  }
  // cv::Mat counts columns in int, hence the second bound.
  if (bytes.size() > limits.max_bytes || bytes.size() > static_cast<std::size_t>(INT_MAX)) {
    return make_error(ErrorCode::kImageTooLarge,
                      fmt::format("image is {} bytes; the limit is {} bytes", bytes.size(),
                                  std::min<std::size_t>(limits.max_bytes, INT_MAX)));
  }
  const ImageFormat format = sniff_image_format(bytes);
  if (format == ImageFormat::kUnknown) {
    return make_error(ErrorCode::kBadImage, "not a JPEG or PNG image");
  }
  Result<Dimensions> header = validate(bytes, format, limits);
  if (!header) {
    return make_error(header.error());
  }

  cv::Mat decoded;
  try {
    // imdecode does not write to its input; the cast is only because cv::Mat has no const form.
    const cv::Mat encoded(1, static_cast<int>(bytes.size()), CV_8UC1,
                          const_cast<std::uint8_t*>(bytes.data()));
    // IMREAD_COLOR: 8-bit BGR whatever the source (grey, 16-bit, alpha, palette, CMYK), with the
    // EXIF orientation applied.
    decoded = cv::imdecode(encoded, cv::IMREAD_COLOR);
  } catch (const cv::Exception& e) {
    return make_error(ErrorCode::kBadImage,
                      fmt::format("corrupt {} image: {}", format_name(format), e.err));
  } catch (const std::exception& e) {
    return make_error(ErrorCode::kInternal, fmt::format("image decoder failed: {}", e.what()));
  }
  if (decoded.empty()) {
    return make_error(ErrorCode::kBadImage,
                      fmt::format("corrupt or truncated {} image", format_name(format)));
  }
  // The decoder must agree with the header we checked (the EXIF orientation may swap the
  // sides): our walk skips exactly what libjpeg's does and libpng reads the same IHDR, so a
  // difference is a bug in our parser, and the limits we checked may not be the ones that held.
  // The fuzzer treats kInternal as a crash.
  const std::int64_t w = decoded.cols;
  const std::int64_t h = decoded.rows;
  const bool same = w == header->width && h == header->height;
  const bool rotated = w == header->height && h == header->width;
  if (!same && !rotated) {
    return make_error(ErrorCode::kInternal,
                      fmt::format("inconsistent {} image: header says {}x{}, decoded {}x{}",
                                  format_name(format), header->width, header->height, w, h));
  }
  if (decoded.type() != CV_8UC3) {
    return make_error(ErrorCode::kInternal, "image decoder returned an unexpected pixel type");
  }
  Image image = vision::from_mat(decoded);
  if (image.empty()) {
    return make_error(ErrorCode::kInternal, "could not convert the decoded image");
  }
  return image;
}

Result<Image> load_image_file(const std::filesystem::path& path, const DecodeLimits& limits) {
  // One open file descriptor for every check and the read: no race between a stat of the path
  // and the read of a file that has since been replaced.
  FileDescriptor fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (fd.get() < 0) {
    const int err = errno;
    if (err == ENOENT || err == ENOTDIR) {
      return make_error(ErrorCode::kNotFound, fmt::format("no such file: {}", path.string()));
    }
    return make_error(ErrorCode::kIoError,
                      fmt::format("cannot open {}: {}", path.string(), errno_message(err)));
  }
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) {
    return make_error(ErrorCode::kIoError,
                      fmt::format("cannot stat {}: {}", path.string(), errno_message(errno)));
  }
  if (S_ISDIR(st.st_mode)) {
    return make_error(ErrorCode::kInvalidArgument,
                      fmt::format("{} is a directory, not an image file", path.string()));
  }
  if (S_ISREG(st.st_mode) && static_cast<std::uintmax_t>(st.st_size) > limits.max_bytes) {
    return make_error(ErrorCode::kImageTooLarge,
                      fmt::format("{} is {} bytes; the limit is {} bytes", path.string(),
                                  st.st_size, limits.max_bytes));
  }

  // Read at most one byte past the limit: that catches a file that grew since fstat, and a pipe
  // or device whose size fstat cannot tell, without reading it whole.
  const std::size_t cap = limits.max_bytes < SIZE_MAX ? limits.max_bytes + 1 : limits.max_bytes;
  std::vector<std::uint8_t> bytes;
  if (S_ISREG(st.st_mode)) {
    bytes.reserve(std::min(cap, static_cast<std::size_t>(st.st_size)));
  }
  std::array<std::uint8_t, 64 * 1024> chunk{};
  while (bytes.size() < cap) {
    const std::size_t want = std::min(chunk.size(), cap - bytes.size());
    const ssize_t n = ::read(fd.get(), chunk.data(), want);
    if (n < 0) {
      if (errno == EINTR) {
        continue;
      }
      return make_error(ErrorCode::kIoError,
                        fmt::format("cannot read {}: {}", path.string(), errno_message(errno)));
    }
    if (n == 0) {
      break;
    }
    bytes.insert(bytes.end(), chunk.data(), chunk.data() + n);
  }
  if (bytes.size() > limits.max_bytes) {
    return make_error(ErrorCode::kImageTooLarge,
                      fmt::format("{} is more than {} bytes", path.string(), limits.max_bytes));
  }
  return decode_image(bytes, limits);
}

}  // namespace facelogin
