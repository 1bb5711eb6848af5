// eval spoof: passive liveness on a NUAA-style folder, APCER per attack type and BPCER, per frame
// and per attempt, on subjects held out from the threshold choice; with the adaptive policy's
// step-up shares.

#include <fmt/format.h>

#include <algorithm>
#include <map>
#include <set>
#include <sstream>

#include "cli/context.h"
#include "facelogin/eval.h"
#include "facelogin/liveness.h"

namespace facelogin::cli {
namespace {

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
