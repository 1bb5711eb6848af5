// Commands on camera frames and streams: login (recognition + liveness over a video or a camera),
// liveness (score images or videos) and eval spoof (APCER/BPCER on a NUAA-style folder).

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

// The subject's liveness score, or nullopt (and the reason) without a face.
struct FrameLiveness {
  std::optional<LivenessScore> score;
  std::string no_face_reason;
  double liveness_ms = 0;
};

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

struct SpoofOptions {
  std::string data;
  std::string train_subjects = "0001,0002,0003,0004";
  int attempt_frames = 10;
  double max_bpcer = 0.02;
  float strong = kDefaultStrongLiveThreshold;
  std::string plot;
};

// The adaptive policy on attempts (kAdaptive, LivenessSession::strong): refused by the passive
// score, decided live by it alone (strong evidence), or stepped up to the challenge.
struct StepUpCounts {
  int refused = 0;
  int strong = 0;
  int stepped_up = 0;
  int total() const { return refused + strong + stepped_up; }
};

nlohmann::json step_up_json(const StepUpCounts& c) {
  return {{"attempts", c.total()},
          {"refused", c.refused},
          {"passive_alone", c.strong},
          {"stepped_up", c.stepped_up}};
}

std::string step_up_line(const StepUpCounts& c) {
  const double n = std::max(1, c.total());
  return fmt::format("{} attempts: {:.1f}% refused, {:.1f}% live on passive alone, {:.1f}% "
                     "stepped up to the challenge",
                     c.total(), 100 * c.refused / n, 100 * c.strong / n, 100 * c.stepped_up / n);
}

std::vector<std::string> split_list(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream in(s);
  std::string item;
  while (std::getline(in, item, ',')) {
    if (!item.empty()) {
      out.push_back(item);
    }
  }
  return out;
}

nlohmann::json rates_json(const eval::SpoofRates& r) {
  return {{"threshold", r.threshold},
          {"bona_fide", r.bona_fide},
          {"attacks", r.attacks},
          {"bpcer", r.bpcer},
          {"apcer", r.apcer},
          {"apcer_worst", r.apcer_worst},
          {"attacks_by_type", r.attacks_by_type}};
}

std::string rates_line(const eval::SpoofRates& r) {
  std::string types;
  for (const auto& [type, apcer] : r.apcer) {
    types += fmt::format(" {}:{:.2f}%", type, 100 * apcer);
  }
  return fmt::format("BPCER {:.2f}% ({} bona fide)  APCER worst {:.2f}% ({} attacks; per type{})",
                     100 * r.bpcer, r.bona_fide, 100 * r.apcer_worst, r.attacks, types);
}

// Scores of live and attack samples (frames or attempts), for rates and the trade-off curve.
struct HeldOut {
  std::vector<float> scores;
  std::vector<char> live;
  std::vector<std::string> types;
  std::vector<float> bona, attack;  // the scores split by kind, for det_curve

  void add(float score, bool is_live, const std::string& type) {
    scores.push_back(score);
    live.push_back(is_live ? 1 : 0);
    types.push_back(type);
    (is_live ? bona : attack).push_back(score);
  }
  eval::SpoofRates rates(float threshold) const {
    return eval::spoof_rates(scores, live, types, threshold);
  }
};

int run_eval_spoof(Context& ctx, const SpoofOptions& opts) {
  auto frames = eval::list_spoof_frames(opts.data);
  if (!frames) {
    return ctx.fail(frames.error());
  }
  if (frames->empty()) {
    return ctx.fail(Status(ErrorCode::kNotFound, fmt::format("no frames found in {}", opts.data)));
  }
  const auto train = split_list(opts.train_subjects);
  const auto in_train = [&train](const std::string& subject) {
    return std::find(train.begin(), train.end(), subject) != train.end();
  };
  auto rig = open_rig(ctx);
  if (!rig) {
    return ctx.fail(rig.error());
  }
  const bool tty = isatty(STDERR_FILENO) != 0 && !ctx.json;
  std::vector<float> scores(frames->size(), 0.f);
  std::vector<double> liveness_ms;
  std::size_t no_face = 0;
  for (std::size_t i = 0; i < frames->size(); ++i) {
    const std::string path = (std::filesystem::path(opts.data) / (*frames)[i].key).string();
    auto image = load_image_file(path);
    if (!image) {
      return ctx.fail(
          Status(image.error().code(), fmt::format("{}: {}", path, image.error().message())));
    }
    auto r = score_frame(*rig, *image);
    if (!r) {
      return ctx.fail(Status(r.error().code(), fmt::format("{}: {}", path, r.error().message())));
    }
    if (r->score) {
      scores[i] = r->score->live;
      liveness_ms.push_back(r->liveness_ms);
    } else {
      ++no_face;  // scored 0: a frame without a face never passes
    }
    if (tty && (i % 25 == 0 || i + 1 == frames->size())) {
      std::cerr << fmt::format("\r  scoring frames {}/{}", i + 1, frames->size()) << std::flush;
    }
  }
  if (tty) {
    std::cerr << "\n";
  }
  const auto attempts = eval::make_spoof_attempts(*frames, scores, opts.attempt_frames);

  // The threshold: from the bona fide attempts of the training subjects only.
  std::vector<float> train_live;
  for (const auto& a : attempts) {
    if (a.live && in_train(a.subject)) {
      train_live.push_back(a.score);
    }
  }
  auto threshold = eval::threshold_for_bpcer(train_live, opts.max_bpcer);
  if (!threshold) {
    return ctx.fail(Status(ErrorCode::kInvalidArgument,
                           fmt::format("no bona fide attempt of the training subjects ({}): {}",
                                       opts.train_subjects, threshold.error().message())));
  }

  // Reported on the held-out subjects, per frame and per attempt.
  HeldOut per_frame_set, per_attempt_set;
  std::set<std::string> test_subjects;
  for (std::size_t i = 0; i < frames->size(); ++i) {
    const auto& f = (*frames)[i];
    if (!in_train(f.subject)) {
      test_subjects.insert(f.subject);
      per_frame_set.add(scores[i], f.live, f.type);
    }
  }
  for (const auto& a : attempts) {
    if (!in_train(a.subject)) {
      per_attempt_set.add(a.score, a.live, a.type);
    }
  }
  if (per_frame_set.bona.empty() || per_frame_set.attack.empty()) {
    return ctx.fail(Status(ErrorCode::kInvalidArgument,
                           "the held-out subjects need both live and attack frames: choose "
                           "--train-subjects so that some subjects are left"));
  }
  const float thresholds[] = {*threshold, kDefaultLiveThreshold};
  nlohmann::json at = nlohmann::json::array();
  std::sort(liveness_ms.begin(), liveness_ms.end());
  const double median_ms = liveness_ms.empty() ? 0.0 : liveness_ms[liveness_ms.size() / 2];
  std::string test_list;
  for (const auto& s : test_subjects) {
    test_list += (test_list.empty() ? "" : ",") + s;
  }
  if (!ctx.json) {
    std::cout << fmt::format(
        "Spoof evaluation: {} frames ({} without a face, scored 0), {} attempts of up to {} "
        "frames.\nThreshold chosen on subjects {} (BPCER <= {:.1f}% of their live attempts); "
        "rates on subjects {}.\nPassive liveness: {:.2f} ms per frame (median, one core).\n",
        frames->size(), no_face, attempts.size(), opts.attempt_frames, opts.train_subjects,
        100 * opts.max_bpcer, test_list, median_ms);
  }
  for (std::size_t k = 0; k < 2; ++k) {
    const auto per_frame = per_frame_set.rates(thresholds[k]);
    const auto per_attempt = per_attempt_set.rates(thresholds[k]);
    at.push_back({{"threshold", thresholds[k]},
                  {"source", k == 0 ? "chosen on the training subjects" : "default"},
                  {"per_frame", rates_json(per_frame)},
                  {"per_attempt", rates_json(per_attempt)}});
    if (!ctx.json) {
      std::cout << fmt::format(
          "\nAt threshold {:.4f} ({}):\n  per frame:   {}\n  per attempt: {}\n", thresholds[k],
          k == 0 ? "chosen on the training subjects" : "the default", rates_line(per_frame),
          rates_line(per_attempt));
    }
  }
  // The adaptive policy's band at the default threshold: every subject, and the held-out ones.
  StepUpCounts band[2][2];  // [held-out][live]
  std::vector<float> live_means;
  for (const auto& a : attempts) {
    float lowest = 1.f;
    for (std::size_t k : a.frames) {
      lowest = std::min(lowest, scores[k]);
    }
    for (int held_out : {0, 1}) {
      if (held_out == 1 && in_train(a.subject)) {
        continue;
      }
      StepUpCounts& c = band[held_out][a.live ? 1 : 0];
      if (a.score < kDefaultLiveThreshold) {
        ++c.refused;
      } else if (a.score >= opts.strong && lowest >= kDefaultLiveThreshold) {
        ++c.strong;
      } else {
        ++c.stepped_up;
      }
    }
    if (a.live) {
      live_means.push_back(a.score);
    }
  }
  std::sort(live_means.begin(), live_means.end());
  const auto live_quantile = [&live_means](double q) {
    return live_means.empty()
               ? 0.f
               : live_means[std::min(live_means.size() - 1,
                                     static_cast<std::size_t>(q * live_means.size()))];
  };
  if (!ctx.json) {
    std::cout << fmt::format(
        "\nAdaptive policy (threshold {:.2f}; passive alone at a mean >= {:.2f} with every "
        "frame >= {:.2f}):\n  live, every subject:      {}\n  live, held-out subjects:  {}\n"
        "  attacks, every subject:   {}\n  attacks, held-out:        {}\n"
        "  live attempt means: 10% {:.3f}, 25% {:.3f}, median {:.3f}\n",
        kDefaultLiveThreshold, opts.strong, kDefaultLiveThreshold, step_up_line(band[0][1]),
        step_up_line(band[1][1]), step_up_line(band[0][0]), step_up_line(band[1][0]),
        live_quantile(0.1), live_quantile(0.25), live_quantile(0.5));
  }

  if (!opts.plot.empty()) {
    std::vector<eval::DetSeries> series;
    for (const auto& [name, set] :
         {std::pair{"per frame", &per_frame_set}, std::pair{"per attempt", &per_attempt_set}}) {
      auto curve = eval::det_curve(set->bona, set->attack);
      if (!curve) {
        return ctx.fail(curve.error());
      }
      series.push_back({name, std::move(*curve), {}});
    }
    eval::PlotOptions plot;
    plot.title = "Passive liveness: APCER against BPCER";
    plot.subtitle = fmt::format("held-out subjects {}: {} live and {} attack frames", test_list,
                                per_frame_set.bona.size(), per_frame_set.attack.size());
    plot.x_label = "Attacks accepted (APCER)";
    plot.y_label = "Live faces rejected (BPCER)";
    plot.min_fmr = 1e-3;
    if (Status s = eval::write_det_plot(opts.plot, series, plot); !s.ok()) {
      return ctx.fail(s);
    }
    if (!ctx.json) {
      std::cout << fmt::format("\nTrade-off plot written to {}\n", opts.plot);
    }
  }
  ctx.emit_json({{"ok", true},
                 {"frames", frames->size()},
                 {"frames_without_face", no_face},
                 {"attempts", attempts.size()},
                 {"attempt_frames", opts.attempt_frames},
                 {"train_subjects", train},
                 {"test_subjects", test_subjects},
                 {"max_bpcer", opts.max_bpcer},
                 {"liveness_ms_median", median_ms},
                 {"results", at},
                 {"adaptive",
                  {{"threshold", kDefaultLiveThreshold},
                   {"strong", opts.strong},
                   {"live_all", step_up_json(band[0][1])},
                   {"live_held_out", step_up_json(band[1][1])},
                   {"attacks_all", step_up_json(band[0][0])},
                   {"attacks_held_out", step_up_json(band[1][0])}}}});
  return kExitOk;
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

void register_spoof_eval(CLI::App& eval, Context& ctx, int& exit_code) {
  auto opts = std::make_shared<SpoofOptions>();
  auto* spoof = eval.add_subcommand(
      "spoof",
      "Passive liveness on a NUAA-style folder: APCER per attack type and BPCER, per "
      "frame and per attempt, on subjects held out from the threshold choice");
  spoof->add_option("--data", opts->data, "Folder holding ClientRaw/ and ImposterRaw/")->required();
  spoof
      ->add_option("--train-subjects", opts->train_subjects,
                   "Comma-separated subjects the threshold is chosen on (the rest are reported)")
      ->capture_default_str();
  spoof->add_option("--attempt-frames", opts->attempt_frames, "Frames per attempt")
      ->capture_default_str()
      ->check(CLI::Range(1, 1000));
  spoof
      ->add_option("--max-bpcer", opts->max_bpcer,
                   "Share of the training subjects' live attempts the threshold may reject")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 0.5));
  spoof
      ->add_option("--strong", opts->strong,
                   "Adaptive policy: mean score at which passive liveness decides alone")
      ->capture_default_str()
      ->check(CLI::Range(0.f, 1.f));
  spoof->add_option("--plot", opts->plot, "Write the APCER/BPCER trade-off (.svg or .png)");
  spoof->callback([&ctx, &exit_code, opts] { exit_code = run_eval_spoof(ctx, *opts); });
}

}  // namespace facelogin::cli
