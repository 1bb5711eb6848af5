#pragma once

// Choosing whose face a frame is about, and whether someone else is in it too.

#include <cstddef>
#include <optional>
#include <vector>

#include "facelogin/engine.h"

namespace facelogin::vision {

struct SubjectChoice {
  std::size_t subject = 0;
  // Another face whose area is at least `second_face_area_ratio` of the subject's.
  std::optional<std::size_t> rival;
};

// Picks the subject deterministically (ties broken by detector score, then position) and finds
// the largest rival. nullopt when `faces` is empty.
[[nodiscard]] std::optional<SubjectChoice> choose_subject(const std::vector<DetectedFace>& faces,
                                                          SubjectPolicy policy, int frame_width,
                                                          int frame_height,
                                                          float second_face_area_ratio);

}  // namespace facelogin::vision
