#pragma once

// Images as the engine sees them, and the one safe way to turn untrusted bytes into one.

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <span>
#include <vector>

#include "facelogin/status.h"

namespace facelogin {

// An 8-bit, 3-channel image in BGR order (as a camera driver or OpenCV delivers it), rows
// packed without padding: pixel (x, y) channel c is bgr[(y * width + x) * 3 + c].
struct Image {
  int width = 0;
  int height = 0;
  std::vector<std::uint8_t> bgr;

  bool empty() const { return width <= 0 || height <= 0; }
};

// Limits applied to untrusted encoded images. The defaults admit any real camera frame or
// phone photo (up to 50 MP, 25 MiB) and refuse decompression bombs before any pixel is decoded.
struct DecodeLimits {
  std::size_t max_bytes = 25u << 20;
  std::int64_t max_pixels = 50'000'000;
  int max_side = 16'384;
  // Decoding work is bounded by more than pixels: a progressive JPEG decodes its whole image once
  // per scan, so a small file repeating a scan thousands of times holds a core for seconds (a
  // JPEG scan bomb, issue 17). Encoders write 1 scan (baseline) or about 10 (progressive).
  int max_jpeg_scans = 64;
  // PNG chunks of any kind; libpng's own default writes 8 KiB IDAT chunks, so a 25 MiB PNG has
  // about 3,200. Many tiny chunks cost a CRC and a call each.
  int max_png_chunks = 8192;
};

enum class ImageFormat { kUnknown, kJpeg, kPng };

// Identifies the format from the magic bytes alone.
[[nodiscard]] ImageFormat sniff_image_format(std::span<const std::uint8_t> bytes);

// Decodes a JPEG or PNG held in memory into BGR, applying the EXIF orientation.
// The format is identified by magic bytes (the file name is never trusted); the dimensions are
// read from the header and checked against `limits` before decoding.
// Errors: kImageTooLarge (bytes, pixels or a side over the limit), kBadImage (unknown format,
// truncated or corrupt data). Thread-safe.
[[nodiscard]] Result<Image> decode_image(std::span<const std::uint8_t> bytes,
                                         const DecodeLimits& limits = {});

// Reads a file (refusing one larger than limits.max_bytes without reading it whole) and decodes
// it as decode_image does. Errors additionally: kNotFound (no such file), kInvalidArgument (a
// directory), kImageTooLarge (a file over limits.max_bytes), kIoError (open or read failed).
[[nodiscard]] Result<Image> load_image_file(const std::filesystem::path& path,
                                            const DecodeLimits& limits = {});

// Frames of a local video file (WebM, MP4, Y4M, ... whatever Debian's OpenCV/FFmpeg reads), one
// at a time, for evaluation and the CLI. Video containers are parsed by FFmpeg, so this is for
// files the operator chose, not for bytes from the network. Not thread-safe.
class VideoReader {
 public:
  virtual ~VideoReader() = default;

  // Errors: kNotFound (no such file), kBadImage (not a video OpenCV can open).
  [[nodiscard]] static Result<std::unique_ptr<VideoReader>> open(const std::filesystem::path& path,
                                                                 const DecodeLimits& limits = {});

  // A local camera by its index (0 = the first; /dev/video0 on Linux). Errors: kNotFound if it
  // cannot be opened.
  [[nodiscard]] static Result<std::unique_ptr<VideoReader>> open_camera(
      int index, const DecodeLimits& limits = {});

  // Frames per second the file declares (0 if unknown).
  virtual double fps() const = 0;
  // The next frame, or nullopt at the end. Errors: kImageTooLarge for a frame over the pixel or
  // side limits.
  [[nodiscard]] virtual Result<std::optional<Image>> next() = 0;
};

}  // namespace facelogin
