#include "vision/subject.h"

#include <cmath>
#include <tuple>

namespace facelogin::vision {
namespace {

double subject_weight(const DetectedFace& f, SubjectPolicy policy, int w, int h) {
  const double area = f.box.area();
  if (policy == SubjectPolicy::kLargest) {
    return area;
  }
  // kCentral: the area discounted by the distance of the face centre from the image centre,
  // measured in half-diagonals, so a centred face beats a larger one at the edge.
  const Point2 c = f.box.center();
  const double dx = (c.x - w / 2.0) / (w / 2.0);
  const double dy = (c.y - h / 2.0) / (h / 2.0);
  const double d = std::sqrt((dx * dx + dy * dy) / 2.0);
  return area * std::exp(-4.0 * d * d);
}

}  // namespace

std::optional<SubjectChoice> choose_subject(const std::vector<DetectedFace>& faces,
                                            SubjectPolicy policy, int frame_width,
                                            int frame_height, float second_face_area_ratio) {
  if (faces.empty()) {
    return std::nullopt;
  }
  auto key = [&](std::size_t i) {
    const auto& f = faces[i];
    return std::make_tuple(subject_weight(f, policy, frame_width, frame_height), f.score,
                           -f.box.y, -f.box.x);
  };
  SubjectChoice choice;
  for (std::size_t i = 1; i < faces.size(); ++i) {
    if (key(i) > key(choice.subject)) {
      choice.subject = i;
    }
  }
  const float subject_area = faces[choice.subject].box.area();
  for (std::size_t i = 0; i < faces.size(); ++i) {
    if (i == choice.subject) {
      continue;
    }
    const float area = faces[i].box.area();
    if (area >= second_face_area_ratio * subject_area &&
        (!choice.rival || area > faces[*choice.rival].box.area())) {
      choice.rival = i;
    }
  }
  return choice;
}

}  // namespace facelogin::vision
