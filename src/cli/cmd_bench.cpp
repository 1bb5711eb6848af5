// bench: per-stage latency of the pipeline on one core, and 1:N search over synthetic galleries.

#include <sched.h>

#include <algorithm>
#include <chrono>
#include <fstream>
#include <iostream>
#include <iterator>
#include <map>
#include <random>

#include <fmt/format.h>

#include "cli/context.h"
#include "facelogin/face_service.h"
#include "facelogin/gallery.h"
#include "facelogin/liveness.h"
#include "facelogin/matching.h"

namespace facelogin::cli {
namespace {

using Clock = std::chrono::steady_clock;

struct Summary {
  double median = 0;
  double p90 = 0;
};

Summary summarise(std::vector<double> v) {
  if (v.empty()) {
    return {};
  }
  std::sort(v.begin(), v.end());
  const auto at = [&](double q) {
    return v[std::min(v.size() - 1, static_cast<std::size_t>(q * static_cast<double>(v.size())))];
  };
  return {at(0.5), at(0.9)};
}

double ms(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double, std::milli>(b - a).count();
}

std::filesystem::path default_bench_image() {
  const char* env = std::getenv("FACELOGIN_DATA_DIR");
  const std::filesystem::path data = env != nullptr && *env != '\0'
                                         ? std::filesystem::path(env)
                                         : std::filesystem::path("../shared/data");
  return data / "nuaa/ClientRaw/0001/0001_00_00_01_0.jpg";
}

std::filesystem::path default_data_file(const char* relative) {
  return default_bench_image().parent_path().parent_path() / relative;
}

Result<Image> read_image_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return make_error(ErrorCode::kNotFound, fmt::format("{} not found", path.string()));
  }
  const std::vector<std::uint8_t> bytes((std::istreambuf_iterator<char>(in)),
                                        std::istreambuf_iterator<char>());
  return decode_image(bytes);
}

struct LoginTimes {
  std::vector<double> early, full;  // whole frame (decode to decision), ms
  int first_pass = 0;               // early-decision frames decided on the first pass
  float score = 0.f;                // of the full template
  bool match = false;
};

// Login frames as the server handles them: FaceService::verify_frame of `bytes` against a user
// of a throw-away SQLite store, with early decision and, interleaved as the baseline of the same
// run, without it. `users` maps a user name to the images it is enrolled from.
Result<std::map<std::string, LoginTimes>> time_logins(
    const Context& ctx, const std::shared_ptr<const Engine>& engine,
    const std::vector<std::uint8_t>& bytes,
    const std::vector<std::pair<std::string, std::vector<std::filesystem::path>>>& users,
    int iterations) {
  auto scratch = ScratchDir::make("facelogin-bench");
  if (!scratch) {
    return make_error(scratch.error());
  }
  SqliteStoreOptions store_options;
  store_options.key = std::string(32, '\x5a');  // throw-away store, removed on return
  auto store = open_sqlite_store((*scratch)->path() / "bench.db", store_options);
  if (!store) {
    return make_error(store.error());
  }
  std::vector<FaceService> services;
  services.reserve(2);
  for (const bool early : {true, false}) {
    auto worker = engine->make_worker();
    if (!worker) {
      return make_error(worker.error());
    }
    ServiceOptions options;
    options.analyze.enforce_quality = !ctx.no_quality;
    options.threshold_override = ctx.threshold;
    options.early_decision = early;
    services.emplace_back(engine, std::move(*worker), **store, options);
  }
  for (const auto& [name, paths] : users) {
    std::vector<LabeledImage> images;
    for (const auto& path : paths) {
      auto image = read_image_file(path);
      if (!image) {
        return make_error(image.error().code(),
                          fmt::format("{}: {}", path.string(), image.error().message()));
      }
      images.push_back({path.string(), std::move(*image)});
    }
    auto enrolled = services.front().enroll(name, images, false);
    if (!enrolled) {
      return make_error(enrolled.error());
    }
  }
  std::map<std::string, LoginTimes> out;
  const int warmup = 2;
  for (int i = 0; i < iterations + warmup; ++i) {
    for (const auto& [name, paths] : users) {
      LoginTimes& t = out[name];
      for (std::size_t s = 0; s < services.size(); ++s) {
        const auto t0 = Clock::now();
        auto image = decode_image(bytes);
        if (!image) {
          return make_error(image.error());
        }
        auto r = services[s].verify_frame(name, {"bench", std::move(*image)});
        const double elapsed = ms(t0, Clock::now());
        if (!r) {
          return make_error(r.error());
        }
        if (r->image.outcome != FrameOutcome::kOk) {
          return make_error(ErrorCode::kPoorQuality,
                            fmt::format("the bench image is not usable for a login: {}",
                                        r->image.message));
        }
        if (i < warmup) {
          continue;
        }
        if (s == 0) {
          t.early.push_back(elapsed);
          t.first_pass += r->image.first_pass ? 1 : 0;
        } else {
          t.full.push_back(elapsed);
          t.score = r->decision.score;
          t.match = r->decision.match;
        }
      }
    }
  }
  return out;
}

struct BenchOptions {
  std::string image;
  std::vector<std::string> enrolled;  // other images of the person in `image`
  std::string other;     // an image of someone else
  int iterations = 50;
  std::vector<int> gallery_sizes{1000, 10000, 100000};
};

int run_bench(Context& ctx, const BenchOptions& opts) {
  // One core: the process is pinned to the CPU it starts on and OpenCV uses one thread, so the
  // figures are per-core costs whatever else the machine runs.
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(static_cast<unsigned>(std::max(0, sched_getcpu())), &set);
  sched_setaffinity(0, sizeof set, &set);

  const std::filesystem::path path =
      opts.image.empty() ? default_bench_image() : std::filesystem::path(opts.image);
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return ctx.fail(Status(ErrorCode::kNotFound,
                           fmt::format("bench image {} not found: pass --image FILE (a 640x480 "
                                       "JPEG with one face)",
                                       path.string())));
  }
  const std::vector<std::uint8_t> bytes((std::istreambuf_iterator<char>(in)),
                                        std::istreambuf_iterator<char>());
  auto engine = ctx.open_engine(1);
  if (!engine) {
    return ctx.fail(engine.error());
  }
  auto worker = (*engine)->make_worker();
  if (!worker) {
    return ctx.fail(worker.error());
  }
  AnalyzeOptions analyze;
  analyze.enforce_quality = false;
  analyze.refuse_several_faces = false;
  // Passive liveness, when its models are there: timed on the same face, outside the total
  // (the total is the recognition pipeline issue 2 sets a target for).
  std::unique_ptr<LivenessScorer> liveness_scorer;
  if (auto models = LivenessModels::load(ctx.models)) {
    if (auto scorer = (*models)->make_scorer()) {
      liveness_scorer = std::move(*scorer);
    }
  }

  std::vector<double> decode, detect, quality, align, embed, match, total, liveness;
  std::optional<FaceTemplate> reference;
  int width = 0, height = 0;
  // The first runs warm caches and OpenCV's lazy initialisation; they are not counted.
  const int warmup = 3;
  for (int i = 0; i < opts.iterations + warmup; ++i) {
    const auto t0 = Clock::now();
    auto image = decode_image(bytes);
    const auto t1 = Clock::now();
    if (!image) {
      return ctx.fail(image.error());
    }
    width = image->width;
    height = image->height;
    auto analysis = (*worker)->analyze(*image, analyze);
    if (!analysis) {
      return ctx.fail(analysis.error());
    }
    if (!analysis->face) {
      return ctx.fail(Status(ErrorCode::kNoFace,
                             fmt::format("{}: no face found; bench needs an image with a face",
                                         path.string())));
    }
    if (!reference) {
      reference = analysis->face;
    }
    const auto t2 = Clock::now();
    auto s = similarity(*analysis->face, *reference);
    const auto t3 = Clock::now();
    if (!s) {
      return ctx.fail(s.error());
    }
    std::optional<double> liveness_ms;
    if (liveness_scorer && analysis->subject) {
      const auto l0 = Clock::now();
      auto live = liveness_scorer->score(*image, analysis->faces[*analysis->subject].box);
      liveness_ms = ms(l0, Clock::now());
      if (!live) {
        return ctx.fail(live.error());
      }
    }
    if (i < warmup) {
      continue;
    }
    if (liveness_ms) {
      liveness.push_back(*liveness_ms);
    }
    decode.push_back(ms(t0, t1));
    detect.push_back(analysis->timings.detect_ms);
    quality.push_back(analysis->timings.quality_ms);
    align.push_back(analysis->timings.align_ms);
    embed.push_back(analysis->timings.embed_ms);
    match.push_back(ms(t2, t3));
    total.push_back(ms(t0, t1) + ms(t1, t2) + ms(t2, t3));
  }

  nlohmann::json stages = nlohmann::json::array();
  const std::vector<std::pair<std::string, std::vector<double>*>> rows = {
      {"decode", &decode}, {"detect", &detect}, {"quality", &quality}, {"align", &align},
      {"embed", &embed},   {"match", &match},   {"total", &total}};
  if (!ctx.json) {
    std::cout << fmt::format("Pipeline on {} ({}x{}), recogniser {}, one core, {} runs:\n",
                             path.string(), width, height, (*engine)->recognizer().id,
                             opts.iterations);
    std::cout << fmt::format("  {:<8} {:>10} {:>10}\n", "stage", "median ms", "p90 ms");
  }
  for (const auto& [name, values] : rows) {
    const Summary s = summarise(*values);
    stages.push_back({{"stage", name}, {"median_ms", s.median}, {"p90_ms", s.p90}});
    if (!ctx.json) {
      std::cout << fmt::format("  {:<8} {:>10.2f} {:>10.2f}\n", name, s.median, s.p90);
    }
  }
  if (!liveness.empty()) {
    const Summary s = summarise(liveness);
    stages.push_back({{"stage", "liveness"}, {"median_ms", s.median}, {"p90_ms", s.p90}});
    if (!ctx.json) {
      std::cout << fmt::format("  {:<8} {:>10.2f} {:>10.2f}   (passive liveness, not in total)\n",
                               "liveness", s.median, s.p90);
    }
  } else if (!ctx.json) {
    std::cout << "  (passive liveness not timed: its models are not in the model directory)\n";
  }

  // Login frames against a user enrolled from another image of the same person, and against
  // someone else: what a login costs, with early decision and without (docs/models.md).
  nlohmann::json logins = nlohmann::json::array();
  {
    std::vector<std::pair<std::string, std::vector<std::filesystem::path>>> users;
    const auto add_user = [&](const char* name, const std::vector<std::string>& given,
                              std::vector<const char*> fallback) {
      std::vector<std::filesystem::path> paths(given.begin(), given.end());
      if (paths.empty()) {
        for (const char* f : fallback) {
          if (std::filesystem::exists(default_data_file(f))) {
            paths.push_back(default_data_file(f));
          }
        }
      }
      if (!paths.empty()) {
        users.emplace_back(name, std::move(paths));
      }
    };
    // As an enrolment would: five frames of another session of the default bench image's
    // person (with --image, only --enrolled says who that is).
    if (opts.image.empty() || !opts.enrolled.empty()) {
      add_user("same-person", opts.enrolled,
               {"0001/0001_00_00_02_9.jpg", "0001/0001_00_00_02_24.jpg",
                "0001/0001_00_00_02_37.jpg", "0001/0001_00_00_02_57.jpg",
                "0001/0001_00_00_02_71.jpg"});
    } else if (!ctx.json) {
      std::cout << "(the same person's login not timed: pass --enrolled with other images of the "
                   "person in --image)\n";
    }
    add_user("other-person", opts.other.empty() ? std::vector<std::string>{} : std::vector{opts.other},
             {"0002/0002_01_00_01_14.jpg"});
    if (users.empty()) {
      if (!ctx.json) {
        std::cout << "Login frames not timed: pass --enrolled and --other (images to enrol)\n";
      }
    } else {
      auto times = time_logins(ctx, *engine, bytes, users, opts.iterations);
      if (!times) {
        return ctx.fail(times.error());
      }
      const float margin = (*engine)->recognizer().first_pass_margin;
      if (!ctx.json) {
        std::cout << fmt::format(
            "Login frame (decode to decision) against an enrolled user, {} runs, early "
            "decision margin {}:\n",
            opts.iterations, margin);
        std::cout << fmt::format("  {:<13} {:>6} {:>6}  {:>15} {:>15}  {}\n", "enrolled", "score",
                                 "match", "early median ms", "full median ms",
                                 "decided on first pass");
      }
      for (const auto& [name, t] : *times) {
        const Summary e = summarise(t.early);
        const Summary f = summarise(t.full);
        logins.push_back({{"enrolled", name},
                          {"score", t.score},
                          {"match", t.match},
                          {"early_median_ms", e.median},
                          {"early_p90_ms", e.p90},
                          {"full_median_ms", f.median},
                          {"full_p90_ms", f.p90},
                          {"first_pass_decisions", t.first_pass},
                          {"runs", t.early.size()}});
        if (!ctx.json) {
          std::cout << fmt::format("  {:<13} {:>6.3f} {:>6}  {:>15.2f} {:>15.2f}  {} of {}\n",
                                   name, t.score, t.match ? "yes" : "no", e.median, f.median,
                                   t.first_pass, t.early.size());
        }
      }
    }
  }

  // 1:N over random unit vectors of the recogniser's size: the cost of search, not accuracy.
  nlohmann::json searches = nlohmann::json::array();
  std::mt19937 rng(12345);
  std::normal_distribution<float> normal;
  const std::size_t dim = reference->embedding.size();
  if (!ctx.json) {
    std::cout << fmt::format("1:N search, top-1, {}-d templates:\n", dim);
  }
  for (int n : opts.gallery_sizes) {
    std::vector<StoredTemplate> gallery(static_cast<std::size_t>(n));
    for (int i = 0; i < n; ++i) {
      auto& t = gallery[static_cast<std::size_t>(i)];
      t.user_id = i;
      t.face.model_id = reference->model_id;
      t.face.embedding.resize(dim);
      double norm = 0;
      for (float& v : t.face.embedding) {
        v = normal(rng);
        norm += static_cast<double>(v) * v;
      }
      for (float& v : t.face.embedding) {
        v = static_cast<float>(v / std::sqrt(norm));
      }
    }
    // The in-memory gallery the server searches (include/facelogin/gallery.h).
    auto in_memory = Gallery::build(gallery, reference->model_id);
    if (!in_memory) {
      return ctx.fail(in_memory.error());
    }
    gallery.clear();
    std::vector<double> times;
    const int reps = std::max(3, std::min(20, 2'000'000 / std::max(n, 1)));
    for (int r = 0; r < reps; ++r) {
      const auto t0 = Clock::now();
      auto top = in_memory->search(*reference, 1);
      times.push_back(ms(t0, Clock::now()));
      if (top.empty()) {
        return ctx.fail(Status(ErrorCode::kInternal, "search returned nothing"));
      }
    }
    const Summary s = summarise(times);
    searches.push_back({{"templates", n},
                        {"median_ms", s.median},
                        {"p90_ms", s.p90},
                        {"kernel", std::string(in_memory->kernel())},
                        {"bytes_per_template",
                         static_cast<double>(in_memory->bytes()) / std::max(n, 1)}});
    if (!ctx.json) {
      std::cout << fmt::format("  N={:<8} median {:>9.3f} ms   p90 {:>9.3f} ms\n", n, s.median,
                               s.p90);
    }
  }
  ctx.emit_json({{"ok", true},
                 {"image", path.string()},
                 {"width", width},
                 {"height", height},
                 {"recognizer", (*engine)->recognizer().id},
                 {"iterations", opts.iterations},
                 {"stages", stages},
                 {"logins", logins},
                 {"search", searches}});
  return kExitOk;
}

}  // namespace

void register_bench_command(CLI::App& app, Context& ctx, int& exit_code) {
  auto opts = std::make_shared<BenchOptions>();
  auto* bench = app.add_subcommand("bench", "Per-stage latency on one core, and 1:N search cost");
  bench->add_option("--image", opts->image,
                    "640x480 JPEG with one face (default: a NUAA frame from ../shared/data)");
  bench->add_option("--enrolled", opts->enrolled,
                    "Other images of the person in --image, enrolled to time login frames "
                    "(default: five NUAA frames of that person from another session)");
  bench->add_option("--other", opts->other,
                    "An image of someone else, enrolled to time a rejected login frame "
                    "(default: a NUAA frame of another person)");
  bench->add_option("--iterations", opts->iterations, "Timed runs")->check(CLI::Range(1, 100000));
  bench->add_option("--gallery", opts->gallery_sizes, "Gallery sizes for 1:N search")
      ->delimiter(',')
      ->check(CLI::Range(1, 10'000'000));
  bench->callback([&ctx, &exit_code, opts] { exit_code = run_bench(ctx, *opts); });
}

}  // namespace facelogin::cli
