// Writes a seed corpus for decode_fuzzer: small JPEGs and PNGs made with cv::imencode in every
// variant the decoder distinguishes (baseline and progressive, with and without EXIF orientation,
// optimised Huffman tables, restart markers, separate chroma tables; PNG grey, 16-bit, RGBA, and
// several compression levels). Small images keep each execution fast.
//
// Usage: decode_fuzz_seeds DIR   (DIR is created if absent)

#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

namespace {

namespace fs = std::filesystem;
using Bytes = std::vector<std::uint8_t>;

cv::Mat pattern(int width, int height) {
  cv::Mat m(height, width, CV_8UC3);
  for (int y = 0; y < height; ++y) {
    for (int x = 0; x < width; ++x) {
      m.at<cv::Vec3b>(y, x) = cv::Vec3b(static_cast<std::uint8_t>(x * 255 / width),
                                        static_cast<std::uint8_t>(y * 255 / height),
                                        static_cast<std::uint8_t>((x * y) % 256));
    }
  }
  return m;
}

// The APP1 segment of a big-endian EXIF block holding only an Orientation tag.
Bytes exif_app1(std::uint8_t orientation) {
  return {0xFF, 0xE1, 0x00, 0x22, 'E',  'x',         'i',  'f',  0x00, 0x00, 'M',  'M',
          0x00, 0x2A, 0x00, 0x00, 0x00, 0x08,        0x00, 0x01, 0x01, 0x12, 0x00, 0x03,
          0x00, 0x00, 0x00, 0x01, 0x00, orientation, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00};
}

bool write(const fs::path& path, const Bytes& bytes) {
  std::ofstream out(path, std::ios::binary);
  out.write(reinterpret_cast<const char*>(bytes.data()),
            static_cast<std::streamsize>(bytes.size()));
  return out.good();
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s CORPUS_DIR\n", argv[0]);
    return 2;
  }
  const fs::path dir = argv[1];
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) {
    std::fprintf(stderr, "cannot create %s: %s\n", dir.c_str(), ec.message().c_str());
    return 1;
  }

  const cv::Mat colour = pattern(23, 17);
  cv::Mat grey, bgra, deep;
  cv::cvtColor(colour, grey, cv::COLOR_BGR2GRAY);
  cv::cvtColor(colour, bgra, cv::COLOR_BGR2BGRA);
  colour.convertTo(deep, CV_16UC3, 257.0);

  struct Seed {
    std::string name;
    const cv::Mat* image;
    std::string ext;
    std::vector<int> params;
  };
  const std::vector<Seed> seeds = {
      {"baseline.jpg", &colour, ".jpg", {cv::IMWRITE_JPEG_QUALITY, 90}},
      {"low_quality.jpg", &colour, ".jpg", {cv::IMWRITE_JPEG_QUALITY, 5}},
      {"progressive.jpg", &colour, ".jpg", {cv::IMWRITE_JPEG_PROGRESSIVE, 1}},
      {"optimized.jpg", &colour, ".jpg", {cv::IMWRITE_JPEG_OPTIMIZE, 1}},
      {"restart.jpg", &colour, ".jpg", {cv::IMWRITE_JPEG_RST_INTERVAL, 1}},
      {"chroma_quality.jpg", &colour, ".jpg", {cv::IMWRITE_JPEG_CHROMA_QUALITY, 30}},
      {"grey.jpg", &grey, ".jpg", {}},
      {"colour.png", &colour, ".png", {}},
      {"colour_fast.png", &colour, ".png", {cv::IMWRITE_PNG_COMPRESSION, 0}},
      {"grey.png", &grey, ".png", {}},
      {"bilevel.png", &grey, ".png", {cv::IMWRITE_PNG_BILEVEL, 1}},
      {"rgba.png", &bgra, ".png", {}},
      {"deep.png", &deep, ".png", {}},
  };
  int written = 0;
  for (const Seed& seed : seeds) {
    Bytes bytes;
    if (!cv::imencode(seed.ext, *seed.image, bytes, seed.params)) {
      std::fprintf(stderr, "cannot encode %s\n", seed.name.c_str());
      return 1;
    }
    if (!write(dir / seed.name, bytes)) {
      std::fprintf(stderr, "cannot write %s\n", (dir / seed.name).c_str());
      return 1;
    }
    ++written;
    if (seed.ext == ".jpg" && seed.image == &colour) {
      // The same JPEG with an EXIF block right after SOI, for each orientation that moves pixels.
      for (std::uint8_t orientation : {2, 3, 6, 8}) {
        Bytes with_exif(bytes.begin(), bytes.begin() + 2);
        const Bytes app1 = exif_app1(orientation);
        with_exif.insert(with_exif.end(), app1.begin(), app1.end());
        with_exif.insert(with_exif.end(), bytes.begin() + 2, bytes.end());
        const std::string name = "exif" + std::to_string(orientation) + "_" + seed.name;
        if (!write(dir / name, with_exif)) {
          return 1;
        }
        ++written;
      }
    }
  }
  std::printf("wrote %d seeds to %s\n", written, dir.c_str());
  return 0;
}
