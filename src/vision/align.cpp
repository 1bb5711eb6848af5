#include "vision/align.h"

#include <opencv2/imgproc.hpp>

namespace facelogin::vision {

cv::Mat fit_similarity(const Landmarks5& from, const Landmarks5& to) {
  constexpr int n = 5;
  double mx = 0, my = 0, ux = 0, uy = 0;
  for (int i = 0; i < n; ++i) {
    mx += from[i].x;
    my += from[i].y;
    ux += to[i].x;
    uy += to[i].y;
  }
  mx /= n;
  my /= n;
  ux /= n;
  uy /= n;
  // With complex numbers z = x + iy, the best similarity is to = a * from + b with
  // a = sum(conj(from_c) * to_c) / sum(|from_c|^2) on centred points; a's argument is the
  // rotation and its modulus the scale. This is Umeyama's solution in two dimensions, and it
  // cannot produce a reflection.
  double num_re = 0, num_im = 0, den = 0;
  for (int i = 0; i < n; ++i) {
    const double fx = from[i].x - mx, fy = from[i].y - my;
    const double tx = to[i].x - ux, ty = to[i].y - uy;
    num_re += fx * tx + fy * ty;
    num_im += fx * ty - fy * tx;
    den += fx * fx + fy * fy;
  }
  cv::Mat m = cv::Mat::zeros(2, 3, CV_64F);
  if (den <= 1e-12) {
    // Degenerate landmarks (all at one point): no transform is meaningful; an all-zero matrix
    // produces a black crop rather than garbage.
    return m;
  }
  const double a = num_re / den;
  const double b = num_im / den;
  m.at<double>(0, 0) = a;
  m.at<double>(0, 1) = -b;
  m.at<double>(1, 0) = b;
  m.at<double>(1, 1) = a;
  m.at<double>(0, 2) = ux - (a * mx - b * my);
  m.at<double>(1, 2) = uy - (b * mx + a * my);
  return m;
}

cv::Mat align_face(const cv::Mat& frame, const Landmarks5& landmarks, const Landmarks5& templ,
                   int width, int height) {
  cv::Mat crop;
  cv::warpAffine(frame, crop, fit_similarity(landmarks, templ), cv::Size(width, height),
                 cv::INTER_LINEAR, cv::BORDER_CONSTANT, cv::Scalar::all(0));
  return crop;
}

}  // namespace facelogin::vision
