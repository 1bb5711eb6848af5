// DET plots. The layout is computed once against a small Canvas interface with two backends: a
// hand-written SVG document and an OpenCV image written as PNG, so both formats look the same.

#include <fmt/core.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <fstream>
#include <limits>
#include <memory>
#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>
#include <optional>

#include "facelogin/eval.h"

namespace facelogin::eval {
namespace {

struct Color {
  std::uint8_t r = 0;
  std::uint8_t g = 0;
  std::uint8_t b = 0;
};

struct Pt {
  double x = 0.0;
  double y = 0.0;
};

enum class Anchor { kStart, kMiddle, kEnd };
enum class Shape { kCircle, kSquare, kTriangle, kDiamond };

struct TextStyle {
  double size = 14.0;  // font size in pixels (the em, as in CSS)
  Color color{30, 30, 30};
  Anchor anchor = Anchor::kStart;
  bool bold = false;
  bool vertical = false;  // rotated a quarter turn anticlockwise, reading bottom to top
};

constexpr Color kWhite{255, 255, 255};
constexpr Color kAxis{60, 60, 60};
constexpr Color kMajorGrid{205, 205, 205};
constexpr Color kMinorGrid{236, 236, 236};
constexpr Color kMuted{100, 100, 100};
// A colour-blind-friendly-enough categorical palette (Tableau 10).
constexpr std::array<Color, 8> kPalette{{{31, 119, 180},
                                         {214, 39, 40},
                                         {44, 160, 44},
                                         {255, 127, 14},
                                         {148, 103, 189},
                                         {140, 86, 75},
                                         {227, 119, 194},
                                         {127, 127, 127}}};

class Canvas {
 public:
  virtual ~Canvas() = default;
  virtual double text_width(std::string_view s, double size, bool bold) = 0;
  // (x, y) is the baseline point the anchor refers to (for vertical text: after rotation).
  virtual void text(double x, double y, std::string_view s, const TextStyle& style) = 0;
  virtual void line(Pt a, Pt b, Color c, double width, bool dashed) = 0;
  virtual void polyline(const std::vector<Pt>& pts, Color c, double width) = 0;
  virtual void rect(double x, double y, double w, double h, std::optional<Color> fill,
                    std::optional<Color> stroke, double stroke_width) = 0;
  virtual void marker(Shape shape, Pt at, double radius, Color fill, Color stroke) = 0;
};

std::vector<Pt> marker_outline(Shape shape, Pt at, double r) {
  switch (shape) {
    case Shape::kSquare: {
      const double s = r * 0.85;
      return {
          {at.x - s, at.y - s}, {at.x + s, at.y - s}, {at.x + s, at.y + s}, {at.x - s, at.y + s}};
    }
    case Shape::kTriangle:
      return {{at.x, at.y - r * 1.15}, {at.x + r, at.y + r * 0.7}, {at.x - r, at.y + r * 0.7}};
    case Shape::kDiamond:
      return {{at.x, at.y - r * 1.2}, {at.x + r, at.y}, {at.x, at.y + r * 1.2}, {at.x - r, at.y}};
    case Shape::kCircle:
      break;
  }
  return {};
}

// ---------------------------------------------------------------------------------------------
// SVG backend

std::string xml_escape(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (char c : s) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      case '\'':
        out += "&apos;";
        break;
      default:
        // Control characters are not allowed in XML 1.0; drop them.
        if (static_cast<unsigned char>(c) >= 0x20 || c == '\t') {
          out += c;
        }
    }
  }
  return out;
}

std::string css(Color c) { return fmt::format("#{:02x}{:02x}{:02x}", c.r, c.g, c.b); }

class SvgCanvas final : public Canvas {
 public:
  SvgCanvas(int width, int height) {
    body_ += fmt::format(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
        "<svg xmlns=\"http://www.w3.org/2000/svg\" version=\"1.1\" width=\"{0}\" height=\"{1}\" "
        "viewBox=\"0 0 {0} {1}\" font-family=\"DejaVu Sans, Helvetica, Arial, sans-serif\">\n",
        width, height);
  }
  std::string finish() { return body_ + "</svg>\n"; }

  double text_width(std::string_view s, double size, bool bold) override {
    // An estimate for a typical sans-serif (no font metrics here); used only for layout slack.
    return static_cast<double>(s.size()) * size * (bold ? 0.62 : 0.57);
  }
  void text(double x, double y, std::string_view s, const TextStyle& st) override {
    const char* anchor = st.anchor == Anchor::kStart    ? "start"
                         : st.anchor == Anchor::kMiddle ? "middle"
                                                        : "end";
    std::string transform;
    if (st.vertical) {
      transform = fmt::format(" transform=\"rotate(-90 {:.1f} {:.1f})\"", x, y);
    }
    body_ += fmt::format(
        "<text x=\"{:.1f}\" y=\"{:.1f}\" font-size=\"{:.1f}\" fill=\"{}\" text-anchor=\"{}\"{}{}>"
        "{}</text>\n",
        x, y, st.size, css(st.color), anchor, st.bold ? " font-weight=\"bold\"" : "", transform,
        xml_escape(s));
  }
  void line(Pt a, Pt b, Color c, double width, bool dashed) override {
    body_ += fmt::format(
        "<line x1=\"{:.2f}\" y1=\"{:.2f}\" x2=\"{:.2f}\" y2=\"{:.2f}\" stroke=\"{}\" "
        "stroke-width=\"{:.2f}\"{}/>\n",
        a.x, a.y, b.x, b.y, css(c), width, dashed ? " stroke-dasharray=\"5 4\"" : "");
  }
  void polyline(const std::vector<Pt>& pts, Color c, double width) override {
    std::string coords;
    for (const Pt& p : pts) {
      coords += fmt::format("{:.2f},{:.2f} ", p.x, p.y);
    }
    if (!coords.empty()) {
      coords.pop_back();
    }
    body_ += fmt::format(
        "<polyline points=\"{}\" fill=\"none\" stroke=\"{}\" stroke-width=\"{:.2f}\" "
        "stroke-linejoin=\"round\" stroke-linecap=\"round\"/>\n",
        coords, css(c), width);
  }
  void rect(double x, double y, double w, double h, std::optional<Color> fill,
            std::optional<Color> stroke, double stroke_width) override {
    body_ += fmt::format(
        "<rect x=\"{:.2f}\" y=\"{:.2f}\" width=\"{:.2f}\" height=\"{:.2f}\" "
        "fill=\"{}\"",
        x, y, w, h, fill ? css(*fill) : "none");
    if (stroke) {
      body_ += fmt::format(" stroke=\"{}\" stroke-width=\"{:.2f}\"", css(*stroke), stroke_width);
    }
    body_ += "/>\n";
  }
  void marker(Shape shape, Pt at, double r, Color fill, Color stroke) override {
    if (shape == Shape::kCircle) {
      body_ += fmt::format(
          "<circle cx=\"{:.2f}\" cy=\"{:.2f}\" r=\"{:.2f}\" fill=\"{}\" stroke=\"{}\" "
          "stroke-width=\"1.5\"/>\n",
          at.x, at.y, r, css(fill), css(stroke));
      return;
    }
    std::string coords;
    for (const Pt& p : marker_outline(shape, at, r)) {
      coords += fmt::format("{:.2f},{:.2f} ", p.x, p.y);
    }
    coords.pop_back();
    body_ += fmt::format(
        "<polygon points=\"{}\" fill=\"{}\" stroke=\"{}\" stroke-width=\"1.5\" "
        "stroke-linejoin=\"round\"/>\n",
        coords, css(fill), css(stroke));
  }

 private:
  std::string body_;
};

// ---------------------------------------------------------------------------------------------
// OpenCV backend

constexpr int kShift = 4;  // sub-pixel bits for OpenCV drawing
constexpr double kOne = 1 << kShift;

cv::Point fixed(Pt p) {
  return {static_cast<int>(std::lround(p.x * kOne)), static_cast<int>(std::lround(p.y * kOne))};
}
cv::Scalar bgr(Color c) { return cv::Scalar(c.b, c.g, c.r); }

class MatCanvas final : public Canvas {
 public:
  MatCanvas(int width, int height) : img_(height, width, CV_8UC3, cv::Scalar(255, 255, 255)) {}
  const cv::Mat& image() const { return img_; }

  double text_width(std::string_view s, double size, bool bold) override {
    int baseline = 0;
    return cv::getTextSize(std::string(s), kFont, scale(size), bold ? 2 : 1, &baseline).width;
  }
  void text(double x, double y, std::string_view s, const TextStyle& st) override {
    const std::string str(s);
    const int thickness = st.bold ? 2 : 1;
    int baseline = 0;
    const cv::Size size = cv::getTextSize(str, kFont, scale(st.size), thickness, &baseline);
    const double offset = st.anchor == Anchor::kStart    ? 0.0
                          : st.anchor == Anchor::kMiddle ? size.width / 2.0
                                                         : static_cast<double>(size.width);
    if (!st.vertical) {
      cv::putText(
          img_, str,
          cv::Point(static_cast<int>(std::lround(x - offset)), static_cast<int>(std::lround(y))),
          kFont, scale(st.size), bgr(st.color), thickness, cv::LINE_AA);
      return;
    }
    // Draw horizontally into a coverage mask, turn it, and blend it in.
    const int pad = 2;
    cv::Mat mask(size.height + baseline + 2 * pad, size.width + 2 * pad, CV_8UC1, cv::Scalar(0));
    cv::putText(mask, str, cv::Point(pad, pad + size.height), kFont, scale(st.size),
                cv::Scalar(255), thickness, cv::LINE_AA);
    cv::Mat turned;
    cv::rotate(mask, turned, cv::ROTATE_90_COUNTERCLOCKWISE);
    // After the turn the baseline is the vertical line x = pad + size.height, and the text
    // starts at the bottom.
    const int left = static_cast<int>(std::lround(x)) - (pad + size.height);
    const int top = static_cast<int>(std::lround(y - (size.width - offset))) - pad;
    blend(turned, left, top, st.color);
  }
  void line(Pt a, Pt b, Color c, double width, bool dashed) override {
    if (!dashed) {
      draw_segment(a, b, c, width);
      return;
    }
    const double len = std::hypot(b.x - a.x, b.y - a.y);
    for (double s = 0.0; s < len; s += 9.0) {
      const double e = std::min(len, s + 5.0);
      draw_segment({a.x + (b.x - a.x) * s / len, a.y + (b.y - a.y) * s / len},
                   {a.x + (b.x - a.x) * e / len, a.y + (b.y - a.y) * e / len}, c, width);
    }
  }
  void polyline(const std::vector<Pt>& pts, Color c, double width) override {
    std::vector<cv::Point> p;
    p.reserve(pts.size());
    for (const Pt& q : pts) {
      p.push_back(fixed(q));
    }
    std::vector<std::vector<cv::Point>> all{std::move(p)};
    cv::polylines(img_, all, false, bgr(c), thickness(width), cv::LINE_AA, kShift);
  }
  void rect(double x, double y, double w, double h, std::optional<Color> fill,
            std::optional<Color> stroke, double stroke_width) override {
    std::vector<cv::Point> corners{fixed({x, y}), fixed({x + w, y}), fixed({x + w, y + h}),
                                   fixed({x, y + h})};
    if (fill) {
      cv::fillConvexPoly(img_, corners, bgr(*fill), cv::LINE_AA, kShift);
    }
    if (stroke) {
      std::vector<std::vector<cv::Point>> all{corners};
      cv::polylines(img_, all, true, bgr(*stroke), thickness(stroke_width), cv::LINE_AA, kShift);
    }
  }
  void marker(Shape shape, Pt at, double r, Color fill, Color stroke) override {
    // A filled shape on a slightly larger one in the stroke colour: OpenCV's thick anti-aliased
    // outlines eat into small shapes.
    fill_shape(shape, at, r + 1.6, stroke);
    fill_shape(shape, at, r, fill);
  }

 private:
  static constexpr int kFont = cv::FONT_HERSHEY_SIMPLEX;
  // FONT_HERSHEY_SIMPLEX at scale 1 has capitals about 22 px high; a CSS font of size s has
  // capitals about 0.72 s high.
  static double scale(double size) { return size * 0.72 / 22.0; }
  static int thickness(double width) { return std::max(1, static_cast<int>(width)); }

  void fill_shape(Shape shape, Pt at, double r, Color c) {
    if (shape == Shape::kCircle) {
      cv::circle(img_, fixed(at), static_cast<int>(std::lround(r * kOne)), bgr(c), cv::FILLED,
                 cv::LINE_AA, kShift);
      return;
    }
    std::vector<cv::Point> p;
    for (const Pt& q : marker_outline(shape, at, r)) {
      p.push_back(fixed(q));
    }
    cv::fillConvexPoly(img_, p, bgr(c), cv::LINE_AA, kShift);
  }
  void draw_segment(Pt a, Pt b, Color c, double width) {
    cv::line(img_, fixed(a), fixed(b), bgr(c), thickness(width), cv::LINE_AA, kShift);
  }
  void blend(const cv::Mat& coverage, int left, int top, Color c) {
    for (int yy = 0; yy < coverage.rows; ++yy) {
      const int iy = top + yy;
      if (iy < 0 || iy >= img_.rows) {
        continue;
      }
      for (int xx = 0; xx < coverage.cols; ++xx) {
        const int ix = left + xx;
        if (ix < 0 || ix >= img_.cols) {
          continue;
        }
        const double a = coverage.at<std::uint8_t>(yy, xx) / 255.0;
        cv::Vec3b& px = img_.at<cv::Vec3b>(iy, ix);
        const std::array<double, 3> col{static_cast<double>(c.b), static_cast<double>(c.g),
                                        static_cast<double>(c.r)};
        for (int ch = 0; ch < 3; ++ch) {
          px[ch] = cv::saturate_cast<std::uint8_t>(px[ch] * (1.0 - a) + col[ch] * a);
        }
      }
    }
  }

  cv::Mat img_;
};

// ---------------------------------------------------------------------------------------------
// Layout

struct Axes {
  double left = 0.0;  // plot area in pixels
  double top = 0.0;
  double right = 0.0;
  double bottom = 0.0;
  double x_lo = -6.0;  // log10 range
  double x_hi = 0.0;
  double y_lo = -3.0;
  double y_hi = 0.0;

  double px(double log_fmr) const {
    return left + (log_fmr - x_lo) / (x_hi - x_lo) * (right - left);
  }
  double py(double log_fnmr) const {
    return bottom - (log_fnmr - y_lo) / (y_hi - y_lo) * (bottom - top);
  }
};

// Liang-Barsky: clips segment a-b to the rectangle; false if nothing is left.
bool clip(Pt& a, Pt& b, const Axes& ax) {
  double t0 = 0.0;
  double t1 = 1.0;
  const double dx = b.x - a.x;
  const double dy = b.y - a.y;
  const std::array<double, 4> p{-dx, dx, -dy, dy};
  const std::array<double, 4> q{a.x - ax.left, ax.right - a.x, a.y - ax.top, ax.bottom - a.y};
  for (int i = 0; i < 4; ++i) {
    if (p[i] == 0.0) {
      if (q[i] < 0.0) {
        return false;
      }
      continue;
    }
    const double t = q[i] / p[i];
    if (p[i] < 0.0) {
      t0 = std::max(t0, t);
    } else {
      t1 = std::min(t1, t);
    }
    if (t0 > t1) {
      return false;
    }
  }
  const Pt a0 = a;
  a = {a0.x + t0 * dx, a0.y + t0 * dy};
  b = {a0.x + t1 * dx, a0.y + t1 * dy};
  return true;
}

Shape shape_for(double target_fmr) {
  const auto near = [target_fmr](double v) { return std::abs(target_fmr / v - 1.0) < 1e-6; };
  if (near(1e-3)) {
    return Shape::kCircle;
  }
  if (near(1e-4)) {
    return Shape::kSquare;
  }
  if (near(1e-5)) {
    return Shape::kTriangle;
  }
  return Shape::kDiamond;
}

std::string fmr_label(double target_fmr) {
  const double e = std::log10(target_fmr);
  if (std::abs(e - std::round(e)) < 1e-9) {
    return fmt::format("FMR 1e{}", static_cast<int>(std::lround(e)));
  }
  return fmt::format("FMR {:g}", target_fmr);
}

// "10" with a raised exponent, or "1" for 10^0, anchored like TextStyle::anchor.
void pow10_label(Canvas& c, double x, double y, int exponent, double size, Anchor anchor) {
  TextStyle st;
  st.size = size;
  st.color = kAxis;
  if (exponent == 0) {
    st.anchor = anchor;
    c.text(x, y, "1", st);
    return;
  }
  const std::string base = "10";
  const std::string exp = fmt::format("{}", exponent);
  const double small = size * 0.72;
  const double wb = c.text_width(base, size, false);
  const double we = c.text_width(exp, small, false) + 1.0;
  const double total = wb + we;
  const double x0 = anchor == Anchor::kStart    ? x
                    : anchor == Anchor::kMiddle ? x - total / 2
                                                : x - total;
  c.text(x0, y, base, st);
  st.size = small;
  c.text(x0 + wb + 1.0, y - size * 0.42, exp, st);
}

void draw(Canvas& c, std::span<const DetSeries> curves, const PlotOptions& o) {
  const double w = o.width;
  const double h = o.height;
  const double font = std::clamp(std::min(w, h) / 48.0, 11.0, 28.0);
  const bool has_subtitle = !o.subtitle.empty();
  Axes ax;
  ax.left = font * 5.2;
  ax.right = w - font * 1.8;
  ax.top = font * (has_subtitle ? 4.4 : 3.4);
  ax.bottom = h - font * 4.0;
  ax.x_lo = std::floor(std::log10(o.min_fmr) + 1e-9);
  ax.x_hi = 0.0;

  double y_lo = 0.0;
  if (o.min_fnmr > 0.0) {
    y_lo = std::floor(std::log10(o.min_fnmr) + 1e-9);
  } else {
    double lowest = 1.0;
    for (const DetSeries& s : curves) {
      for (const CurvePoint& p : s.points) {
        if (p.fmr >= o.min_fmr && p.fnmr > 0.0) {
          lowest = std::min(lowest, p.fnmr);
        }
      }
    }
    y_lo = std::clamp(std::floor(std::log10(lowest) + 1e-9), -4.0, -1.0);
  }
  ax.y_lo = y_lo;
  ax.y_hi = 0.0;

  // Background, grid, frame.
  c.rect(0, 0, w, h, kWhite, std::nullopt, 0);
  const int decades_x = static_cast<int>(std::lround(ax.x_hi - ax.x_lo));
  const int decades_y = static_cast<int>(std::lround(ax.y_hi - ax.y_lo));
  for (int d = 0; d < decades_x; ++d) {
    for (int m = 2; m <= 9; ++m) {
      const double x = ax.px(ax.x_lo + d + std::log10(m));
      c.line({x, ax.top}, {x, ax.bottom}, kMinorGrid, 1.0, false);
    }
  }
  for (int d = 0; d < decades_y; ++d) {
    for (int m = 2; m <= 9; ++m) {
      const double y = ax.py(ax.y_lo + d + std::log10(m));
      c.line({ax.left, y}, {ax.right, y}, kMinorGrid, 1.0, false);
    }
  }
  for (int d = 0; d <= decades_x; ++d) {
    const double x = ax.px(ax.x_lo + d);
    c.line({x, ax.top}, {x, ax.bottom}, kMajorGrid, 1.0, false);
    pow10_label(c, x, ax.bottom + font * 1.5, static_cast<int>(ax.x_lo) + d, font, Anchor::kMiddle);
  }
  for (int d = 0; d <= decades_y; ++d) {
    const double y = ax.py(ax.y_lo + d);
    c.line({ax.left, y}, {ax.right, y}, kMajorGrid, 1.0, false);
    pow10_label(c, ax.left - font * 0.5, y + font * 0.35, static_cast<int>(ax.y_lo) + d, font,
                Anchor::kEnd);
  }
  c.rect(ax.left, ax.top, ax.right - ax.left, ax.bottom - ax.top, std::nullopt, kAxis, 1.2);

  // Titles.
  TextStyle title;
  title.size = font * 1.35;
  title.bold = true;
  title.anchor = Anchor::kMiddle;
  c.text((ax.left + ax.right) / 2, font * 2.0, o.title, title);
  if (has_subtitle) {
    TextStyle sub;
    sub.size = font * 0.95;
    sub.anchor = Anchor::kMiddle;
    sub.color = kMuted;
    c.text((ax.left + ax.right) / 2, font * 3.4, o.subtitle, sub);
  }
  TextStyle label;
  label.size = font * 1.1;
  label.anchor = Anchor::kMiddle;
  label.color = kAxis;
  c.text((ax.left + ax.right) / 2, h - font * 1.1, o.x_label, label);
  label.vertical = true;
  c.text(font * 1.6, (ax.top + ax.bottom) / 2, o.y_label, label);

  // Curves, then markers on top of every curve.
  const auto to_px = [&ax](double fmr, double fnmr) {
    const double ly = fnmr > 0.0 ? std::log10(fnmr) : ax.y_lo;
    return Pt{ax.px(std::log10(fmr)), ax.py(std::max(ly, ax.y_lo - 1.0))};
  };
  const double curve_width = std::max(2.0, font / 6.0);
  std::vector<Pt> drawn;  // every point drawn, sampled every few pixels, to place the legend
  const auto sample = [&drawn](Pt a, Pt b) {
    const int steps = 1 + static_cast<int>(std::hypot(b.x - a.x, b.y - a.y) / 3.0);
    for (int k = 0; k <= steps; ++k) {
      const double f = static_cast<double>(k) / steps;
      drawn.push_back({a.x + (b.x - a.x) * f, a.y + (b.y - a.y) * f});
    }
  };
  for (std::size_t i = 0; i < curves.size(); ++i) {
    const Color col = kPalette[i % kPalette.size()];
    std::vector<Pt> pts;
    for (const CurvePoint& p : curves[i].points) {
      if (p.fmr > 0.0 && std::isfinite(p.fmr) && std::isfinite(p.fnmr)) {
        pts.push_back(to_px(p.fmr, p.fnmr));
      }
    }
    std::vector<Pt> run;
    for (std::size_t k = 1; k < pts.size(); ++k) {
      Pt a = pts[k - 1];
      Pt b = pts[k];
      if (!clip(a, b, ax)) {
        continue;
      }
      sample(a, b);
      const bool continues = !run.empty() && std::abs(run.back().x - a.x) < 1e-9 &&
                             std::abs(run.back().y - a.y) < 1e-9;
      if (!continues) {
        if (run.size() >= 2) {
          c.polyline(run, col, curve_width);
        }
        run.clear();
        run.push_back(a);
      }
      run.push_back(b);
    }
    if (run.size() >= 2) {
      c.polyline(run, col, curve_width);
    }
  }
  std::vector<double> marker_targets;
  for (std::size_t i = 0; i < curves.size(); ++i) {
    const Color col = kPalette[i % kPalette.size()];
    for (const OperatingPoint& op : curves[i].operating_points) {
      if (!op.resolvable || op.fmr <= 0.0) {
        continue;
      }
      const Pt at = to_px(op.fmr, op.fnmr);
      if (at.x < ax.left - 0.5 || at.x > ax.right + 0.5 || at.y < ax.top - 0.5 ||
          at.y > ax.bottom + 0.5) {
        continue;
      }
      c.marker(shape_for(op.target_fmr), at, font * 0.42, col, kWhite);
      drawn.push_back(at);
      if (std::find(marker_targets.begin(), marker_targets.end(), op.target_fmr) ==
          marker_targets.end()) {
        marker_targets.push_back(op.target_fmr);
      }
    }
  }
  std::sort(marker_targets.begin(), marker_targets.end(), std::greater<>());

  // Legend: in the inside corner that hides the fewest drawn points. Top right and bottom left
  // are empty for a good recogniser, top right is not for a weak one.
  TextStyle entry;
  entry.size = font;
  const double row = font * 1.5;
  const double swatch = font * 2.2;
  double text_w = 0.0;
  for (const DetSeries& s : curves) {
    text_w = std::max(text_w, c.text_width(s.name, font, false));
  }
  for (double t : marker_targets) {
    text_w = std::max(text_w, c.text_width(fmr_label(t), font, false));
  }
  const double rows = static_cast<double>(curves.size() + marker_targets.size());
  const double box_w = swatch + font * 0.8 + text_w + font * 1.2;
  const double box_h = rows * row + font * 0.8;
  const double inset = font * 0.6;
  const std::array<Pt, 4> corners{{{ax.right - box_w - inset, ax.top + inset},
                                   {ax.left + inset, ax.bottom - box_h - inset},
                                   {ax.right - box_w - inset, ax.bottom - box_h - inset},
                                   {ax.left + inset, ax.top + inset}}};
  std::size_t best_hidden = std::numeric_limits<std::size_t>::max();
  Pt corner = corners[0];
  for (const Pt& at : corners) {
    const double pad = font * 0.5;
    const auto hidden =
        static_cast<std::size_t>(std::count_if(drawn.begin(), drawn.end(), [&](Pt p) {
          return p.x >= at.x - pad && p.x <= at.x + box_w + pad && p.y >= at.y - pad &&
                 p.y <= at.y + box_h + pad;
        }));
    if (hidden < best_hidden) {
      best_hidden = hidden;
      corner = at;
    }
  }
  const double bx = corner.x;
  const double by = corner.y;
  c.rect(bx, by, box_w, box_h, kWhite, kMajorGrid, 1.0);
  double y = by + font * 0.4 + row / 2;
  for (std::size_t i = 0; i < curves.size(); ++i) {
    const Color col = kPalette[i % kPalette.size()];
    c.line({bx + font * 0.6, y}, {bx + font * 0.6 + swatch, y}, col, curve_width, false);
    c.text(bx + font * 1.2 + swatch, y + font * 0.35, curves[i].name, entry);
    y += row;
  }
  entry.color = kMuted;
  for (double t : marker_targets) {
    c.marker(shape_for(t), {bx + font * 0.6 + swatch / 2, y}, font * 0.42, kMuted, kWhite);
    c.text(bx + font * 1.2 + swatch, y + font * 0.35, fmr_label(t), entry);
    y += row;
  }
}

std::string lower_extension(const std::filesystem::path& path) {
  std::string ext = path.extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(),
                 [](unsigned char ch) { return static_cast<char>(std::tolower(ch)); });
  return ext;
}

}  // namespace

Status write_det_plot(const std::filesystem::path& path, std::span<const DetSeries> curves,
                      const PlotOptions& options) {
  if (curves.empty()) {
    return Status(ErrorCode::kInvalidArgument, "a DET plot needs at least one curve");
  }
  if (options.width < 320 || options.height < 240 || options.width > 8000 ||
      options.height > 8000) {
    return Status(ErrorCode::kInvalidArgument,
                  fmt::format("plot size {}x{} is outside 320x240..8000x8000", options.width,
                              options.height));
  }
  if (!(options.min_fmr > 0.0 && options.min_fmr <= 0.1) ||
      !(options.min_fnmr >= 0.0 && options.min_fnmr <= 0.1)) {
    return Status(ErrorCode::kInvalidArgument,
                  "min_fmr must be in (0, 0.1] and min_fnmr in [0, 0.1]");
  }
  const std::string ext = lower_extension(path);
  if (ext == ".svg") {
    SvgCanvas canvas(options.width, options.height);
    draw(canvas, curves, options);
    const std::string doc = canvas.finish();
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out.write(doc.data(), static_cast<std::streamsize>(doc.size()));
    out.close();
    if (!out) {
      return Status(ErrorCode::kIoError, fmt::format("cannot write {}", path.string()));
    }
    return Status::Ok();
  }
  if (ext == ".png") {
    try {
      MatCanvas canvas(options.width, options.height);
      draw(canvas, curves, options);
      if (!cv::imwrite(path.string(), canvas.image())) {
        return Status(ErrorCode::kIoError, fmt::format("cannot write {}", path.string()));
      }
      return Status::Ok();
    } catch (const cv::Exception& e) {
      return Status(ErrorCode::kIoError,
                    fmt::format("cannot write {}: {}", path.string(), e.what()));
    }
  }
  return Status(ErrorCode::kInvalidArgument,
                fmt::format("unknown plot format \"{}\": use .svg or .png", ext));
}

}  // namespace facelogin::eval
