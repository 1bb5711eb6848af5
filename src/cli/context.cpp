#include "cli/context.h"

#include "facelogin/postgres_store.h"

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <iostream>

#include <fmt/format.h>

namespace facelogin::cli {

int exit_code_for(ErrorCode code) {
  switch (code) {
    case ErrorCode::kOk: return kExitOk;
    case ErrorCode::kInvalidArgument: return kExitUsage;
    case ErrorCode::kBadImage:
    case ErrorCode::kImageTooLarge:
    case ErrorCode::kNoFace:
    case ErrorCode::kSeveralFaces:
    case ErrorCode::kPoorQuality:
    case ErrorCode::kDifferentPeople: return kExitBadInput;
    case ErrorCode::kNotFound: return kExitNotFound;
    case ErrorCode::kModelMismatch:
    case ErrorCode::kModelError: return kExitModel;
    case ErrorCode::kAlreadyExists:
    case ErrorCode::kDuplicateFace: return kExitConflict;
    case ErrorCode::kIoError:
    case ErrorCode::kCorrupt:
    case ErrorCode::kBusy: return kExitStorage;
    case ErrorCode::kUnauthenticated:
    case ErrorCode::kForbidden:
    case ErrorCode::kTooManyRequests:
    case ErrorCode::kUnavailable: return kExitRefused;
    case ErrorCode::kInternal: return kExitInternal;
  }
  return kExitInternal;
}

Result<std::shared_ptr<const Engine>> Context::open_engine(int threads) const {
  EngineOptions options;
  options.model_dir = models;
  options.recognizer_id = recognizer;
  options.detector_id = detector;
  options.threads_per_worker = threads;
  return Engine::load(options);
}

Result<std::shared_ptr<const Engine>> Context::open_engine_for(const Store& store,
                                                               int threads) const {
  if (!recognizer.empty()) {
    return open_engine(threads);
  }
  auto chosen = store_recognizer(store);
  if (!chosen) {
    return make_error(chosen.error());
  }
  if (*chosen != default_recognizer_id()) {
    std::cerr << fmt::format(
        "facelogin: note: the enrolled users' templates were made by {}, not by the default {}: "
        "using {}. To move to {}, add new faces to every user with `facelogin --recognizer {} "
        "enroll --add`\n",
        *chosen, default_recognizer_id(), *chosen, default_recognizer_id(),
        default_recognizer_id());
  }
  Context local = *this;
  local.recognizer = *chosen;
  return local.open_engine(threads);
}

Result<std::unique_ptr<Store>> Context::open_store() const {
  std::error_code ec;
  std::filesystem::create_directories(home, ec);
  if (ec) {
    return make_error(ErrorCode::kIoError,
                      fmt::format("cannot create {}: {}", home.string(), ec.message()));
  }
  std::filesystem::permissions(home, std::filesystem::perms::owner_all,
                               std::filesystem::perm_options::replace, ec);
  auto key = load_or_create_key(home / "template.key");
  if (!key) {
    return make_error(key.error());
  }
  if (!database.empty()) {
    if (!is_postgres_conninfo(database)) {
      return make_error(ErrorCode::kInvalidArgument,
                        "--database must be a PostgreSQL connection (postgresql://... or "
                        "host=... dbname=...); the SQLite file lives in --home");
    }
    PostgresOptions options;
    options.conninfo = database;
    if (!database_schema.empty()) {
      options.schema = database_schema;
    }
    options.key = std::move(*key);
    return open_postgres_store(options);
  }
  SqliteStoreOptions options;
  options.key = std::move(*key);
  return open_sqlite_store(home / "facelogin.db", options);
}

Result<std::unique_ptr<AuthStore>> Context::open_auth_store() const {
  if (!database.empty()) {
    PostgresOptions options;
    options.conninfo = database;
    if (!database_schema.empty()) {
      options.schema = database_schema;
    }
    return open_postgres_auth_store(options);
  }
  return open_sqlite_auth_store(home / "facelogin.db");
}

Result<FaceService> Context::open_service(Store& store) const {
  auto engine = open_engine_for(store);
  if (!engine) {
    return make_error(engine.error());
  }
  auto worker = (*engine)->make_worker();
  if (!worker) {
    return make_error(worker.error());
  }
  ServiceOptions options;
  options.analyze.enforce_quality = !no_quality;
  options.early_decision = !no_early_decision;
  options.population_threshold = !no_population_threshold;
  options.threshold_override = threshold;
  return FaceService(*engine, std::move(*worker), store, options);
}

int Context::fail(const Status& status) const {
  if (json) {
    nlohmann::json doc = {{"ok", false},
                          {"error", {{"code", std::string(error_code_name(status.code()))},
                                     {"message", status.message()}}}};
    std::cout << doc.dump(2) << "\n";
  } else {
    std::cerr << "facelogin: " << status.message() << " ["
              << error_code_name(status.code()) << "]\n";
  }
  return exit_code_for(status.code());
}

void Context::emit_json(const nlohmann::json& doc) const {
  if (json) {
    std::cout << doc.dump(2) << "\n";
  }
}

nlohmann::json to_json(const QualityReport& q) {
  nlohmann::json issues = nlohmann::json::array();
  for (QualityIssue i : q.issues) {
    issues.push_back(std::string(quality_issue_name(i)));
  }
  return {{"issues", issues},
          {"face_width_px", q.face_width_px},
          {"brightness", q.brightness},
          {"sharpness", q.sharpness},
          {"pose", {{"yaw", q.pose.yaw}, {"pitch", q.pose.pitch}, {"roll", q.pose.roll}}},
          {"score", q.score}};
}

Result<std::unique_ptr<ScratchDir>> ScratchDir::make(std::string_view prefix) {
  std::string name = fmt::format("/tmp/{}-XXXXXX", prefix);
  if (mkdtemp(name.data()) == nullptr) {
    return make_error(ErrorCode::kIoError,
                      fmt::format("cannot make a temporary directory {}: {}", name,
                                  std::strerror(errno)));
  }
  return std::unique_ptr<ScratchDir>(new ScratchDir(name));
}

ScratchDir::~ScratchDir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

nlohmann::json to_json(const ImageReport& r) {
  nlohmann::json doc = {{"source", r.source},
                        {"outcome", std::string(frame_outcome_name(r.outcome))},
                        {"quality", to_json(r.quality)}};
  if (!r.message.empty()) {
    doc["message"] = r.message;
  }
  if (r.box) {
    doc["box"] = {r.box->x, r.box->y, r.box->width, r.box->height};
  }
  if (r.outcome == FrameOutcome::kOk) {
    doc["first_pass"] = r.first_pass;
  }
  return doc;
}

}  // namespace facelogin::cli
