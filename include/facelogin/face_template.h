#pragma once

// A biometric template: the embedding of one face image by one recogniser. Templates are
// secrets: never log, print or write them anywhere but the encrypted store.

#include <string>
#include <vector>

namespace facelogin {

struct FaceTemplate {
  // The recogniser that made it (RecognizerSpec::id). Templates of different recognisers are
  // never compared: their spaces are unrelated.
  std::string model_id;
  // L2-normalised embedding of RecognizerSpec::embedding_size floats.
  std::vector<float> embedding;
  // Quality score of the frame it came from, 0..1 (informational).
  float quality = 0.f;
  // Made by compose_first_pass_template (no mirror images) for an early decision: compared,
  // never enrolled (FaceService refuses it). Not stored.
  bool first_pass = false;
};

}  // namespace facelogin
