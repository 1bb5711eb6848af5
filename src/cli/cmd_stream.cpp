// Commands on camera frames and streams: login (recognition + liveness over a video or a camera)
// and liveness (score images or videos).

#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <iostream>
#include <map>
#include <set>
#include <sstream>
#include <utility>

#include "cli/context.h"
#include "facelogin/eval.h"
#include "facelogin/liveness.h"
#include "facelogin/login_attempt.h"

namespace facelogin::cli {

Result<LivenessRig> open_rig(const Context& ctx) {
  auto engine = ctx.open_engine();
  if (!engine) {
    return make_error(engine.error());
  }
  auto worker = (*engine)->make_worker();
  if (!worker) {
    return make_error(worker.error());
  }
  auto models = LivenessModels::load(ctx.models);
  if (!models) {
    return make_error(models.error());
  }
  auto scorer = (*models)->make_scorer();
  if (!scorer) {
    return make_error(scorer.error());
  }
  return LivenessRig{std::move(*engine), std::move(*worker), std::move(*scorer)};
}

namespace {

// The subject's face box, or nullopt without a face.
Result<std::optional<Box>> find_subject(LivenessRig& rig, const Image& image) {
  AnalyzeOptions analyze;
  analyze.embed = false;
  analyze.enforce_quality = false;
  analyze.refuse_several_faces = false;
  auto analysis = rig.worker->analyze(image, analyze);
  if (!analysis) {
    return make_error(analysis.error());
  }
  if (!analysis->subject) {
    return std::optional<Box>();
  }
  return std::optional<Box>(analysis->faces[*analysis->subject].box);
}

}  // namespace

Result<FrameLiveness> score_frame(LivenessRig& rig, const Image& image) {
  auto face = find_subject(rig, image);
  if (!face) {
    return make_error(face.error());
  }
  FrameLiveness out;
  if (!*face) {
    out.no_face_reason = "no face found";
    return out;
  }
  const auto start = std::chrono::steady_clock::now();
  auto score = rig.scorer->score(image, **face);
  out.liveness_ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
  if (!score) {
    return make_error(score.error());
  }
  out.score = std::move(*score);
  return out;
}

namespace {

bool is_video_path(const std::string& path) {
  std::string ext = std::filesystem::path(path).extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  for (const char* v : {".webm", ".mp4", ".mkv", ".avi", ".mov", ".y4m"}) {
    if (ext == v) {
      return true;
    }
  }
  return false;
}

// A video as a camera: one attempt (a LivenessSession, as a login would run it) after another,
// frame times taken from the file's frame rate.
Result<nlohmann::json> score_video(Context& ctx, LivenessRig& rig, const std::string& path,
                                   const LivenessSessionOptions& session_options) {
  auto video = VideoReader::open(path);
  if (!video) {
    return make_error(video.error());
  }
  const double fps = (*video)->fps() > 0 ? (*video)->fps() : 30.0;
  std::size_t frames = 0;
  std::size_t frames_with_face = 0;
  std::map<std::string, int> verdicts;
  std::vector<float> means;
  std::vector<float> mins;
  int strong = 0;  // live attempts strong enough for the adaptive policy to decide alone
  auto session = std::make_unique<LivenessSession>(*rig.scorer, session_options);
  while (true) {
    auto frame = (*video)->next();
    if (!frame) {
      return make_error(frame.error());
    }
    if (!*frame) {
      break;
    }
    const auto t = std::chrono::milliseconds(static_cast<std::int64_t>(1000.0 * frames / fps));
    ++frames;
    auto face = find_subject(rig, **frame);
    if (!face) {
      return make_error(face.error());
    }
    frames_with_face += face->has_value() ? 1 : 0;
    auto verdict = session->add_frame(**frame, *face, t);
    if (!verdict) {
      return make_error(verdict.error());
    }
    if (*verdict != LivenessVerdict::kPending) {
      ++verdicts[std::string(liveness_verdict_name(*verdict))];
      means.push_back(session->mean_score());
      mins.push_back(session->min_score());
      strong += session->strong() ? 1 : 0;
      session = std::make_unique<LivenessSession>(*rig.scorer, session_options);
    }
  }
  int attempts = 0;
  for (const auto& [name, count] : verdicts) {
    attempts += count;
  }
  const int live_attempts = verdicts.contains("live") ? verdicts.at("live") : 0;
  const bool live = attempts > 0 && live_attempts == attempts;
  if (!ctx.json) {
    std::string breakdown;
    for (const auto& [name, count] : verdicts) {
      breakdown += fmt::format("{}{} {}", breakdown.empty() ? "" : ", ", count, name);
    }
    std::cout << fmt::format(
        "{}: {} of {} attempts live, {} of them strong enough to pass without a challenge "
        "under the adaptive policy ({}; {} frames, {} with a face, {} per attempt, threshold "
        "{:.3f}, strong {:.3f})\n",
        path, live_attempts, attempts, strong,
        breakdown.empty() ? "no attempt finished" : breakdown, frames, frames_with_face,
        session_options.frames_needed, session_options.threshold,
        session_options.strong_threshold);
  }
  return nlohmann::json{{"video", path},
                        {"frames", frames},
                        {"frames_with_face", frames_with_face},
                        {"attempt_frames", session_options.frames_needed},
                        {"attempts", attempts},
                        {"attempts_live", live_attempts},
                        {"attempts_strong", strong},
                        {"attempt_min_scores", mins},
                        {"verdicts", verdicts},
                        {"attempt_mean_scores", means},
                        {"live", live}};
}

int run_liveness(Context& ctx, const std::vector<std::string>& paths, float threshold,
                 int attempt_frames) {
  // Images are decoded before the models load, so that a bad file fails fast.
  std::vector<std::optional<Image>> images;
  for (const auto& p : paths) {
    if (is_video_path(p)) {
      images.emplace_back();
      continue;
    }
    auto image = load_image_file(p);
    if (!image) {
      return ctx.fail(
          Status(image.error().code(), fmt::format("{}: {}", p, image.error().message())));
    }
    images.emplace_back(std::move(*image));
  }
  auto rig = open_rig(ctx);
  if (!rig) {
    return ctx.fail(rig.error());
  }
  nlohmann::json results = nlohmann::json::array();
  bool all_live = true;
  for (std::size_t i = 0; i < images.size(); ++i) {
    if (!images[i]) {
      LivenessSessionOptions session;
      session.threshold = threshold;
      session.frames_needed = attempt_frames;
      session.deadline = std::chrono::hours(24);  // a file has no deadline
      auto v = score_video(ctx, *rig, paths[i], session);
      if (!v) {
        return ctx.fail(
            Status(v.error().code(), fmt::format("{}: {}", paths[i], v.error().message())));
      }
      all_live = all_live && (*v)["live"].get<bool>();
      results.push_back(std::move(*v));
      continue;
    }
    auto r = score_frame(*rig, *images[i]);
    if (!r) {
      return ctx.fail(
          Status(r.error().code(), fmt::format("{}: {}", paths[i], r.error().message())));
    }
    if (!r->score) {
      return ctx.fail(
          Status(ErrorCode::kNoFace, fmt::format("{}: {}", paths[i], r->no_face_reason)));
    }
    const bool live = r->score->live >= threshold;
    all_live = all_live && live;
    results.push_back({{"image", paths[i]},
                       {"live_score", r->score->live},
                       {"per_model", r->score->per_model},
                       {"live", live}});
    if (!ctx.json) {
      std::cout << fmt::format("{}: {} (live score {:.3f}, threshold {:.3f})\n", paths[i],
                               live ? "live" : "NOT LIVE: looks like a photo or a screen",
                               r->score->live, threshold);
    }
  }
  ctx.emit_json(
      {{"ok", true}, {"threshold", threshold}, {"all_live", all_live}, {"results", results}});
  return all_live ? kExitOk : kExitNoMatch;
}

struct LoginOptions {
  std::string user;
  std::string video;
  int camera = -1;
  std::string liveness = "adaptive";
  int timeout_s = 20;
};

int run_login(Context& ctx, const LoginOptions& opts) {
  if (Status s = validate_user_name(opts.user); !s.ok()) {
    return ctx.fail(s);
  }
  if (opts.video.empty() == (opts.camera < 0)) {
    return ctx.fail(Status(ErrorCode::kInvalidArgument, "give one of --video FILE or --camera N"));
  }
  auto video =
      opts.video.empty() ? VideoReader::open_camera(opts.camera) : VideoReader::open(opts.video);
  if (!video) {
    return ctx.fail(video.error());
  }
  auto store = ctx.open_store();
  if (!store) {
    return ctx.fail(store.error());
  }
  auto service = ctx.open_service(**store);
  if (!service) {
    return ctx.fail(service.error());
  }
  LoginPolicy policy;
  policy.liveness.policy = *parse_liveness_policy(opts.liveness);  // checked by CLI11
  policy.liveness.deadline = std::chrono::seconds(opts.timeout_s);
  std::unique_ptr<LivenessScorer> scorer;
  if (policy.liveness.policy != LivenessPolicy::kOff) {
    auto models = LivenessModels::load(ctx.models);
    if (!models) {
      return ctx.fail(models.error());
    }
    auto made = (*models)->make_scorer();
    if (!made) {
      return ctx.fail(made.error());
    }
    scorer = std::move(*made);
  }
  auto attempt = LoginAttempt::begin(*service, scorer.get(), opts.user, policy);
  if (!attempt) {
    return ctx.fail(attempt.error());
  }
  // A file plays at its own frame rate; a camera in real time.
  const double fps = (*video)->fps() > 0 ? (*video)->fps() : 30.0;
  const auto start = std::chrono::steady_clock::now();
  std::size_t frames = 0;
  std::string last_advice;
  while (attempt->state() == AttemptState::kPending) {
    auto frame = (*video)->next();
    if (!frame) {
      return ctx.fail(frame.error());
    }
    if (!*frame) {
      break;
    }
    const auto t =
        opts.video.empty()
            ? std::chrono::duration_cast<std::chrono::milliseconds>(
                  std::chrono::steady_clock::now() - start)
            : std::chrono::milliseconds(static_cast<std::int64_t>(1000.0 * frames / fps));
    ++frames;
    auto feedback = attempt->add_frame({fmt::format("frame {}", frames), std::move(**frame)}, t);
    if (!feedback) {
      return ctx.fail(feedback.error());
    }
    if (feedback->state == AttemptState::kPending && feedback->advice != last_advice) {
      if (!ctx.json) {
        std::cerr << feedback->advice << "\n";  // guidance, as the web app shows it
      }
      last_advice = feedback->advice;
    }
    if (feedback->state == AttemptState::kRejected && !ctx.json) {
      std::cout << fmt::format("Refused ({}): {}\n", feedback->reason, feedback->advice);
    }
  }
  const LivenessSession& live = attempt->liveness();
  ctx.emit_json({{"ok", true},
                 {"user", opts.user},
                 {"accepted", attempt->state() == AttemptState::kAccepted},
                 {"decided", attempt->state() != AttemptState::kPending},
                 {"reason", attempt->reason()},
                 {"frames", frames},
                 {"best_score", attempt->best_score()},
                 {"threshold", service->threshold()},
                 {"liveness",
                  {{"policy", opts.liveness},
                   {"verdict", std::string(liveness_verdict_name(live.verdict()))},
                   {"frames_counted", live.frames_counted()},
                   {"repeats", live.repeats()},
                   {"mean_score", live.mean_score()},
                   {"strong", live.strong()},
                   {"challenge", attempt->challenge() != nullptr},
                   {"step_up", attempt->step_up()}}}});
  switch (attempt->state()) {
    case AttemptState::kAccepted:
      if (!ctx.json) {
        std::cout << fmt::format(
            "Logged in as {} after {} frames (best score {:.3f}, threshold {:.3f}; liveness {}, "
            "mean live score {:.3f}).\n",
            opts.user, frames, attempt->best_score(), service->threshold(),
            opts.liveness == "off" ? "off" : "live", live.mean_score());
      }
      return kExitOk;
    case AttemptState::kRejected:
      return kExitNoMatch;
    case AttemptState::kPending:
      break;
  }
  return ctx.fail(Status(ErrorCode::kNoFace,
                         fmt::format("no decision: the stream ended after {} frames ({} counted "
                                     "for liveness); {}",
                                     frames, live.frames_counted(),
                                     last_advice.empty() ? "no usable face" : last_advice)));
}

}  // namespace

void register_liveness_commands(CLI::App& app, Context& ctx, int& exit_code) {
  auto login_opts = std::make_shared<LoginOptions>();
  auto* login = app.add_subcommand(
      "login", "Log in from a video or a camera: recognition and liveness over the stream");
  login->add_option("--user", login_opts->user, "Who is logging in")->required();
  login->add_option("--video", login_opts->video, "A video file played as the camera");
  login->add_option("--camera", login_opts->camera, "A local camera by index (0: the first)")
      ->check(CLI::Range(0, 63));
  login->add_option("--liveness", login_opts->liveness, "Liveness policy")
      ->capture_default_str()
      ->check(CLI::IsMember({"off", "passive", "active", "adaptive"}));
  login->add_option("--timeout", login_opts->timeout_s, "Seconds before the attempt times out")
      ->capture_default_str()
      ->check(CLI::Range(1, 600));
  login->callback([&ctx, &exit_code, login_opts] { exit_code = run_login(ctx, *login_opts); });

  auto* liveness = app.add_subcommand(
      "liveness", "Passive liveness of the face in each image: live, or a photo or screen");
  auto paths = std::make_shared<std::vector<std::string>>();
  auto threshold = std::make_shared<float>(kDefaultLiveThreshold);
  auto attempt_frames = std::make_shared<int>(10);
  liveness
      ->add_option("files", *paths,
                   "JPEG or PNG camera frames, or videos (.webm .mp4 .mkv .avi .mov .y4m)")
      ->required();
  liveness
      ->add_option("--attempt-frames", *attempt_frames,
                   "Videos: frames with a face per attempt, decided by their mean score")
      ->capture_default_str()
      ->check(CLI::Range(1, 1000));
  liveness->add_option("--min-live", *threshold, "Live score needed to pass")
      ->capture_default_str()
      ->check(CLI::Range(0.f, 1.f));
  liveness->callback([&ctx, &exit_code, paths, threshold, attempt_frames] {
    exit_code = run_liveness(ctx, *paths, *threshold, *attempt_frames);
  });
}

}  // namespace facelogin::cli
