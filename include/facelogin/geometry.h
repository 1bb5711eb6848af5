#pragma once

// Plain geometry types shared by the vision components. Coordinates are in pixels of the
// image they were measured on, x to the right, y down.

#include <array>

namespace facelogin {

struct Point2 {
  float x = 0.f;
  float y = 0.f;
};

struct Box {
  float x = 0.f;  // left
  float y = 0.f;  // top
  float width = 0.f;
  float height = 0.f;

  float area() const { return width > 0.f && height > 0.f ? width * height : 0.f; }
  Point2 center() const { return {x + width / 2.f, y + height / 2.f}; }
};

// The five landmarks YuNet and the ArcFace template use, in this order: the subject's right
// eye (left in the image), left eye, nose tip, right mouth corner, left mouth corner.
using Landmarks5 = std::array<Point2, 5>;

}  // namespace facelogin
