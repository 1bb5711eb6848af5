// `facelogin eval challenge`: the active challenge (signals 2 and 3 of issue 4) measured on real
// recordings: live attempts arranged from a live recording's frames, and replays of recordings
// played as a camera that cannot see the prompts. See include/facelogin/challenge_eval.h.
// `facelogin eval replay`: whole login sessions over recordings, started at every second, under
// each liveness policy (issue 16). See include/facelogin/replay_eval.h.

#include <fmt/format.h>

#include <algorithm>
#include <charconv>
#include <sstream>
#include <iostream>

#include "cli/context.h"
#include "facelogin/enrollment_session.h"
#include "facelogin/challenge_eval.h"
#include "facelogin/matching.h"
#include "facelogin/replay_eval.h"

namespace facelogin::cli {
namespace {

struct ChallengeEvalOptions {
  std::string live;
  std::vector<std::string> replays;
  int attempts = 1000;
  int steps = ChallengeOptions{}.steps;
  double fps = 30;  // of frame folders (NUAA: 30 per second)
  std::uint64_t seed = 1;
};

// A recording as frames: a video file, or a folder of images in the order of the last number in
// their names (NUAA's "0001_00_00_01_12.jpg").
struct Recording {
  std::vector<Image> frames;
  double fps = 0;
  // When each frame was taken, in seconds from the first: i / fps for a video; for a folder the
  // number in the name over fps (NUAA keeps every 4th frame of most recordings: gaps are kept).
  std::vector<double> times;
};

long trailing_number(const std::string& name) {
  const std::string stem = std::filesystem::path(name).stem().string();
  std::size_t end = stem.size();
  std::size_t start = end;
  while (start > 0 && std::isdigit(static_cast<unsigned char>(stem[start - 1])) != 0) {
    --start;
  }
  long value = -1;
  std::from_chars(stem.data() + start, stem.data() + end, value);
  return value;
}

Result<Recording> read_recording(const std::string& path, double folder_fps) {
  Recording out;
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) {
    std::vector<std::filesystem::path> files;
    for (const auto& entry : std::filesystem::directory_iterator(path, ec)) {
      const std::string ext = entry.path().extension().string();
      if (ext == ".jpg" || ext == ".jpeg" || ext == ".png") {
        files.push_back(entry.path());
      }
    }
    std::sort(files.begin(), files.end(), [](const auto& a, const auto& b) {
      const long na = trailing_number(a.string());
      const long nb = trailing_number(b.string());
      return na != nb ? na < nb : a < b;
    });
    const long first = files.empty() ? 0 : std::max(0L, trailing_number(files.front().string()));
    for (const auto& file : files) {
      auto image = load_image_file(file);
      if (!image) {
        return make_error(image.error());
      }
      out.frames.push_back(std::move(*image));
      const long number = trailing_number(file.string());
      out.times.push_back(number >= first ? static_cast<double>(number - first) / folder_fps
                                          : static_cast<double>(out.times.size()) / folder_fps);
    }
    out.fps = folder_fps;
  } else {
    auto reader = VideoReader::open(path);
    if (!reader) {
      return make_error(reader.error());
    }
    out.fps = (*reader)->fps() > 0 ? (*reader)->fps() : 30.0;
    while (true) {
      auto frame = (*reader)->next();
      if (!frame) {
        return make_error(frame.error());
      }
      if (!*frame) {
        break;
      }
      out.times.push_back(static_cast<double>(out.frames.size()) / out.fps);
      out.frames.push_back(std::move(**frame));
    }
  }
  if (out.frames.empty()) {
    return make_error(ErrorCode::kBadImage, fmt::format("{}: no frames", path));
  }
  return out;
}

struct Analysed {
  std::optional<FaceTemplate> face;
  std::optional<ChallengeFrame> seen;  // same_person filled in later
  std::optional<float> live;
};

Result<Analysed> analyse(LivenessRig& rig, const Image& frame) {
  // The login path under the active policy: quality gate (turns allowed further), one face.
  AnalyzeOptions analyze;
  analyze.extra_yaw_degrees = ChallengeOptions{}.extra_yaw_degrees;
  auto analysis = rig.worker->analyze(frame, analyze);
  if (!analysis) {
    return make_error(analysis.error());
  }
  Analysed out;
  if (analysis->outcome != FrameOutcome::kOk || !analysis->subject || !analysis->face) {
    return out;
  }
  const DetectedFace& face = analysis->faces[*analysis->subject];
  out.face = std::move(analysis->face);
  out.seen = ChallengeFrame{analysis->quality.pose, face.box, face.landmarks, false};
  auto score = rig.scorer->score(frame, face.box);
  if (!score) {
    return make_error(score.error());
  }
  out.live = score->live;
  return out;
}

// Analyses every frame; the recording's first five usable frames are its person's enrolment
// (a replay shows the account holder, so recognition never stops it: what is measured is
// liveness alone).
Result<std::vector<eval::ObservedFrame>> observe(LivenessRig& rig, const std::vector<Image>& frames,
                                                 float threshold,
                                                 std::vector<FaceTemplate>* enrolment) {
  std::vector<Analysed> analysed;
  for (const Image& frame : frames) {
    auto a = analyse(rig, frame);
    if (!a) {
      return make_error(a.error());
    }
    if (a->face && enrolment->size() < 5) {
      enrolment->push_back(*a->face);
    }
    analysed.push_back(std::move(*a));
  }
  std::vector<eval::ObservedFrame> out;
  for (Analysed& a : analysed) {
    eval::ObservedFrame f;
    f.live = a.live;
    if (a.seen && a.face) {
      float best = -1.f;
      for (const FaceTemplate& t : *enrolment) {
        if (auto s = similarity(*a.face, t)) {
          best = std::max(best, *s);
        }
      }
      a.seen->same_person = best >= threshold;
      f.face = a.seen;
    }
    out.push_back(std::move(f));
  }
  return out;
}

nlohmann::json trials_json(const eval::ChallengeTrials& t) {
  return {{"attempts", t.attempts},
          {"passed", t.passed},
          {"pass_rate", t.attempts > 0 ? static_cast<double>(t.passed) / t.attempts : 0.0},
          {"passed_with_passive", t.passed_with_passive},
          {"refusals", t.refusals},
          {"mean_seconds_to_pass", t.mean_seconds_to_pass}};
}

std::string trials_text(const eval::ChallengeTrials& t) {
  std::string refusals;
  for (const auto& [reason, n] : t.refusals) {
    refusals += fmt::format(" {} {}", reason, n);
  }
  return fmt::format("{}/{} passed ({:.2f}%), {} also passive-live; refused:{}", t.passed,
                     t.attempts, t.attempts > 0 ? 100.0 * t.passed / t.attempts : 0.0,
                     t.passed_with_passive, refusals.empty() ? " none" : refusals);
}

int run_challenge_eval(Context& ctx, const ChallengeEvalOptions& opts) {
  auto rig = open_rig(ctx);
  if (!rig) {
    return ctx.fail(rig.error());
  }
  const float threshold =
      std::isnan(ctx.threshold) ? rig->engine->recognizer().cosine_threshold() : ctx.threshold;
  ChallengeOptions options;
  options.steps = opts.steps;
  nlohmann::json doc = {{"steps", options.steps},
                        {"seed", opts.seed},
                        {"live_threshold", kDefaultLiveThreshold}};

  // Live, arranged.
  auto live = read_recording(opts.live, opts.fps);
  if (!live) {
    return ctx.fail(live.error());
  }
  std::vector<FaceTemplate> enrolment;
  auto observed = observe(*rig, live->frames, threshold, &enrolment);
  if (!observed) {
    return ctx.fail(observed.error());
  }
  std::vector<Image> closer;
  for (std::size_t i = 0; i < live->frames.size(); ++i) {
    if ((*observed)[i].face) {
      closer.push_back(eval::zoom_on_face(live->frames[i], (*observed)[i].face->box, 1.4f));
    }
  }
  auto observed_closer = observe(*rig, closer, threshold, &enrolment);
  if (!observed_closer) {
    return ctx.fail(observed_closer.error());
  }
  auto pools = eval::arrange_pools(*observed, *observed_closer, options);
  if (!pools) {
    return ctx.fail(pools.error());
  }
  const auto arranged = eval::run_arranged_attempts(*pools, options, kDefaultLiveThreshold,
                                                    opts.attempts, opts.seed);
  doc["live_arranged"] = trials_json(arranged);
  doc["live_arranged"]["source"] = opts.live;
  nlohmann::json pool_sizes = {{"centred", pools->centred.size()}};
  for (const auto& [action, frames] : pools->actions) {
    pool_sizes[std::string(challenge_action_name(action))] = frames.size();
  }
  doc["live_arranged"]["pool_frames"] = pool_sizes;
  if (!ctx.json) {
    fmt::print("live {} (arranged from its frames, {} attempts):\n  {}\n", opts.live,
               opts.attempts, trials_text(arranged));
  }

  // Replays: the live recording itself, then each other one.
  std::vector<std::pair<std::string, Recording>> replays;
  replays.emplace_back(opts.live, std::move(*live));
  for (const std::string& path : opts.replays) {
    auto recording = read_recording(path, opts.fps);
    if (!recording) {
      return ctx.fail(recording.error());
    }
    replays.emplace_back(path, std::move(*recording));
  }
  doc["replays"] = nlohmann::json::array();
  for (std::size_t i = 0; i < replays.size(); ++i) {
    const auto& [path, recording] = replays[i];
    std::vector<FaceTemplate> own;
    auto frames = i == 0 ? observed : observe(*rig, recording.frames, threshold, &own);
    if (!frames) {
      return ctx.fail(frames.error());
    }
    const auto trials = eval::run_replay_attempts(*frames, recording.fps, options,
                                                  kDefaultLiveThreshold, opts.attempts,
                                                  opts.seed + 1 + i);
    nlohmann::json r = trials_json(trials);
    r["source"] = path;
    r["fps"] = recording.fps;
    r["frames"] = recording.frames.size();
    doc["replays"].push_back(r);
    if (!ctx.json) {
      fmt::print("replay {} ({} frames at {:.0f}/s, {} attempts):\n  {}\n", path,
                 recording.frames.size(), recording.fps, opts.attempts, trials_text(trials));
    }
  }
  ctx.emit_json(doc);
  return kExitOk;
}

struct ReplayEvalOptions {
  std::vector<std::string> live;
  std::vector<std::string> attacks;
  std::string policies = "passive,adaptive,active";
  double fps = 30;  // of frame folders
  double send_fps = 10;
  double every = 1;
};

nlohmann::json summary_json(const eval::ReplaySummary& s) {
  return {{"sessions", s.sessions},
          {"accepted", s.accepted},
          {"accepted_without_challenge", s.accepted_without_challenge},
          {"stepped_up", s.stepped_up},
          {"stepped_up_accepted", s.stepped_up_accepted},
          {"refusals", s.refusals},
          {"undecided", s.undecided}};
}

std::string summary_text(const eval::ReplaySummary& s) {
  std::string refusals;
  for (const auto& [reason, n] : s.refusals) {
    refusals += fmt::format(" {} {}", reason, n);
  }
  if (s.undecided > 0) {
    refusals += fmt::format(" undecided {}", s.undecided);
  }
  return fmt::format("accepted {}/{} ({} without a challenge, {} after one); asked for a "
                     "challenge {}; refused:{}",
                     s.accepted, s.sessions, s.accepted_without_challenge, s.stepped_up_accepted,
                     s.stepped_up, refusals.empty() ? " none" : refusals);
}

// A throw-away store in `scratch`.
Result<std::unique_ptr<Store>> open_scratch_store(const ScratchDir& scratch) {
  auto key = load_or_create_key(scratch.path() / "key");
  if (!key) {
    return make_error(key.error());
  }
  SqliteStoreOptions store_options;
  store_options.key = *key;
  return open_sqlite_store(scratch.path() / "replay.db", store_options);
}

// Enrols the recording's first five usable frames as `user` (a replay shows the account
// holder), so that what is measured is liveness, recognition never refusing. The server's
// enrolment rules (EnrollmentSession) without its pose and liveness conditions.
Status enrol_recording(FaceService& service, const std::string& path, const Recording& rec,
                       const std::string& user) {
  EnrollmentPolicy policy;
  policy.frames_needed = 5;
  policy.min_pose_spread = 0.f;
  policy.live_check = false;
  auto session = EnrollmentSession::begin(user, false, policy);
  if (!session) {
    return session.error();
  }
  for (std::size_t i = 0; i < rec.frames.size() && !session->ready(); ++i) {
    auto feedback = session->add_frame(service, nullptr, {fmt::format("frame {}", i), rec.frames[i]},
                                       std::chrono::milliseconds(0));
    if (!feedback) {
      return feedback.error();
    }
  }
  if (!session->ready()) {
    return Status(ErrorCode::kNoFace,
                  fmt::format("{}: {} usable faces to enrol, {} needed", path,
                              session->good_frames(), policy.frames_needed));
  }
  auto enrolled = session->finish(service);
  if (!enrolled) {
    return Status(ErrorCode::kInvalidArgument, fmt::format("{}: cannot enrol its first faces: {}",
                                                           path, enrolled.error().message()));
  }
  return Status::Ok();
}

int run_replay_eval(Context& ctx, const ReplayEvalOptions& opts) {
  std::vector<LivenessPolicy> policies;
  std::stringstream list(opts.policies);
  for (std::string name; std::getline(list, name, ',');) {
    auto policy = parse_liveness_policy(name);
    if (!policy) {
      return ctx.fail(policy.error());
    }
    if (*policy == LivenessPolicy::kOff) {
      return ctx.fail(Status(ErrorCode::kInvalidArgument,
                             "eval replay measures liveness: 'off' accepts every replay"));
    }
    policies.push_back(*policy);
  }
  if (policies.empty() || (opts.live.empty() && opts.attacks.empty())) {
    return ctx.fail(Status(ErrorCode::kInvalidArgument,
                           "give --policies and at least one --live or --attack recording"));
  }
  auto models = LivenessModels::load(ctx.models);
  if (!models) {
    return ctx.fail(models.error());
  }
  auto scorer = (*models)->make_scorer();
  if (!scorer) {
    return ctx.fail(scorer.error());
  }
  eval::ReplayOptions replay;
  replay.send_fps = opts.send_fps;
  replay.every_seconds = opts.every;

  // Totals per policy and kind, over every recording.
  std::map<std::pair<std::string, bool>, std::vector<eval::ReplayOutcome>> totals;
  nlohmann::json recordings = nlohmann::json::array();
  std::vector<std::pair<std::string, bool>> inputs;
  for (const auto& p : opts.live) {
    inputs.emplace_back(p, true);
  }
  for (const auto& p : opts.attacks) {
    inputs.emplace_back(p, false);
  }
  for (const auto& [path, live] : inputs) {
    auto rec = read_recording(path, opts.fps);
    if (!rec) {
      return ctx.fail(rec.error());
    }
    auto scratch = ScratchDir::make("facelogin-replay");
    if (!scratch) {
      return ctx.fail(scratch.error());
    }
    const std::string user = "subject";
    auto store = open_scratch_store(**scratch);
    if (!store) {
      return ctx.fail(store.error());
    }
    auto service = ctx.open_service(**store);  // one engine per recording, not two
    if (!service) {
      return ctx.fail(service.error());
    }
    if (Status s = enrol_recording(*service, path, *rec, user); !s.ok()) {
      return ctx.fail(s);
    }
    nlohmann::json doc = {{"source", path},
                          {"kind", live ? "live" : "attack"},
                          {"frames", rec->frames.size()},
                          {"fps", rec->fps}};
    if (!ctx.json) {
      fmt::print("{} {} ({} frames at {:.0f}/s):\n", live ? "live" : "attack", path,
                 rec->frames.size(), rec->fps);
    }
    for (LivenessPolicy policy : policies) {
      LoginPolicy login;
      login.liveness.policy = policy;
      auto outcomes = eval::run_replay_sessions(*service, **scorer, rec->frames, rec->times,
                                                rec->fps, user, login, replay);
      if (!outcomes) {
        return ctx.fail(Status(outcomes.error().code(),
                               fmt::format("{}: {}", path, outcomes.error().message())));
      }
      const std::string name(liveness_policy_name(policy));
      const auto summary = eval::summarise(*outcomes);
      nlohmann::json sessions = nlohmann::json::array();
      for (const auto& o : *outcomes) {
        sessions.push_back({{"start_s", o.start_seconds},
                            {"accepted", o.accepted},
                            {"reason", o.reason},
                            {"step_up", o.step_up},
                            {"frames", o.frames},
                            {"passive_mean", o.passive_mean}});
      }
      doc["policies"][name] = summary_json(summary);
      doc["policies"][name]["per_session"] = sessions;
      auto& all = totals[{name, live}];
      all.insert(all.end(), outcomes->begin(), outcomes->end());
      if (!ctx.json) {
        fmt::print("  {:<9} {}\n", name, summary_text(summary));
        std::fflush(stdout);  // progress, when the output goes to a file
      }
    }
    recordings.push_back(std::move(doc));
  }
  nlohmann::json total = nlohmann::json::object();
  if (!ctx.json) {
    fmt::print("\nAll recordings:\n");
  }
  for (LivenessPolicy policy : policies) {
    const std::string name(liveness_policy_name(policy));
    for (bool live : {true, false}) {
      if (!totals.contains({name, live})) {
        continue;
      }
      const auto summary = eval::summarise(totals.at({name, live}));
      total[name][live ? "live" : "attack"] = summary_json(summary);
      if (!ctx.json) {
        fmt::print("  {:<9} {:<6} {}\n", name, live ? "live" : "attack", summary_text(summary));
      }
    }
  }
  ctx.emit_json({{"ok", true},
                 {"send_fps", opts.send_fps},
                 {"every_seconds", opts.every},
                 {"recordings", recordings},
                 {"total", total}});
  return kExitOk;
}

}  // namespace

void register_replay_eval(CLI::App& eval, Context& ctx, int& exit_code) {
  auto opts = std::make_shared<ReplayEvalOptions>();
  auto* cmd = eval.add_subcommand(
      "replay",
      "Logins over recordings played as the camera from every second, under each liveness "
      "policy: attacks accepted, live logins passed without or asked for a challenge");
  cmd->add_option("--live", opts->live, "Live recordings (videos or frame folders)");
  cmd->add_option("--attack", opts->attacks,
                  "Attack recordings: replays, prints (videos or frame folders)");
  cmd->add_option("--policies", opts->policies, "Comma-separated liveness policies")
      ->capture_default_str();
  cmd->add_option("--fps", opts->fps, "Frame rate of frame folders")
      ->capture_default_str()
      ->check(CLI::Range(1.0, 120.0));
  cmd->add_option("--send-fps", opts->send_fps, "Frames the camera sends per second")
      ->capture_default_str()
      ->check(CLI::Range(1.0, 60.0));
  cmd->add_option("--every", opts->every, "Seconds between two sessions' starting points")
      ->capture_default_str()
      ->check(CLI::Range(0.1, 600.0));
  cmd->callback([&ctx, &exit_code, opts] { exit_code = run_replay_eval(ctx, *opts); });
}

void register_challenge_eval(CLI::App& eval, Context& ctx, int& exit_code) {
  auto opts = std::make_shared<ChallengeEvalOptions>();
  auto* cmd = eval.add_subcommand(
      "challenge",
      "Active challenge: live attempts arranged from a live recording's frames, and replayed "
      "recordings played as the camera");
  cmd->add_option("--live", opts->live,
                  "A live recording of one person turning their head (video or frame folder)")
      ->required();
  cmd->add_option("--replay", opts->replays,
                  "Recordings replayed as the camera (videos or frame folders); the live "
                  "recording is always replayed too");
  cmd->add_option("--attempts", opts->attempts, "Attempts per recording")
      ->capture_default_str()
      ->check(CLI::Range(1, 1'000'000));
  cmd->add_option("--steps", opts->steps, "Actions per challenge")
      ->capture_default_str()
      ->check(CLI::Range(1, 8));
  cmd->add_option("--fps", opts->fps, "Frame rate of frame folders")
      ->capture_default_str()
      ->check(CLI::Range(1.0, 120.0));
  cmd->add_option("--seed", opts->seed, "Seed of the challenges drawn")->capture_default_str();
  cmd->callback([&ctx, &exit_code, opts] { exit_code = run_challenge_eval(ctx, *opts); });
}

}  // namespace facelogin::cli
