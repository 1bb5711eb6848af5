// facelogin_peer_dlib: the per-frame pipeline of the `face_recognition` Python package, in C++
// with Debian's dlib: HOG face detector (upsample 1, as face_recognition's default), the 68-point
// shape predictor (libdlib-data), a 150x150 face chip (padding 0.25), and the dlib ResNet
// descriptor (the same network facelogin uses, run here through OpenCV's DNN from
// models/dlib_resnet_v1.onnx, whose graph takes raw 0-255 RGB). Reports the median milliseconds
// per frame and per stage over the given JPEG/PNG frames, on one core.
//
//   ./build/facelogin_peer_dlib --model models/dlib_resnet_v1.onnx [--repeat 3] FRAME...

#include <dlib/image_processing.h>
#include <dlib/image_processing/frontal_face_detector.h>
#include <dlib/image_transforms.h>
#include <dlib/opencv.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <opencv2/dnn.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>
#include <string>
#include <vector>

#include "bench_util.h"

using facelogin::bench::Clock;
using facelogin::bench::median;
using facelogin::bench::ms_since;

int main(int argc, char** argv) {
  std::string model = "models/dlib_resnet_v1.onnx";
  std::string predictor_path = "/usr/share/dlib/shape_predictor_68_face_landmarks.dat";
  int repeat = 3;
  std::vector<std::string> frames;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--model" && i + 1 < argc) {
      model = argv[++i];
    } else if (a == "--predictor" && i + 1 < argc) {
      predictor_path = argv[++i];
    } else if (a == "--repeat" && i + 1 < argc) {
      repeat = std::max(1, std::atoi(argv[++i]));
    } else {
      frames.push_back(a);
    }
  }
  if (frames.empty()) {
    std::fprintf(stderr, "usage: %s [--model ONNX] [--predictor DAT] [--repeat N] FRAME...\n",
                 argv[0]);
    return 2;
  }
  cv::setNumThreads(1);
  dlib::frontal_face_detector detector = dlib::get_frontal_face_detector();
  dlib::shape_predictor predictor;
  try {
    dlib::deserialize(predictor_path) >> predictor;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "cannot load %s: %s (Debian libdlib-data)\n", predictor_path.c_str(),
                 e.what());
    return 1;
  }
  cv::dnn::Net net;
  try {
    net = cv::dnn::readNetFromONNX(model);
  } catch (const cv::Exception& e) {
    std::fprintf(stderr, "cannot load %s: %s\n", model.c_str(), e.what());
    return 1;
  }
  std::vector<double> decode_ms, detect_ms, landmarks_ms, embed_ms, total_ms;
  int faces = 0;
  int runs = 0;
  for (int r = 0; r < repeat; ++r) {
    for (const std::string& path : frames) {
      const auto t0 = Clock::now();
      cv::Mat bgr = cv::imread(path, cv::IMREAD_COLOR);
      if (bgr.empty()) {
        std::fprintf(stderr, "cannot read %s\n", path.c_str());
        return 1;
      }
      cv::Mat rgb;
      cv::cvtColor(bgr, rgb, cv::COLOR_BGR2RGB);
      dlib::matrix<dlib::rgb_pixel> img;
      dlib::assign_image(img, dlib::cv_image<dlib::rgb_pixel>(rgb));
      decode_ms.push_back(ms_since(t0));

      auto t1 = Clock::now();
      // face_recognition.face_locations(img) upsamples once before the HOG detector.
      dlib::pyramid_up(img);
      std::vector<dlib::rectangle> boxes = detector(img);
      detect_ms.push_back(ms_since(t1));
      ++runs;
      if (boxes.empty()) {
        total_ms.push_back(ms_since(t0));
        continue;
      }
      ++faces;
      const auto largest = *std::max_element(
          boxes.begin(), boxes.end(),
          [](const dlib::rectangle& a, const dlib::rectangle& b) { return a.area() < b.area(); });

      t1 = Clock::now();
      const dlib::full_object_detection shape = predictor(img, largest);
      dlib::matrix<dlib::rgb_pixel> chip;
      dlib::extract_image_chip(img, dlib::get_face_chip_details(shape, 150, 0.25), chip);
      landmarks_ms.push_back(ms_since(t1));

      t1 = Clock::now();
      cv::Mat chip_mat = dlib::toMat(chip).clone();
      cv::Mat blob = cv::dnn::blobFromImage(chip_mat, 1.0, cv::Size(150, 150), cv::Scalar(),
                                            /*swapRB=*/false, /*crop=*/false, CV_32F);
      net.setInput(blob);
      cv::Mat descriptor = net.forward();
      embed_ms.push_back(ms_since(t1));
      total_ms.push_back(ms_since(t0));
      if (descriptor.total() != 128) {
        std::fprintf(stderr, "unexpected descriptor size %zu\n", descriptor.total());
        return 1;
      }
    }
  }
  std::printf(
      "{\"pipeline\":\"face_recognition-style (dlib HOG + 68 landmarks + dlib ResNet)\","
      "\"frames\":%d,\"faces_found\":%d,\"median_ms\":{\"total\":%.2f,\"decode\":%.2f,"
      "\"detect\":%.2f,\"landmarks_chip\":%.2f,\"embed\":%.2f}}\n",
      runs, faces, median(total_ms), median(decode_ms), median(detect_ms), median(landmarks_ms),
      median(embed_ms));
  return 0;
}
