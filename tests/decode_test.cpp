// Tests for decode_image / load_image_file (src/vision/decode.cpp). Images are made here with
// cv::imencode and then damaged or rewritten by hand, so that every case is exact and small.

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include "facelogin/image.h"
#include "test_data.h"
#include "vision/cv_image.h"

namespace facelogin {
namespace {

namespace fs = std::filesystem;
using Bytes = std::vector<std::uint8_t>;

// A smooth colour pattern: every pixel differs from its neighbours, so a mix-up of rows,
// columns or channels shows.
cv::Mat make_pattern(int width, int height) {
  cv::Mat m(height, width, CV_8UC3);
  for (int y = 0; y < height; ++y) {
    for (int x = 0; x < width; ++x) {
      m.at<cv::Vec3b>(y, x) = cv::Vec3b(static_cast<std::uint8_t>(x * 255 / width),
                                        static_cast<std::uint8_t>(y * 255 / height),
                                        static_cast<std::uint8_t>((x + 2 * y) % 256));
    }
  }
  return m;
}

Bytes encode(const cv::Mat& image, const std::string& ext, const std::vector<int>& params = {}) {
  std::vector<std::uint8_t> out;
  EXPECT_TRUE(cv::imencode(ext, image, out, params));
  return out;
}

std::uint32_t crc32(std::span<const std::uint8_t> data) {
  std::uint32_t crc = 0xFFFFFFFFu;
  for (std::uint8_t byte : data) {
    crc ^= byte;
    for (int bit = 0; bit < 8; ++bit) {
      crc = (crc >> 1) ^ (0xEDB88320u & (0u - (crc & 1u)));
    }
  }
  return ~crc;
}

void put_be16(Bytes& b, std::size_t pos, std::uint16_t v) {
  b[pos] = static_cast<std::uint8_t>(v >> 8);
  b[pos + 1] = static_cast<std::uint8_t>(v);
}

void put_be32(Bytes& b, std::size_t pos, std::uint32_t v) {
  for (int i = 0; i < 4; ++i) {
    b[pos + static_cast<std::size_t>(i)] = static_cast<std::uint8_t>(v >> (24 - 8 * i));
  }
}

// Rewrites the IHDR of an encoded PNG and, unless told otherwise, fixes its CRC, so that the
// file is well-formed apart from what the test means to break.
Bytes with_png_header(Bytes png, std::uint32_t width, std::uint32_t height, bool fix_crc = true) {
  put_be32(png, 16, width);
  put_be32(png, 20, height);
  if (fix_crc) {
    // The CRC covers the chunk type and data: bytes 12..28; it is stored at 29.
    put_be32(png, 29, crc32(std::span<const std::uint8_t>(png).subspan(12, 17)));
  }
  return png;
}

// Offset of the baseline frame header (FF C0) in a JPEG made by imencode.
std::size_t find_sof0(const Bytes& jpeg) {
  for (std::size_t i = 2; i + 1 < jpeg.size(); ++i) {
    if (jpeg[i] == 0xFF && jpeg[i + 1] == 0xC0) {
      return i;
    }
  }
  ADD_FAILURE() << "no SOF0 marker";
  return 0;
}

Bytes with_jpeg_size(Bytes jpeg, std::uint16_t width, std::uint16_t height) {
  const std::size_t sof = find_sof0(jpeg);
  // FF C0, length (2), precision (1), height (2), width (2)
  put_be16(jpeg, sof + 5, height);
  put_be16(jpeg, sof + 7, width);
  return jpeg;
}

// Inserts an EXIF APP1 segment holding only an Orientation tag right after SOI.
Bytes with_exif_orientation(const Bytes& jpeg, std::uint16_t orientation) {
  // clang-format off
  const Bytes app1 = {
      0xFF, 0xE1, 0x00, 0x22,              // APP1, length 34
      'E',  'x',  'i',  'f',  0x00, 0x00,  // EXIF identifier
      'M',  'M',  0x00, 0x2A,              // TIFF header, big-endian
      0x00, 0x00, 0x00, 0x08,              // offset of IFD0
      0x00, 0x01,                          // one entry
      0x01, 0x12,                          // tag 0x0112 Orientation
      0x00, 0x03,                          // type SHORT
      0x00, 0x00, 0x00, 0x01,              // count 1
      static_cast<std::uint8_t>(orientation >> 8), static_cast<std::uint8_t>(orientation), 0x00,
      0x00,                                // value, padded to 4 bytes
      0x00, 0x00, 0x00, 0x00,              // no next IFD
  };
  // clang-format on
  // Sized up front and filled with std::copy: GCC 12 reports a false -Warray-bounds for
  // vector::insert of a range into a two-byte vector.
  Bytes out(jpeg.size() + app1.size());
  std::copy(jpeg.begin(), jpeg.begin() + 2, out.begin());
  std::copy(app1.begin(), app1.end(), out.begin() + 2);
  std::copy(jpeg.begin() + 2, jpeg.end(), out.begin() + 2 + static_cast<std::ptrdiff_t>(app1.size()));
  return out;
}

double mean_abs_diff(const cv::Mat& a, const cv::Mat& b) {
  cv::Mat diff;
  cv::absdiff(a, b, diff);
  const cv::Scalar per_channel = cv::mean(diff);
  return (per_channel[0] + per_channel[1] + per_channel[2]) / 3.0;
}

std::string describe(const Result<Image>& result) {
  return result ? "ok" : result.error().to_string();
}

bool contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

// A temporary directory removed at the end of the test.
class TempDir {
 public:
  TempDir() : path_(testing::make_temp_dir("facelogin-decode-test")) {}
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

void write_file(const fs::path& path, std::span<const std::uint8_t> bytes) {
  std::ofstream out(path, std::ios::binary);
  out.write(reinterpret_cast<const char*>(bytes.data()),
            static_cast<std::streamsize>(bytes.size()));
  ASSERT_TRUE(out.good()) << path;
}

// ---- Format sniffing --------------------------------------------------------------------------

TEST(Decode, SniffsJpegAndPngByTheirMagicBytes) {
  const Bytes jpeg = {0xFF, 0xD8, 0xFF, 0xE0};
  const Bytes png = {0x89, 'P', 'N', 'G', 0x0D, 0x0A, 0x1A, 0x0A, 0x00};
  const Bytes gif = {'G', 'I', 'F', '8', '9', 'a'};
  EXPECT_EQ(sniff_image_format(jpeg), ImageFormat::kJpeg);
  EXPECT_EQ(sniff_image_format(png), ImageFormat::kPng);
  EXPECT_EQ(sniff_image_format(gif), ImageFormat::kUnknown);
  EXPECT_EQ(sniff_image_format({}), ImageFormat::kUnknown);
  // A prefix of a signature is not enough.
  EXPECT_EQ(sniff_image_format(std::span(jpeg).first(2)), ImageFormat::kUnknown);
  EXPECT_EQ(sniff_image_format(std::span(png).first(7)), ImageFormat::kUnknown);
  // Real encoder output.
  EXPECT_EQ(sniff_image_format(encode(make_pattern(8, 8), ".jpg")), ImageFormat::kJpeg);
  EXPECT_EQ(sniff_image_format(encode(make_pattern(8, 8), ".png")), ImageFormat::kPng);
}

// ---- Round trips ------------------------------------------------------------------------------

TEST(Decode, RoundTripsAPngExactly) {
  const cv::Mat original = make_pattern(37, 23);
  const Result<Image> decoded = decode_image(encode(original, ".png"));
  ASSERT_TRUE(decoded) << describe(decoded);
  EXPECT_EQ(decoded->width, 37);
  EXPECT_EQ(decoded->height, 23);
  ASSERT_EQ(decoded->bgr.size(), 37u * 23u * 3u);
  EXPECT_EQ(cv::norm(vision::as_mat(*decoded), original, cv::NORM_INF), 0.0);
}

TEST(Decode, RoundTripsAJpegWithinCompressionError) {
  const cv::Mat original = make_pattern(64, 48);
  const Result<Image> decoded =
      decode_image(encode(original, ".jpg", {cv::IMWRITE_JPEG_QUALITY, 95}));
  ASSERT_TRUE(decoded) << describe(decoded);
  EXPECT_EQ(decoded->width, 64);
  EXPECT_EQ(decoded->height, 48);
  EXPECT_LT(mean_abs_diff(vision::as_mat(*decoded), original), 4.0);
}

TEST(Decode, DecodesAProgressiveJpegWithSeveralScans) {
  const cv::Mat original = make_pattern(80, 60);
  const Result<Image> decoded =
      decode_image(encode(original, ".jpg", {cv::IMWRITE_JPEG_PROGRESSIVE, 1}));
  ASSERT_TRUE(decoded) << describe(decoded);
  EXPECT_EQ(decoded->width, 80);
  EXPECT_EQ(decoded->height, 60);
  EXPECT_LT(mean_abs_diff(vision::as_mat(*decoded), original), 4.0);
}

TEST(Decode, AcceptsDataAfterTheJpegEndMarker) {
  // Some phones append data (a second picture, a video) after the end-of-image marker.
  Bytes jpeg = encode(make_pattern(32, 32), ".jpg");
  const Bytes trailer(100, 0xAB);
  jpeg.insert(jpeg.end(), trailer.begin(), trailer.end());
  const Result<Image> decoded = decode_image(jpeg);
  ASSERT_TRUE(decoded) << describe(decoded);
  EXPECT_EQ(decoded->width, 32);
}

// ---- Pixel formats ----------------------------------------------------------------------------

TEST(Decode, ConvertsAGreyPngToBgr) {
  cv::Mat grey;
  cv::extractChannel(make_pattern(20, 10), grey, 0);
  const Result<Image> decoded = decode_image(encode(grey, ".png"));
  ASSERT_TRUE(decoded) << describe(decoded);
  ASSERT_EQ(decoded->bgr.size(), 20u * 10u * 3u);
  cv::Mat expected;
  cv::cvtColor(grey, expected, cv::COLOR_GRAY2BGR);
  EXPECT_EQ(cv::norm(vision::as_mat(*decoded), expected, cv::NORM_INF), 0.0);
}

TEST(Decode, ConvertsASixteenBitPngToEightBitBgr) {
  cv::Mat deep;
  make_pattern(20, 10).convertTo(deep, CV_16UC3, 257.0);  // 0..255 -> 0..65535
  const Result<Image> decoded = decode_image(encode(deep, ".png"));
  ASSERT_TRUE(decoded) << describe(decoded);
  ASSERT_EQ(decoded->bgr.size(), 20u * 10u * 3u);
  EXPECT_LE(cv::norm(vision::as_mat(*decoded), make_pattern(20, 10), cv::NORM_INF), 1.0);
}

TEST(Decode, DropsTheAlphaChannelOfAnRgbaPng) {
  const cv::Mat bgr = make_pattern(20, 10);
  cv::Mat bgra;
  cv::cvtColor(bgr, bgra, cv::COLOR_BGR2BGRA);
  bgra.forEach<cv::Vec4b>([](cv::Vec4b& p, const int* pos) {
    p[3] = static_cast<std::uint8_t>(pos[1] * 12);  // varying transparency
  });
  const Result<Image> decoded = decode_image(encode(bgra, ".png"));
  ASSERT_TRUE(decoded) << describe(decoded);
  ASSERT_EQ(decoded->bgr.size(), 20u * 10u * 3u);
  EXPECT_EQ(cv::norm(vision::as_mat(*decoded), bgr, cv::NORM_INF), 0.0);
}

// ---- EXIF orientation -------------------------------------------------------------------------

// A 64x32 black image with a white 8x8 block in its top-left corner.
cv::Mat make_corner_marked(int width, int height) {
  cv::Mat m(height, width, CV_8UC3, cv::Scalar::all(0));
  m(cv::Rect(0, 0, 8, 8)).setTo(cv::Scalar::all(255));
  return m;
}

double mean_grey(const cv::Mat& bgr, cv::Rect r) {
  const cv::Scalar m = cv::mean(bgr(r));
  return (m[0] + m[1] + m[2]) / 3.0;
}

TEST(Decode, AppliesExifOrientationSixByRotatingClockwise) {
  const Bytes jpeg = with_exif_orientation(encode(make_corner_marked(64, 32), ".jpg"), 6);
  const Result<Image> decoded = decode_image(jpeg);
  ASSERT_TRUE(decoded) << describe(decoded);
  // Orientation 6: the stored image is shown turned 90 degrees clockwise, so the sides swap and
  // the stored top-left corner ends up top-right.
  EXPECT_EQ(decoded->width, 32);
  EXPECT_EQ(decoded->height, 64);
  const cv::Mat mat = vision::as_mat(*decoded);
  EXPECT_GT(mean_grey(mat, cv::Rect(32 - 6, 1, 4, 4)), 200.0);  // top-right: the white block
  EXPECT_LT(mean_grey(mat, cv::Rect(1, 1, 4, 4)), 50.0);        // top-left: black
  EXPECT_LT(mean_grey(mat, cv::Rect(26, 58, 4, 4)), 50.0);      // bottom-right: black
}

TEST(Decode, LeavesAJpegWithExifOrientationOneAsStored) {
  const Bytes jpeg = with_exif_orientation(encode(make_corner_marked(64, 32), ".jpg"), 1);
  const Result<Image> decoded = decode_image(jpeg);
  ASSERT_TRUE(decoded) << describe(decoded);
  EXPECT_EQ(decoded->width, 64);
  EXPECT_EQ(decoded->height, 32);
  EXPECT_GT(mean_grey(vision::as_mat(*decoded), cv::Rect(1, 1, 4, 4)), 200.0);
}

// ---- Limits -----------------------------------------------------------------------------------

TEST(Decode, RefusesAPngBombBeforeDecodingIt) {
  // A file of a few hundred bytes whose (CRC-valid) header claims 100000 x 100000 pixels: 30 GB
  // once decoded. OpenCV itself would throw (a kBadImage); kImageTooLarge with the sizes shows
  // that our header check refused it first.
  const Bytes bomb = with_png_header(encode(make_pattern(16, 16), ".png"), 100000, 100000);
  ASSERT_LT(bomb.size(), 2000u);
  const Result<Image> decoded = decode_image(bomb);
  ASSERT_FALSE(decoded);
  EXPECT_EQ(decoded.error().code(), ErrorCode::kImageTooLarge) << describe(decoded);
  EXPECT_TRUE(contains(decoded.error().message(), "100000x100000")) << describe(decoded);
  EXPECT_TRUE(contains(decoded.error().message(), "16384")) << describe(decoded);
}

TEST(Decode, RefusesAPngOverThePixelLimitThoughEachSideIsWithinIts) {
  // 10000 x 10000 = 10^8 pixels: each side under 16384, the total over 5 * 10^7. Also under
  // OpenCV's own 2^30-pixel guard, so only our check stands between it and a 300 MB allocation.
  const Bytes big = with_png_header(encode(make_pattern(16, 16), ".png"), 10000, 10000);
  const Result<Image> decoded = decode_image(big);
  ASSERT_FALSE(decoded);
  EXPECT_EQ(decoded.error().code(), ErrorCode::kImageTooLarge) << describe(decoded);
  EXPECT_TRUE(contains(decoded.error().message(), "10000x10000")) << describe(decoded);
  EXPECT_TRUE(contains(decoded.error().message(), "50000000")) << describe(decoded);
}

TEST(Decode, RefusesAJpegWhoseFrameHeaderClaims20000By20000) {
  const Bytes jpeg = with_jpeg_size(encode(make_pattern(16, 16), ".jpg"), 20000, 20000);
  const Result<Image> decoded = decode_image(jpeg);
  ASSERT_FALSE(decoded);
  EXPECT_EQ(decoded.error().code(), ErrorCode::kImageTooLarge) << describe(decoded);
  EXPECT_TRUE(contains(decoded.error().message(), "20000x20000")) << describe(decoded);
}

// Issue 17: a progressive JPEG decodes its whole image once per scan, so a small file that
// repeats a scan thousands of times held a server worker for half a minute.
TEST(Decode, RefusesAJpegScanBombBeforeDecodingIt) {
  const std::string bomb = testing::jpeg_scan_bomb(64, 64, 200);
  ASSERT_FALSE(bomb.empty());
  const Bytes bytes(bomb.begin(), bomb.end());
  const Result<Image> refused = decode_image(bytes);
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().code(), ErrorCode::kImageTooLarge) << describe(refused);
  EXPECT_TRUE(contains(refused.error().message(), "scans")) << describe(refused);
  // The file is a JPEG the decoder would otherwise work through, every scan of it.
  DecodeLimits loose;
  loose.max_jpeg_scans = 1000;
  const Result<Image> decoded = decode_image(bytes, loose);
  ASSERT_TRUE(decoded) << describe(decoded);
  EXPECT_EQ(decoded->width, 64);
  // An ordinary progressive JPEG (about 10 scans) is well inside the default.
  const Bytes progressive = encode(make_pattern(64, 64), ".jpg", {cv::IMWRITE_JPEG_PROGRESSIVE, 1});
  EXPECT_TRUE(decode_image(progressive)) << describe(decode_image(progressive));
}

// Inserts `count` empty private ancillary chunks ("prVt", which decoders skip after checking
// their CRC) after the IHDR of an encoded PNG.
Bytes with_empty_chunks(Bytes png, int count) {
  Bytes chunk = {0, 0, 0, 0, 'p', 'r', 'V', 't', 0, 0, 0, 0};
  const std::uint32_t crc = crc32(std::span<const std::uint8_t>(chunk).subspan(4, 4));
  put_be32(chunk, 8, crc);
  constexpr std::ptrdiff_t kAfterIhdr = 8 + 25;
  for (int i = 0; i < count; ++i) {
    png.insert(png.begin() + kAfterIhdr, chunk.begin(), chunk.end());
  }
  return png;
}

TEST(Decode, RefusesAPngOfManyChunks) {
  const Bytes png = encode(make_pattern(32, 32), ".png");
  EXPECT_TRUE(decode_image(with_empty_chunks(png, 100)));
  const Result<Image> refused = decode_image(with_empty_chunks(png, 9000));
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().code(), ErrorCode::kImageTooLarge) << describe(refused);
  EXPECT_TRUE(contains(refused.error().message(), "chunks")) << describe(refused);
}

TEST(Decode, AppliesTheCallersSideAndPixelLimits) {
  const Bytes png = encode(make_pattern(64, 48), ".png");
  DecodeLimits exact;
  exact.max_side = 64;
  exact.max_pixels = 64 * 48;
  EXPECT_TRUE(decode_image(png, exact)) << "an image exactly at the limits is allowed";

  DecodeLimits side = exact;
  side.max_side = 63;
  const Result<Image> too_wide = decode_image(png, side);
  ASSERT_FALSE(too_wide);
  EXPECT_EQ(too_wide.error().code(), ErrorCode::kImageTooLarge);
  EXPECT_TRUE(contains(too_wide.error().message(), "64x48")) << describe(too_wide);

  DecodeLimits pixels = exact;
  pixels.max_pixels = 64 * 48 - 1;
  const Result<Image> too_many = decode_image(png, pixels);
  ASSERT_FALSE(too_many);
  EXPECT_EQ(too_many.error().code(), ErrorCode::kImageTooLarge);
}

TEST(Decode, RefusesInputOverTheByteLimitWithoutParsingIt) {
  const Bytes jpeg = encode(make_pattern(64, 48), ".jpg");
  DecodeLimits limits;
  limits.max_bytes = jpeg.size();
  EXPECT_TRUE(decode_image(jpeg, limits));

  limits.max_bytes = jpeg.size() - 1;
  const Result<Image> decoded = decode_image(jpeg, limits);
  ASSERT_FALSE(decoded);
  EXPECT_EQ(decoded.error().code(), ErrorCode::kImageTooLarge);
  EXPECT_TRUE(contains(decoded.error().message(), std::to_string(jpeg.size())))
      << describe(decoded);

  // The byte limit comes before the format check: junk over the limit is "too large".
  const Bytes junk(100, 'x');
  limits.max_bytes = 50;
  const Result<Image> junk_result = decode_image(junk, limits);
  ASSERT_FALSE(junk_result);
  EXPECT_EQ(junk_result.error().code(), ErrorCode::kImageTooLarge);
}

// ---- Damaged and hostile input ----------------------------------------------------------------

void expect_bad_at_every_cut(const Bytes& whole) {
  // Every cut up to the last byte, in steps small enough to land in every segment kind.
  const std::size_t step = std::max<std::size_t>(1, whole.size() / 97);
  std::vector<std::size_t> cuts;
  for (std::size_t cut = 0; cut < whole.size(); cut += step) {
    cuts.push_back(cut);
  }
  for (std::size_t back = 1; back <= 16 && back < whole.size(); ++back) {
    cuts.push_back(whole.size() - back);
  }
  for (std::size_t cut : cuts) {
    const Result<Image> decoded = decode_image(std::span(whole).first(cut));
    ASSERT_FALSE(decoded) << "cut at " << cut << " of " << whole.size();
    EXPECT_EQ(decoded.error().code(), ErrorCode::kBadImage)
        << "cut at " << cut << " of " << whole.size() << ": " << describe(decoded);
  }
}

TEST(Decode, RefusesATruncatedJpegAtAnyLength) {
  // libjpeg alone would decode a truncated JPEG "successfully", greying out the missing part.
  expect_bad_at_every_cut(encode(make_pattern(64, 48), ".jpg"));
  expect_bad_at_every_cut(encode(make_pattern(64, 48), ".jpg", {cv::IMWRITE_JPEG_PROGRESSIVE, 1}));
}

TEST(Decode, RefusesATruncatedPngAtAnyLength) {
  expect_bad_at_every_cut(encode(make_pattern(64, 48), ".png"));
}

TEST(Decode, RefusesEmptyInput) {
  const Result<Image> decoded = decode_image({});
  ASSERT_FALSE(decoded);
  EXPECT_EQ(decoded.error().code(), ErrorCode::kBadImage);
}

TEST(Decode, RefusesRandomBytes) {
  std::mt19937 rng(1234);
  std::uniform_int_distribution<int> byte(0, 255);
  std::uniform_int_distribution<std::size_t> length(1, 4096);
  const Bytes jpeg_magic = {0xFF, 0xD8, 0xFF};
  const Bytes png_magic = {0x89, 'P', 'N', 'G', 0x0D, 0x0A, 0x1A, 0x0A};
  for (int i = 0; i < 300; ++i) {
    Bytes data(length(rng));
    std::generate(data.begin(), data.end(), [&] { return static_cast<std::uint8_t>(byte(rng)); });
    // A third with no magic, a third behind a JPEG signature, a third behind a PNG signature.
    const Bytes& prefix = i % 3 == 1 ? jpeg_magic : png_magic;
    if (i % 3 != 0) {
      data.insert(data.begin(), prefix.begin(), prefix.end());
    }
    const Result<Image> decoded = decode_image(data);
    ASSERT_FALSE(decoded) << "random input " << i << " decoded";
    const ErrorCode code = decoded.error().code();
    if (i % 3 == 0) {
      EXPECT_EQ(code, ErrorCode::kBadImage) << describe(decoded);
    } else {
      // Random bytes can happen to spell a frame header with large sides.
      EXPECT_TRUE(code == ErrorCode::kBadImage || code == ErrorCode::kImageTooLarge)
          << describe(decoded);
    }
  }
}

TEST(Decode, RefusesMalformedHeaders) {
  const Bytes png = encode(make_pattern(16, 16), ".png");
  const Bytes jpeg = encode(make_pattern(16, 16), ".jpg");

  Bytes zero_width = with_png_header(png, 0, 16);
  Bytes bad_depth = png;
  bad_depth[24] = 3;  // bit depth 3 does not exist
  put_be32(bad_depth, 29, crc32(std::span<const std::uint8_t>(bad_depth).subspan(12, 17)));
  Bytes not_ihdr = png;
  not_ihdr[12] = 'X';
  Bytes zero_height_jpeg = with_jpeg_size(jpeg, 16, 0);
  Bytes long_segment = jpeg;
  put_be16(long_segment, 4, 0xFFFF);  // the first segment's length runs far past the end
  Bytes short_segment = jpeg;
  put_be16(short_segment, 4, 1);  // lengths count themselves: below 2 is impossible

  for (const Bytes* bytes :
       {&zero_width, &bad_depth, &not_ihdr, &zero_height_jpeg, &long_segment, &short_segment}) {
    const Result<Image> decoded = decode_image(*bytes);
    ASSERT_FALSE(decoded);
    EXPECT_EQ(decoded.error().code(), ErrorCode::kBadImage) << describe(decoded);
  }
}

TEST(Decode, RefusesAPngWhoseHeaderChecksumIsWrong) {
  // Plausible dimensions but a stale CRC: our header check passes it, libpng must refuse it.
  const Bytes png = with_png_header(encode(make_pattern(16, 16), ".png"), 20, 20, false);
  const Result<Image> decoded = decode_image(png);
  ASSERT_FALSE(decoded);
  EXPECT_EQ(decoded.error().code(), ErrorCode::kBadImage) << describe(decoded);
}

TEST(Decode, IsSafeToCallFromSeveralThreads) {
  const Bytes jpeg = encode(make_pattern(96, 64), ".jpg");
  const Result<Image> reference = decode_image(jpeg);
  ASSERT_TRUE(reference) << describe(reference);
  std::vector<int> mismatches(4, 0);
  std::vector<std::thread> threads;
  for (std::size_t t = 0; t < mismatches.size(); ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 25; ++i) {
        const Result<Image> decoded = decode_image(jpeg);
        if (!decoded || decoded->bgr != reference->bgr) {
          ++mismatches[t];
        }
      }
    });
  }
  for (std::thread& thread : threads) {
    thread.join();
  }
  for (int m : mismatches) {
    EXPECT_EQ(m, 0);
  }
}

// ---- Files ------------------------------------------------------------------------------------

TEST(Decode, LoadsAnImageFileTrustingItsBytesNotItsName) {
  TempDir dir;
  const cv::Mat original = make_pattern(30, 20);
  const fs::path path = dir.path() / "photo.jpg";  // holds a PNG
  write_file(path, encode(original, ".png"));
  const Result<Image> loaded = load_image_file(path);
  ASSERT_TRUE(loaded) << describe(loaded);
  EXPECT_EQ(cv::norm(vision::as_mat(*loaded), original, cv::NORM_INF), 0.0);
}

TEST(Decode, RefusesATextFileNamedDotJpg) {
  TempDir dir;
  const fs::path path = dir.path() / "face.jpg";
  const std::string text = "This is not a picture of a face.\n";
  write_file(path, std::span(reinterpret_cast<const std::uint8_t*>(text.data()), text.size()));
  const Result<Image> loaded = load_image_file(path);
  ASSERT_FALSE(loaded);
  EXPECT_EQ(loaded.error().code(), ErrorCode::kBadImage) << describe(loaded);
}

TEST(Decode, ReportsAMissingFileAsNotFound) {
  TempDir dir;
  for (const fs::path& path : {dir.path() / "absent.jpg", dir.path() / "no-dir" / "absent.jpg"}) {
    const Result<Image> loaded = load_image_file(path);
    ASSERT_FALSE(loaded);
    EXPECT_EQ(loaded.error().code(), ErrorCode::kNotFound) << describe(loaded);
  }
}

TEST(Decode, RefusesADirectoryAsAnInvalidArgument) {
  TempDir dir;
  const Result<Image> loaded = load_image_file(dir.path());
  ASSERT_FALSE(loaded);
  EXPECT_EQ(loaded.error().code(), ErrorCode::kInvalidArgument) << describe(loaded);
}

TEST(Decode, RefusesAFileOverTheByteLimitByItsSize) {
  TempDir dir;
  const fs::path path = dir.path() / "big.png";
  const Bytes png = encode(make_pattern(64, 64), ".png");
  write_file(path, png);
  DecodeLimits limits;
  limits.max_bytes = png.size() - 1;
  const Result<Image> loaded = load_image_file(path, limits);
  ASSERT_FALSE(loaded);
  EXPECT_EQ(loaded.error().code(), ErrorCode::kImageTooLarge) << describe(loaded);
  EXPECT_TRUE(contains(loaded.error().message(), std::to_string(png.size()))) << describe(loaded);
}

TEST(Decode, ReportsAReadFailureAsAnIoError) {
  // /proc/self/mem opens as a regular file, but reading offset 0 (an unmapped address) fails
  // with EIO: a read error that needs neither a broken disk nor a non-root user.
  const fs::path mem = "/proc/self/mem";
  if (!fs::exists(mem)) {
    GTEST_SKIP() << "/proc/self/mem not available: cannot provoke a read error";
  }
  const Result<Image> loaded = load_image_file(mem);
  ASSERT_FALSE(loaded);
  EXPECT_EQ(loaded.error().code(), ErrorCode::kIoError) << describe(loaded);
}

// ---- Real photographs -------------------------------------------------------------------------

std::vector<fs::path> first_images(const fs::path& dir, std::size_t n) {
  std::vector<fs::path> files;
  std::error_code ec;
  for (const auto& entry : fs::recursive_directory_iterator(dir, ec)) {
    const std::string ext = entry.path().extension().string();
    if (entry.is_regular_file() && (ext == ".jpg" || ext == ".png")) {
      files.push_back(entry.path());
    }
  }
  std::sort(files.begin(), files.end());
  if (files.size() > n) {
    files.resize(n);
  }
  return files;
}

TEST(Decode, DecodesRealPhotosToTheirDocumentedSize) {
  FACELOGIN_REQUIRE_DATA(data);
  struct Source {
    fs::path dir;
    int width;
    int height;
  };
  // Sizes as documented in shared/README.md.
  const Source sources[] = {
      {data / "nuaa" / "ClientRaw", 640, 480},
      {data / "nuaa" / "ImposterRaw", 640, 480},
      {data / "lfw" / "images", 250, 250},
      // Stored 640x480 with EXIF Orientation 6 (bytes 0x2A-0x31 of each file), so shown upright
      // as 480x640: the 3:4 portrait that the Silent-Face upstream requires of its inputs.
      {data / "media" / "silent_face", 480, 640},
  };
  int decoded_count = 0;
  for (const Source& source : sources) {
    for (const fs::path& path : first_images(source.dir, 5)) {
      const Result<Image> loaded = load_image_file(path);
      ASSERT_TRUE(loaded) << path << ": " << describe(loaded);
      EXPECT_EQ(loaded->width, source.width) << path;
      EXPECT_EQ(loaded->height, source.height) << path;
      ++decoded_count;
    }
  }
  if (decoded_count == 0) {
    GTEST_SKIP() << "no NUAA, LFW or silent_face photos under " << data;
  }
}

TEST(Decode, AgreesWithImreadOnRealPhotosWithExifAndAlpha) {
  FACELOGIN_REQUIRE_DATA(data);
  // Camera JPEGs with EXIF blocks, RGBA PNG portraits: our checks must accept them all and give
  // exactly what OpenCV's own file reader gives.
  const std::vector<fs::path> photos = first_images(data / "media" / "face_recognition", 30);
  if (photos.empty()) {
    GTEST_SKIP() << "no photos under " << data / "media" / "face_recognition";
  }
  for (const fs::path& path : photos) {
    const Result<Image> loaded = load_image_file(path);
    ASSERT_TRUE(loaded) << path << ": " << describe(loaded);
    const cv::Mat expected = cv::imread(path.string(), cv::IMREAD_COLOR);
    ASSERT_FALSE(expected.empty()) << path;
    EXPECT_EQ(loaded->width, expected.cols) << path;
    EXPECT_EQ(loaded->height, expected.rows) << path;
    EXPECT_EQ(cv::norm(vision::as_mat(*loaded), expected, cv::NORM_INF), 0.0) << path;
  }
}

}  // namespace
}  // namespace facelogin
