#pragma once

// What every CLI command shares: global options, how to open the engine and the store, how to
// print results (human text or --json) and how errors become exit codes.

#include <filesystem>
#include <memory>
#include <string>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "facelogin/auth_store.h"
#include "facelogin/engine.h"
#include "facelogin/face_service.h"
#include "facelogin/liveness.h"
#include "facelogin/status.h"
#include "facelogin/store.h"

namespace facelogin::cli {

// Exit codes scripts can rely on (documented in README.md).
enum ExitCode : int {
  kExitOk = 0,
  kExitNoMatch = 1,    // a verification or identification that did not match
  kExitUsage = 2,      // bad command line
  kExitBadInput = 3,   // unusable image: not an image, too large, no face, several, poor quality
  kExitNotFound = 4,   // unknown user or file
  kExitModel = 5,      // model missing or corrupt
  kExitStorage = 6,    // database or key problem
  kExitConflict = 7,   // user exists, or face already enrolled under another user
  kExitRefused = 8,    // not allowed now: locked out, rate limited, no session, service busy
  kExitInternal = 70,
};

[[nodiscard]] int exit_code_for(ErrorCode code);

struct Context {
  std::filesystem::path home;  // state: database and key (--home / FACELOGIN_HOME)
  std::filesystem::path models;  // --models / FACELOGIN_MODEL_DIR
  // --database / FACELOGIN_DATABASE: a PostgreSQL connection; empty: SQLite in `home`.
  std::string database;
  // --database-schema / FACELOGIN_DATABASE_SCHEMA: the schema of `database` that holds
  // facelogin's tables; empty: PostgresOptions' default ("facelogin").
  std::string database_schema;
  std::string recognizer;        // --recognizer
  std::string detector;          // --detector (empty: YuNet when present, else the fallback)
  bool json = false;
  bool no_quality = false;       // --no-quality: skip the quality gate (datasets, tests)
  bool no_early_decision = false;  // --no-early-decision: always the full template
  // --no-population-threshold: decide at the base threshold alone (issue 15)
  bool no_population_threshold = false;
  float threshold = std::numeric_limits<float>::quiet_NaN();  // --threshold

  // Opens the engine with these options. Errors are printed by fail().
  [[nodiscard]] Result<std::shared_ptr<const Engine>> open_engine(int threads = 1) const;
  // As open_engine, for matching against `store`: without --recognizer, the recogniser its
  // templates were made with (store_recognizer; a note on stderr when that is not the default).
  [[nodiscard]] Result<std::shared_ptr<const Engine>> open_engine_for(const Store& store,
                                                                       int threads = 1) const;
  [[nodiscard]] Result<std::unique_ptr<Store>> open_store() const;
  // The server's accounts, sessions and audit, on the same database as open_store() (call that
  // first: it creates and migrates the database and checks the key).
  [[nodiscard]] Result<std::unique_ptr<AuthStore>> open_auth_store() const;
  [[nodiscard]] Result<FaceService> open_service(Store& store) const;

  // Prints `status` (human or JSON on stderr/stdout) and returns its exit code.
  int fail(const Status& status) const;
  // Prints a JSON document (with --json) or nothing.
  void emit_json(const nlohmann::json& doc) const;
};

// Detector and liveness scorer of one thread, for the liveness commands.
struct LivenessRig {
  std::shared_ptr<const Engine> engine;
  std::unique_ptr<Worker> worker;
  std::unique_ptr<LivenessScorer> scorer;
};
[[nodiscard]] Result<LivenessRig> open_rig(const Context& ctx);

// The subject's liveness score, or nullopt (and the reason) without a face.
struct FrameLiveness {
  std::optional<LivenessScore> score;
  std::string no_face_reason;
  double liveness_ms = 0;
};
// Finds the subject of `image` (no quality gate) and scores its liveness. Errors: the engine's
// and the scorer's.
[[nodiscard]] Result<FrameLiveness> score_frame(LivenessRig& rig, const Image& image);

// A new private directory under /tmp (mkdtemp, mode 0700), removed with everything in it when
// the object goes: scratch space for throw-away stores of bench and loadtest.
class ScratchDir {
 public:
  // Errors: kIoError.
  [[nodiscard]] static Result<std::unique_ptr<ScratchDir>> make(std::string_view prefix);
  ~ScratchDir();
  ScratchDir(const ScratchDir&) = delete;
  ScratchDir& operator=(const ScratchDir&) = delete;
  const std::filesystem::path& path() const { return path_; }

 private:
  explicit ScratchDir(std::filesystem::path path) : path_(std::move(path)) {}
  std::filesystem::path path_;
};

// Each command file registers its subcommands. `run` receives the exit code.
void register_face_commands(CLI::App& app, Context& ctx, int& exit_code);
void register_admin_commands(CLI::App& app, Context& ctx, int& exit_code);
void register_eval_commands(CLI::App& app, Context& ctx, int& exit_code);
void register_bench_command(CLI::App& app, Context& ctx, int& exit_code);
void register_liveness_commands(CLI::App& app, Context& ctx, int& exit_code);
void register_serve_command(CLI::App& app, Context& ctx, int& exit_code);
void register_loadtest_command(CLI::App& app, Context& ctx, int& exit_code);
// Adds `eval spoof` to the `eval` command.
void register_spoof_eval(CLI::App& eval, Context& ctx, int& exit_code);
void register_challenge_eval(CLI::App& eval, Context& ctx, int& exit_code);
void register_replay_eval(CLI::App& eval, Context& ctx, int& exit_code);

// JSON views of engine results (never templates).
nlohmann::json to_json(const ImageReport& report);
nlohmann::json to_json(const QualityReport& quality);

}  // namespace facelogin::cli
