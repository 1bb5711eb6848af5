// Builds a Y4M video (what Chromium's fake camera reads) from still frames, for the end-to-end
// test: make_y4m OUT.y4m FPS FRAME.jpg...  Frames are scaled to 640x480 and written as I420.

#include <cstdio>
#include <fstream>
#include <iostream>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>
#include <string>

int main(int argc, char** argv) {
  if (argc < 4) {
    std::cerr << "usage: make_y4m OUT.y4m FPS FRAME...\n";
    return 2;
  }
  constexpr int kWidth = 640;
  constexpr int kHeight = 480;
  std::ofstream out(argv[1], std::ios::binary);
  out << "YUV4MPEG2 W" << kWidth << " H" << kHeight << " F" << std::stoi(argv[2])
      << ":1 Ip A1:1 C420jpeg\n";
  int written = 0;
  for (int i = 3; i < argc; ++i) {
    cv::Mat bgr = cv::imread(argv[i], cv::IMREAD_COLOR);
    if (bgr.empty()) {
      std::cerr << "make_y4m: cannot read " << argv[i] << "\n";
      return 1;
    }
    cv::resize(bgr, bgr, cv::Size(kWidth, kHeight));
    cv::Mat i420;
    cv::cvtColor(bgr, i420, cv::COLOR_BGR2YUV_I420);
    out << "FRAME\n";
    out.write(reinterpret_cast<const char*>(i420.data),
              static_cast<std::streamsize>(i420.total() * i420.elemSize()));
    ++written;
  }
  if (!out) {
    std::cerr << "make_y4m: cannot write " << argv[1] << "\n";
    return 1;
  }
  std::cout << written << " frames\n";
  return 0;
}
