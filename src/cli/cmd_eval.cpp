// eval lfw: the LFW View-2 protocol on any pairs file, plus all-pairs FMR/FNMR, a DET plot and
// an embedding cache. eval gallery: 1:N identification on the same images, exact in fp32 and
// fp16 and through the approximate index, next to each other. eval calibrate: every pair of a
// deployment's own people. eval deployment: a folder of people enrolled and claimed as the
// product would (the simulation itself is eval::simulate_deployment).

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <functional>
#include <iostream>
#include <iterator>
#include <mutex>
#include <thread>

#include <fmt/format.h>

#include "cli/context.h"
#include "facelogin/eval.h"
#include "facelogin/gallery.h"

namespace facelogin::cli {
namespace {

using Clock = std::chrono::steady_clock;

struct EvalOptions {
  std::string pairs;
  std::string images;
  std::vector<std::string> recognizers;
  std::string cache_dir;
  std::string plot;
  int threads = 0;
  bool no_cache = false;
  bool all_images = false;  // FMR/FNMR over every image of --images, not only the pairs'
};

// The models a recogniser runs, sorted.
std::vector<std::string> model_ids(const RecognizerSpec& spec) {
  std::vector<std::string> ids;
  for (const auto& c : spec.components) {
    ids.push_back(c.model_id);
  }
  std::sort(ids.begin(), ids.end());
  ids.erase(std::unique(ids.begin(), ids.end()), ids.end());
  return ids;
}

// --threads, or every core.
int eval_threads(const EvalOptions& opts) {
  return opts.threads > 0 ? opts.threads
                          : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
}

// --recognizer, or the default. Errors: kInvalidArgument for an unknown id.
Result<const RecognizerSpec*> chosen_recognizer(const Context& ctx) {
  const std::string id =
      ctx.recognizer.empty() ? std::string(default_recognizer_id()) : ctx.recognizer;
  const RecognizerSpec* spec = find_recognizer(id);
  if (spec == nullptr) {
    return make_error(ErrorCode::kInvalidArgument,
                      fmt::format("unknown recogniser '{}': see `facelogin models list`", id));
  }
  return spec;
}

// The views cache holds, per image, both views of every model of the carrier recogniser, laid
// out model by model (sorted ids), original then mirrored. Its fingerprint covers everything
// else that changes an embedding: the model files and their preprocessing (ModelSpec) and the
// pipeline (detector, subject choice, alignment method); bump kPipelineVersion when the
// pipeline changes behaviour.
struct ViewsLayout {
  std::vector<std::pair<std::string, std::size_t>> models;  // id, embedding size
  std::size_t dim = 0;
  std::string cache_id;
  std::string fingerprint;
};

ViewsLayout views_layout(const RecognizerSpec& carrier, const std::string& detector_id) {
  constexpr const char* kPipelineVersion = "pipeline-1:det320:central:umeyama5";
  ViewsLayout layout;
  layout.cache_id = "views-" + detector_id;
  layout.fingerprint = fmt::format("{}:{}", kPipelineVersion, detector_id);
  for (const auto& id : model_ids(carrier)) {
    const ModelSpec* m = find_model(id);
    const auto size = static_cast<std::size_t>(m->embedding_size);
    layout.models.emplace_back(id, size);
    layout.dim += 2 * size;
    layout.cache_id += "-" + id;
    // The file and how a crop is made of it: a change of colour order, normalisation, input
    // size or alignment template changes every embedding as surely as other weights do.
    layout.fingerprint += fmt::format("|{}:{}:{}x{}:{}:{}/{}/{}*{}", id, m->sha256, m->input_width,
                                      m->input_height, m->color == ColorOrder::kRgb ? "rgb" : "bgr",
                                      m->mean[0], m->mean[1], m->mean[2], m->scale);
    for (const auto& p : m->alignment) {
      layout.fingerprint += fmt::format(":{},{}", p.x, p.y);
    }
  }
  return layout;
}

std::vector<float> flatten(const ViewsLayout& layout, const FaceViews& views) {
  std::vector<float> out;
  out.reserve(layout.dim);
  for (const auto& [id, size] : layout.models) {
    const auto& v = views.at(id);
    out.insert(out.end(), v.original.begin(), v.original.end());
    out.insert(out.end(), v.mirrored.begin(), v.mirrored.end());
  }
  return out;
}

FaceViews unflatten(const ViewsLayout& layout, const std::vector<float>& flat) {
  FaceViews views;
  std::size_t at = 0;
  for (const auto& [id, size] : layout.models) {
    auto& v = views[id];
    const auto first = flat.begin() + static_cast<std::ptrdiff_t>(at);
    v.original.assign(first, first + static_cast<std::ptrdiff_t>(size));
    v.mirrored.assign(first + static_cast<std::ptrdiff_t>(size),
                      first + static_cast<std::ptrdiff_t>(2 * size));
    at += 2 * size;
  }
  return views;
}

// What one worker makes of one image for a cache entry (the image's path given).
using MakeEntry = std::function<Result<std::optional<std::vector<float>>>(Worker&,
                                                                          const std::filesystem::path&)>;

// Fills the cache entry of every key missing from it with `threads` workers; progress on stderr
// (a live line on a terminal, a line per 1,000 images otherwise) unless `quiet`. The cache is
// saved every 2,000 new entries and at the end, so that an interrupted run resumes.
Status fill_cache(const Engine& engine, const std::filesystem::path& images_dir,
                  const std::vector<std::string>& keys, eval::EmbeddingCache& cache, int threads,
                  const std::filesystem::path& cache_path, bool quiet, const MakeEntry& make_entry) {
  std::vector<std::string> todo;
  for (const auto& k : keys) {
    if (!cache.entries.contains(k)) {
      todo.push_back(k);
    }
  }
  if (todo.empty()) {
    return Status::Ok();
  }
  const bool tty = isatty(STDERR_FILENO) != 0 && !quiet;
  std::atomic<std::size_t> next{0};
  std::atomic<std::size_t> done{0};
  std::mutex mu;  // guards cache and first_error
  Status first_error;
  const auto start = Clock::now();
  const auto record_error = [&](Status s) {
    std::lock_guard lock(mu);
    if (first_error.ok()) {
      first_error = std::move(s);
    }
  };

  auto work = [&] {
    auto worker = engine.make_worker();
    if (!worker) {
      record_error(worker.error());
      return;
    }
    for (std::size_t i = next++; i < todo.size(); i = next++) {
      auto entry = make_entry(**worker, images_dir / todo[i]);
      if (!entry) {
        record_error(entry.error());
        return;
      }
      const std::size_t n = ++done;
      std::lock_guard lock(mu);
      cache.entries[todo[i]] = std::move(*entry);
      if (!cache_path.empty() && n % 2000 == 0) {
        (void)eval::save_embedding_cache(cache_path, cache);  // a checkpoint; the end reports
      }
      if ((!quiet && (tty ? n % 25 == 0 : n % 1000 == 0)) || (tty && n == todo.size())) {
        const double secs = std::chrono::duration<double>(Clock::now() - start).count();
        const double rate = static_cast<double>(n) / std::max(secs, 1e-3);
        std::cerr << fmt::format("{}  embedding: {}/{} images ({:.1f}/s, {:.0f} s left){}",
                                 tty ? "\r" : "", n, todo.size(), rate,
                                 static_cast<double>(todo.size() - n) / std::max(rate, 1e-3),
                                 tty ? "   " : "\n")
                  << std::flush;
      }
    }
  };
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) {
    pool.emplace_back(work);
  }
  for (auto& t : pool) {
    t.join();
  }
  if (tty) {
    std::cerr << "\n";
  }
  if (!cache_path.empty()) {
    // Saved even after an error, so that an interrupted evaluation resumes where it stopped.
    if (Status s = eval::save_embedding_cache(cache_path, cache); !s.ok() && first_error.ok()) {
      return s;
    }
  }
  return first_error;
}

// Computes the views of every key missing from the cache, as published LFW figures are made:
// no quality gate, other faces allowed, the central face.
Status embed_missing(const Engine& engine, const ViewsLayout& layout,
                     const std::filesystem::path& images_dir, const std::vector<std::string>& keys,
                     eval::EmbeddingCache& cache, int threads,
                     const std::filesystem::path& cache_path, bool quiet) {
  AnalyzeOptions analyze;
  analyze.embed = false;                 // views are computed below
  analyze.enforce_quality = false;       // LFW is scored as it is, like every published figure
  analyze.refuse_several_faces = false;  // LFW crops often show other people
  analyze.subject = SubjectPolicy::kCentral;
  const MakeEntry make_entry =
      [&](Worker& worker,
          const std::filesystem::path& path) -> Result<std::optional<std::vector<float>>> {
    std::optional<std::vector<float>> entry;
    auto image = load_image_file(path);
    if (!image) {
      return make_error(image.error().code(),
                        fmt::format("{}: {}", path.string(), image.error().message()));
    }
    auto analysis = worker.analyze(*image, analyze);
    if (!analysis) {
      return make_error(analysis.error());
    }
    if (analysis->subject) {
      auto views = worker.embed_views(*image, analysis->faces[*analysis->subject]);
      if (!views) {
        return make_error(views.error());
      }
      entry = flatten(layout, *views);
    }
    return entry;
  };
  return fill_cache(engine, images_dir, keys, cache, threads, cache_path, quiet, make_entry);
}

struct RecognizerResult {
  std::string id;
  eval::CrossValidation cv;
  double auc = 0;
  std::size_t images = 0, no_face = 0;
  std::vector<eval::OperatingPoint> points;
  std::vector<eval::CurvePoint> curve;
  std::optional<eval::FirstPassCheck> first_pass;  // recognisers with an early decision
};

// Views of every key by the carrier recogniser's models, from the cache or computed.
Result<eval::EmbeddingCache> compute_views(Context& ctx, const EvalOptions& opts,
                                           const std::vector<std::string>& keys,
                                           const std::string& carrier_id, int threads,
                                           ViewsLayout* layout) {
  Context local = ctx;
  local.recognizer = carrier_id;
  auto engine = local.open_engine(1);
  if (!engine) {
    return make_error(engine.error());
  }
  *layout = views_layout((*engine)->recognizer(), (*engine)->options().detector_id);
  std::filesystem::path cache_path;
  eval::EmbeddingCache cache;
  cache.recognizer_id = layout->cache_id;
  cache.fingerprint = layout->fingerprint;
  cache.dim = layout->dim;
  if (!opts.no_cache) {
    std::error_code ec;
    std::filesystem::create_directories(opts.cache_dir, ec);
    cache_path = std::filesystem::path(opts.cache_dir) / (layout->cache_id + ".embcache");
    if (auto loaded =
            eval::load_embedding_cache(cache_path, layout->cache_id, layout->fingerprint)) {
      cache = std::move(*loaded);
    } else if (loaded.error().code() != ErrorCode::kNotFound && !ctx.json) {
      std::cerr << fmt::format("  ignoring cache {}: {}\n", cache_path.string(),
                               loaded.error().message());
    }
  }
  if (Status s =
          embed_missing(**engine, *layout, opts.images, keys, cache, threads, cache_path, ctx.json);
      !s.ok()) {
    return make_error(s);
  }
  return cache;
}

Result<RecognizerResult> evaluate(const eval::PairsProtocol& protocol,
                                  const std::vector<std::string>& keys, const RecognizerSpec& spec,
                                  const ViewsLayout& layout, const eval::EmbeddingCache& views,
                                  int threads) {
  eval::EmbeddingCache cache;
  cache.recognizer_id = spec.id;
  cache.dim = static_cast<std::size_t>(recognizer_embedding_size(spec));
  for (const auto& [key, flat] : views.entries) {
    if (!flat) {
      cache.entries[key] = std::nullopt;
      continue;
    }
    auto tmpl = compose_template(spec, unflatten(layout, *flat));
    if (!tmpl) {
      return make_error(tmpl.error());
    }
    cache.entries[key] = std::move(tmpl->embedding);
  }

  RecognizerResult r;
  r.id = spec.id;
  auto scores = eval::score_pairs(protocol.pairs, cache);
  if (!scores) {
    return make_error(scores.error());
  }
  auto cv = eval::cross_validated_accuracy(protocol.pairs, *scores);
  if (!cv) {
    return make_error(cv.error());
  }
  r.cv = *cv;
  std::vector<float> genuine_pairs, impostor_pairs;
  for (std::size_t i = 0; i < protocol.pairs.size(); ++i) {
    (protocol.pairs[i].same ? genuine_pairs : impostor_pairs).push_back((*scores)[i]);
  }
  auto auc = eval::roc_auc(genuine_pairs, impostor_pairs);
  if (!auc) {
    return make_error(auc.error());
  }
  r.auc = *auc;

  // All cross-identity and same-identity pairs of the images involved.
  const bool early = spec.first_pass_margin > 0.f;
  std::vector<float> matrix, first_pass;
  std::vector<int> identities;
  std::map<std::string, int, std::less<>> ids;
  for (const auto& key : keys) {
    const auto& entry = cache.entries.at(key);
    ++r.images;
    if (!entry) {
      ++r.no_face;
      identities.push_back(-1);
      matrix.insert(matrix.end(), cache.dim, 0.f);
      if (early) {
        first_pass.insert(first_pass.end(), cache.dim, 0.f);
      }
      continue;
    }
    const std::string person(eval::key_identity(key));
    auto [it, inserted] = ids.try_emplace(person, static_cast<int>(ids.size()));
    identities.push_back(it->second);
    matrix.insert(matrix.end(), entry->begin(), entry->end());
    if (early) {
      auto quick = compose_first_pass_template(spec, unflatten(layout, *views.entries.at(key)));
      if (!quick) {
        return make_error(quick.error());
      }
      first_pass.insert(first_pass.end(), quick->embedding.begin(), quick->embedding.end());
    }
  }
  if (early) {
    auto check = eval::check_first_pass(first_pass, matrix, cache.dim, identities,
                                        spec.cosine_threshold(), spec.first_pass_margin, threads);
    if (!check) {
      return make_error(check.error());
    }
    r.first_pass = *check;
  }
  auto all = eval::all_pairs_scores(matrix, cache.dim, identities, threads);
  if (!all) {
    return make_error(all.error());
  }
  const std::vector<double> targets{1e-3, 1e-4, 1e-5};
  auto points = eval::operating_points(all->genuine, all->impostor, targets);
  if (!points) {
    return make_error(points.error());
  }
  r.points = *points;
  auto curve = eval::det_curve(all->genuine, all->impostor);
  if (!curve) {
    return make_error(curve.error());
  }
  r.curve = std::move(*curve);
  return r;
}

int run_eval_lfw(Context& ctx, const EvalOptions& opts) {
  auto protocol = eval::read_pairs_file(opts.pairs);
  if (!protocol) {
    return ctx.fail(protocol.error());
  }
  if (!std::filesystem::is_directory(opts.images)) {
    return ctx.fail(
        Status(ErrorCode::kNotFound, fmt::format("images directory {} not found", opts.images)));
  }
  auto keys = eval::unique_image_keys(protocol->pairs);
  if (opts.all_images) {
    auto all = eval::list_lfw_images(opts.images);
    if (!all) {
      return ctx.fail(all.error());
    }
    std::vector<std::string> merged;
    std::sort(keys.begin(), keys.end());
    std::set_union(keys.begin(), keys.end(), all->begin(), all->end(), std::back_inserter(merged));
    keys = std::move(merged);
  }
  const int threads = eval_threads(opts);
  std::vector<std::string> recognizers = opts.recognizers;
  if (recognizers.empty()) {
    recognizers.push_back(ctx.recognizer.empty() ? std::string(default_recognizer_id())
                                                 : ctx.recognizer);
  }
  if (!ctx.json) {
    std::cout << fmt::format("LFW: {} folds x {} pairs, {} images, {} thread(s)\n", protocol->folds,
                             2 * protocol->pairs_per_fold, keys.size(), threads);
  }
  // Recognisers built from the same models share one inference pass: each is evaluated from
  // the views of a "carrier" whose models include its own.
  std::vector<const RecognizerSpec*> specs;
  for (const auto& id : recognizers) {
    const RecognizerSpec* spec = find_recognizer(id);
    if (spec == nullptr) {
      return ctx.fail(
          Status(ErrorCode::kInvalidArgument,
                 fmt::format("unknown recogniser '{}': see `facelogin models list`", id)));
    }
    specs.push_back(spec);
  }
  std::vector<const RecognizerSpec*> carriers = specs;
  std::stable_sort(carriers.begin(), carriers.end(), [](const auto* a, const auto* b) {
    return model_ids(*a).size() > model_ids(*b).size();
  });
  const auto covers = [](const RecognizerSpec& carrier, const RecognizerSpec& spec) {
    const auto have = model_ids(carrier);
    const auto need = model_ids(spec);
    return std::includes(have.begin(), have.end(), need.begin(), need.end());
  };
  std::vector<std::optional<RecognizerResult>> results(specs.size());
  for (const RecognizerSpec* carrier : carriers) {
    bool needed = false;
    for (std::size_t i = 0; i < specs.size(); ++i) {
      needed |= !results[i] && covers(*carrier, *specs[i]);
    }
    if (!needed) {
      continue;
    }
    ViewsLayout layout;
    auto views = compute_views(ctx, opts, keys, carrier->id, threads, &layout);
    if (!views) {
      return ctx.fail(views.error());
    }
    for (std::size_t i = 0; i < specs.size(); ++i) {
      if (results[i] || !covers(*carrier, *specs[i])) {
        continue;
      }
      auto r = evaluate(*protocol, keys, *specs[i], layout, *views, threads);
      if (!r) {
        return ctx.fail(r.error());
      }
      results[i] = std::move(*r);
    }
  }

  nlohmann::json out = nlohmann::json::array();
  std::size_t id_width = std::string_view("recogniser").size();
  for (const auto& id : recognizers) {
    id_width = std::max(id_width, id.size());
  }
  if (!ctx.json) {
    std::cout << fmt::format("\n{:<{}} {:>16} {:>8} {:>20} {:>20} {:>20}\n", "recogniser", id_width,
                             "accuracy", "AUC", "FMR 1e-3: FNMR (thr)", "FMR 1e-4: FNMR (thr)",
                             "FMR 1e-5: FNMR (thr)");
  }
  for (const auto& result : results) {
    const RecognizerResult& r = *result;
    nlohmann::json ops = nlohmann::json::array();
    std::string cells;
    for (const auto& p : r.points) {
      ops.push_back({{"target_fmr", p.target_fmr},
                     {"threshold", p.threshold},
                     {"fmr", p.fmr},
                     {"fnmr", p.fnmr},
                     {"false_matches", p.false_matches},
                     {"impostor_pairs", p.impostor_count},
                     {"genuine_pairs", p.genuine_count},
                     {"resolvable", p.resolvable}});
      cells += fmt::format(" {:>11.2f}% ({:.3f})", 100 * p.fnmr, p.threshold);
    }
    nlohmann::json first_pass = nullptr;
    if (r.first_pass) {
      const auto& f = *r.first_pass;
      const RecognizerSpec* spec = find_recognizer(r.id);
      first_pass = {{"margin", spec->first_pass_margin},
                    {"threshold", spec->cosine_threshold()},
                    {"max_difference", f.max_difference},
                    {"genuine_pairs", f.genuine},
                    {"impostor_pairs", f.impostor},
                    {"genuine_second_pass", f.genuine_second_pass},
                    {"impostor_second_pass", f.impostor_second_pass},
                    {"changed_decisions", f.changed_decisions}};
    }
    out.push_back({{"recognizer", r.id},
                   {"first_pass", first_pass},
                   {"accuracy_mean", r.cv.mean_accuracy},
                   {"accuracy_std", r.cv.std_accuracy},
                   {"fold_accuracy", r.cv.fold_accuracy},
                   {"fold_threshold", r.cv.fold_threshold},
                   {"auc", r.auc},
                   {"images", r.images},
                   {"images_without_face", r.no_face},
                   {"operating_points", ops}});
    if (!ctx.json) {
      std::cout << fmt::format("{:<{}} {:>7.2f}% ± {:.2f} {:>8.5f}{}\n", r.id, id_width,
                               100 * r.cv.mean_accuracy, 100 * r.cv.std_accuracy, r.auc, cells);
    }
  }
  if (!ctx.json && !results.empty()) {
    const auto& p = results.front()->points;
    std::cout << fmt::format(
        "\nAccuracy: mean ± std over {} folds, threshold chosen on the other folds. FMR/FNMR: all "
        "{} cross-identity and {} same-identity pairs of the {} images ({} without a face, "
        "scored as non-matches).\n",
        protocol->folds, p.empty() ? 0 : p[0].impostor_count, p.empty() ? 0 : p[0].genuine_count,
        results.front()->images, results.front()->no_face);
  }
  if (!ctx.json && std::any_of(results.begin(), results.end(),
                               [](const auto& r) { return r->first_pass.has_value(); })) {
    std::cout << "\nEarly decision: the first-pass template of one image (no mirror image) "
                 "against the full template of the other, every ordered pair, at the calibrated "
                 "threshold:\n";
    for (const auto& result : results) {
      if (!result->first_pass) {
        continue;
      }
      const auto& f = *result->first_pass;
      const RecognizerSpec* spec = find_recognizer(result->id);
      const auto share = [](std::size_t n, std::size_t of) {
        return of == 0 ? 0.0 : 100.0 * static_cast<double>(n) / static_cast<double>(of);
      };
      std::cout << fmt::format(
          "{:<{}} largest difference {:.4f}; margin {:.3f}: second pass for {:.2f}% of genuine "
          "and {:.3f}% of impostor pairs; {} decision(s) changed\n",
          result->id, id_width, f.max_difference, spec->first_pass_margin,
          share(f.genuine_second_pass, f.genuine), share(f.impostor_second_pass, f.impostor),
          f.changed_decisions);
    }
  }
  if (!opts.plot.empty()) {
    std::vector<eval::DetSeries> series;
    for (const auto& r : results) {
      series.push_back({r->id, r->curve, r->points});
    }
    eval::PlotOptions plot;
    plot.title = "LFW: DET over all image pairs";
    if (!results.empty() && !results.front()->points.empty()) {
      const auto& p = results.front()->points.front();
      plot.subtitle = fmt::format("{} images: {} cross-identity, {} same-identity pairs",
                                  results.front()->images, p.impostor_count, p.genuine_count);
    }
    if (Status s = eval::write_det_plot(opts.plot, series, plot); !s.ok()) {
      return ctx.fail(s);
    }
    if (!ctx.json) {
      std::cout << fmt::format("DET plot written to {}\n", opts.plot);
    }
  }
  ctx.emit_json({{"ok", true},
                 {"folds", protocol->folds},
                 {"pairs", protocol->pairs.size()},
                 {"results", out}});
  return kExitOk;
}

// --- eval gallery ------------------------------------------------------------------------

// One way of searching, measured against exact fp32 search (the reference).
struct SearchVariant {
  std::string name;
  std::function<std::vector<Candidate>(const FaceTemplate&, std::size_t)> search;
  std::size_t bytes = 0;
  double build_s = 0;
};

struct VariantResult {
  std::string name;
  std::size_t rank1 = 0;             // probes whose best user is their own identity
  std::size_t accepted_right = 0;    // ... and at or above the threshold
  std::size_t accepted_wrong = 0;    // best user another identity, at or above the threshold
  std::size_t same_top1 = 0;         // the same best user as the reference
  std::size_t same_top5 = 0;         // the same five users in the same order
  std::size_t same_decision = 0;     // the same accept/refuse and user at the threshold
  float max_score_diff = 0;          // of the best user's score, against the reference
  double median_us = 0;
  std::size_t bytes = 0;
  double build_s = 0;
};

// eval calibrate: the recogniser's scores on a deployment's own faces (any identity-folder
// layout), every pair: what the default threshold does there, and the thresholds that would hold
// each FMR target on that population.
int run_eval_calibrate(Context& ctx, const EvalOptions& opts) {
  auto keys = eval::list_identity_images(opts.images);
  if (!keys) {
    return ctx.fail(keys.error());
  }
  if (keys->empty()) {
    return ctx.fail(Status(ErrorCode::kInvalidArgument,
                           fmt::format("no JPEG or PNG images in identity folders below {} "
                                       "(expected DIR/<person>/<image>)",
                                       opts.images)));
  }
  auto chosen = chosen_recognizer(ctx);
  if (!chosen) {
    return ctx.fail(chosen.error());
  }
  const RecognizerSpec* spec = *chosen;
  const int threads = eval_threads(opts);
  // Image keys are only "<person>/<file>", which two calibration folders may share: each folder
  // gets its own cache, beside (not over) the LFW one.
  EvalOptions local = opts;
  {
    std::error_code ec;
    const std::string folder = std::filesystem::weakly_canonical(opts.images, ec).string();
    local.cache_dir = (std::filesystem::path(opts.cache_dir) /
                       fmt::format("calibrate-{:016x}", std::hash<std::string>{}(folder)))
                          .string();
  }
  ViewsLayout layout;
  auto views = compute_views(ctx, local, *keys, spec->id, threads, &layout);
  if (!views) {
    return ctx.fail(views.error());
  }
  std::vector<float> matrix;
  std::vector<int> identities;
  std::vector<std::string> row_keys;  // the image of each row
  std::map<std::string, int, std::less<>> ids;
  std::vector<std::string> people;  // by identity
  std::size_t no_face = 0;
  const std::size_t dim = static_cast<std::size_t>(recognizer_embedding_size(*spec));
  for (const auto& key : *keys) {
    const auto& flat = views->entries.at(key);
    if (!flat) {
      ++no_face;
      continue;
    }
    auto tmpl = compose_template(*spec, unflatten(layout, *flat));
    if (!tmpl) {
      return ctx.fail(tmpl.error());
    }
    auto [it, inserted] =
        ids.try_emplace(std::string(eval::key_identity(key)), static_cast<int>(ids.size()));
    if (inserted) {
      people.push_back(it->first);
    }
    identities.push_back(it->second);
    row_keys.push_back(key);
    matrix.insert(matrix.end(), tmpl->embedding.begin(), tmpl->embedding.end());
  }
  auto all = eval::all_pairs_scores(matrix, dim, identities, threads);
  if (!all) {
    return ctx.fail(all.error());
  }
  if (all->genuine.empty() || all->impostor.empty()) {
    return ctx.fail(Status(ErrorCode::kInvalidArgument,
                           "calibration needs at least two people, one of them with two images "
                           "with a face"));
  }
  const std::vector<double> targets{1e-3, 1e-4, 1e-5};
  auto points = eval::operating_points(all->genuine, all->impostor, targets);
  if (!points) {
    return ctx.fail(points.error());
  }
  const float threshold = std::isnan(ctx.threshold) ? spec->cosine_threshold() : ctx.threshold;
  const auto at_or_above = [threshold](const std::vector<float>& v) {
    return static_cast<std::size_t>(
        std::count_if(v.begin(), v.end(), [threshold](float x) { return x >= threshold; }));
  };
  const std::size_t false_matches = at_or_above(all->impostor);
  auto matched = eval::matched_people(matrix, dim, identities, threshold);
  if (!matched) {
    return ctx.fail(matched.error());
  }
  // The threshold to use: the strictest FMR row these pairs resolve, rounded up to 1e-4 as the
  // catalog's thresholds are; with no row resolvable, just above the highest different-person
  // score (all that these people can say). Only advised when it is above the one in use.
  float advised = 0.f;
  bool advised_from_row = false;
  for (const auto& p : *points) {
    if (p.resolvable) {
      advised = static_cast<float>(p.threshold);
      advised_from_row = true;
    }
  }
  if (!advised_from_row) {
    advised = *std::max_element(all->impostor.begin(), all->impostor.end());
  }
  advised = static_cast<float>(
      std::ceil(static_cast<double>(advised) * 1e4 + (advised_from_row ? 0.0 : 1e-3)) / 1e4);
  const bool advise = false_matches > 0 && advised > threshold;
  const std::size_t genuine_accepted = at_or_above(all->genuine);
  const double fmr =
      static_cast<double>(false_matches) / static_cast<double>(all->impostor.size());
  const double fnmr = 1.0 - static_cast<double>(genuine_accepted) /
                                static_cast<double>(all->genuine.size());

  nlohmann::json ops = nlohmann::json::array();
  for (const auto& p : *points) {
    ops.push_back({{"target_fmr", p.target_fmr},
                   {"threshold", p.threshold},
                   {"fmr", p.fmr},
                   {"fnmr", p.fnmr},
                   {"false_matches", p.false_matches},
                   {"resolvable", p.resolvable}});
  }
  nlohmann::json matched_json = nlohmann::json::array();
  for (const auto& m : *matched) {
    matched_json.push_back({{"people", {people[static_cast<std::size_t>(m.first)],
                                        people[static_cast<std::size_t>(m.second)]}},
                            {"image_pairs", m.pairs},
                            {"highest", m.highest},
                            {"images", {row_keys[m.first_row], row_keys[m.second_row]}}});
  }
  ctx.emit_json({{"ok", true},
                 {"recognizer", spec->id},
                 {"images", keys->size()},
                 {"images_without_face", no_face},
                 {"identities", ids.size()},
                 {"genuine_pairs", all->genuine.size()},
                 {"impostor_pairs", all->impostor.size()},
                 {"threshold", threshold},
                 {"false_matches", false_matches},
                 {"fmr", fmr},
                 {"fnmr", fnmr},
                 {"operating_points", ops},
                 {"matched_people", matched_json},
                 {"advised_threshold", advise ? nlohmann::json(advised) : nlohmann::json()}});
  if (ctx.json) {
    return kExitOk;
  }
  std::cout << fmt::format(
      "{} on {}: {} images ({} without a face), {} people; {} same-person and {} "
      "different-person pairs\n\n",
      spec->id, opts.images, keys->size(), no_face, ids.size(), all->genuine.size(),
      all->impostor.size());
  std::cout << fmt::format(
      "At the {} threshold {:.4f}: {} false match(es), FMR {:.2e} (calibrated for {:.0e} on "
      "LFW); FNMR {:.2f}%\n\n",
      std::isnan(ctx.threshold) ? "recogniser's" : "given", threshold, false_matches, fmr,
      spec->threshold_fmr, 100 * fnmr);
  std::cout << "Thresholds that would hold each FMR on these people:\n";
  for (const auto& p : *points) {
    if (p.resolvable) {
      std::cout << fmt::format("  FMR {:.0e}: threshold {:.4f}, FNMR {:.2f}% ({} false match(es) "
                               "allowed)\n",
                               p.target_fmr, p.threshold, 100 * p.fnmr, p.false_matches);
    } else {
      std::cout << fmt::format(
          "  FMR {:.0e}: not measurable with {} different-person pairs (needs {:.0f})\n",
          p.target_fmr, all->impostor.size(), std::ceil(1 / p.target_fmr));
    }
  }
  if (!matched->empty()) {
    constexpr std::size_t kShown = 10;
    std::cout << fmt::format(
        "\nDifferent people who matched at {:.4f} ({} pair(s) of people; most image pairs "
        "first):\n",
        threshold, matched->size());
    for (std::size_t i = 0; i < std::min(kShown, matched->size()); ++i) {
      const auto& m = (*matched)[i];
      std::cout << fmt::format("  {} and {}: {} image pair(s), highest {:.4f} ({}, {})\n",
                               people[static_cast<std::size_t>(m.first)],
                               people[static_cast<std::size_t>(m.second)], m.pairs, m.highest,
                               row_keys[m.first_row], row_keys[m.second_row]);
    }
    if (matched->size() > kShown) {
      std::cout << fmt::format("  ... and {} more (all of them with --json)\n",
                               matched->size() - kShown);
    }
  }
  if (advise) {
    std::cout << fmt::format(
        "\n{} Use a threshold of {:.4f}: `facelogin serve --threshold {:.4f}`, or `threshold = "
        "{:.4f}` under [recognition] in the server's config; `--threshold {:.4f}` for the other "
        "commands. {}\n",
        fmr > spec->threshold_fmr ? "These people match each other more often than LFW's did "
                                    "at this threshold."
                                  : "Some of these people match each other at this threshold.",
        advised, advised, advised, advised,
        advised_from_row ? "Measure again on more people: a row resting on few pairs is rough."
                         : "No FMR row is measurable on so few pairs: that is just above the "
                           "highest different-person score; measure again on more people.");
  }
  return kExitOk;
}

int run_eval_gallery(Context& ctx, const EvalOptions& opts) {
  if (!std::filesystem::is_directory(opts.images)) {
    return ctx.fail(
        Status(ErrorCode::kNotFound, fmt::format("images directory {} not found", opts.images)));
  }
  auto keys = eval::list_lfw_images(opts.images);
  if (!keys) {
    return ctx.fail(keys.error());
  }
  std::sort(keys->begin(), keys->end());
  auto chosen = chosen_recognizer(ctx);
  if (!chosen) {
    return ctx.fail(chosen.error());
  }
  const RecognizerSpec* spec = *chosen;
  const int threads = eval_threads(opts);
  ViewsLayout layout;
  auto views = compute_views(ctx, opts, *keys, spec->id, threads, &layout);
  if (!views) {
    return ctx.fail(views.error());
  }
  // Enrolled: the first image (in name order) of every identity; probes: the other images of
  // identities with several. Every identity is a user; those with one image are distractors.
  std::vector<StoredTemplate> enrolled;
  std::vector<std::pair<FaceTemplate, std::int64_t>> probes;  // template, its identity's user
  std::map<std::string, std::int64_t, std::less<>> users;
  for (const auto& key : *keys) {
    const auto& flat = views->entries.at(key);
    if (!flat) {
      continue;  // no face: neither enrolled nor probed
    }
    auto tmpl = compose_template(*spec, unflatten(layout, *flat));
    if (!tmpl) {
      return ctx.fail(tmpl.error());
    }
    const std::string person(eval::key_identity(key));
    auto [it, first] = users.try_emplace(person, static_cast<std::int64_t>(users.size()) + 1);
    if (first) {
      StoredTemplate t;
      t.id = static_cast<std::int64_t>(enrolled.size()) + 1;
      t.user_id = it->second;
      t.face = std::move(*tmpl);
      enrolled.push_back(std::move(t));
    } else {
      probes.emplace_back(std::move(*tmpl), it->second);
    }
  }
  if (probes.empty()) {
    return ctx.fail(Status(ErrorCode::kInvalidArgument,
                           "no identity of --images has two images with a face: nothing to probe"));
  }
  const float threshold = std::isnan(ctx.threshold) ? spec->cosine_threshold() : ctx.threshold;

  std::vector<SearchVariant> variants;
  for (auto precision : {GalleryPrecision::kFloat32, GalleryPrecision::kFloat16}) {
    const auto t0 = Clock::now();
    auto gallery = Gallery::build(enrolled, spec->id, precision);
    if (!gallery) {
      if (precision == GalleryPrecision::kFloat16) {
        continue;  // no F16C: said by the missing row
      }
      return ctx.fail(gallery.error());
    }
    auto shared = std::make_shared<const Gallery>(std::move(*gallery));
    variants.push_back({precision == GalleryPrecision::kFloat32 ? "exact fp32" : "exact fp16",
                        [shared](const FaceTemplate& p, std::size_t k) {
                          return shared->search(p, k);
                        },
                        shared->bytes(),
                        std::chrono::duration<double>(Clock::now() - t0).count()});
  }
  {
    const auto t0 = Clock::now();
    ApproximateParams params;
    params.build_threads = threads;
    auto index = ApproximateIndex::build(enrolled, spec->id, params);
    if (!index) {
      return ctx.fail(index.error());
    }
    auto alive = std::make_shared<std::vector<std::int64_t>>();
    for (const auto& t : enrolled) {
      alive->push_back(t.id);
    }
    std::sort(alive->begin(), alive->end());
    variants.push_back({fmt::format("approximate (HNSW M={} ef={})", params.m, params.ef_search),
                        [index = *index, alive](const FaceTemplate& p, std::size_t k) {
                          return index->search(p, k, *alive);
                        },
                        (*index)->bytes(),
                        std::chrono::duration<double>(Clock::now() - t0).count()});
  }

  constexpr std::size_t kTop = 5;
  std::vector<std::vector<Candidate>> reference;
  std::vector<VariantResult> results;
  for (const auto& variant : variants) {
    VariantResult r;
    r.name = variant.name;
    r.bytes = variant.bytes;
    r.build_s = variant.build_s;
    std::vector<double> us;
    for (std::size_t i = 0; i < probes.size(); ++i) {
      const auto& [probe, own] = probes[i];
      const auto t0 = Clock::now();
      auto found = variant.search(probe, kTop);
      us.push_back(std::chrono::duration<double, std::micro>(Clock::now() - t0).count());
      if (reference.size() < probes.size()) {
        reference.push_back(found);  // the first variant is exact fp32
      }
      const auto& want = reference[i];
      if (found.empty() || want.empty()) {
        continue;
      }
      const bool right = found[0].user_id == own;
      r.rank1 += right ? 1 : 0;
      const bool accepted = found[0].score >= threshold;
      r.accepted_right += accepted && right ? 1 : 0;
      r.accepted_wrong += accepted && !right ? 1 : 0;
      r.same_top1 += found[0].user_id == want[0].user_id ? 1 : 0;
      bool same5 = found.size() == want.size();
      for (std::size_t j = 0; same5 && j < found.size(); ++j) {
        same5 = found[j].user_id == want[j].user_id;
      }
      r.same_top5 += same5 ? 1 : 0;
      const bool want_accepted = want[0].score >= threshold;
      r.same_decision += accepted == want_accepted &&
                                 (!accepted || found[0].user_id == want[0].user_id)
                             ? 1
                             : 0;
      r.max_score_diff = std::max(r.max_score_diff, std::abs(found[0].score - want[0].score));
    }
    std::sort(us.begin(), us.end());
    r.median_us = us[us.size() / 2];
    results.push_back(r);
  }

  const auto pct = [&](std::size_t n) {
    return 100.0 * static_cast<double>(n) / static_cast<double>(probes.size());
  };
  nlohmann::json out = nlohmann::json::array();
  if (!ctx.json) {
    std::cout << fmt::format(
        "LFW 1:N with {}: {} users enrolled from one image each, {} probes (the other images "
        "of {} identities), threshold {:.3f}\n\n",
        spec->id, enrolled.size(), probes.size(),
        std::count_if(users.begin(), users.end(),
                      [&](const auto& u) {
                        return std::any_of(probes.begin(), probes.end(),
                                           [&](const auto& p) { return p.second == u.second; });
                      }),
        threshold);
    std::cout << fmt::format("{:<31} {:>8} {:>9} {:>8} {:>9} {:>9} {:>9} {:>10} {:>9} {:>9}\n",
                             "search", "rank-1", "accepted", "wrong", "same top1", "same top5",
                             "same dec.", "max |ds|", "median", "B/tmpl");
  }
  for (const auto& r : results) {
    out.push_back({{"search", r.name},
                   {"rank1", pct(r.rank1)},
                   {"accepted_right", r.accepted_right},
                   {"accepted_wrong", r.accepted_wrong},
                   {"same_top1_as_fp32", pct(r.same_top1)},
                   {"same_top5_as_fp32", pct(r.same_top5)},
                   {"same_decision_as_fp32", pct(r.same_decision)},
                   {"max_score_diff", r.max_score_diff},
                   {"median_us", r.median_us},
                   {"bytes", r.bytes},
                   {"build_s", r.build_s}});
    if (!ctx.json) {
      std::cout << fmt::format(
          "{:<31} {:>7.2f}% {:>9} {:>8} {:>8.2f}% {:>8.2f}% {:>8.2f}% {:>10.2e} {:>6.0f} us {:>9}\n",
          r.name, pct(r.rank1), r.accepted_right, r.accepted_wrong, pct(r.same_top1),
          pct(r.same_top5), pct(r.same_decision), r.max_score_diff, r.median_us,
          r.bytes / std::max<std::size_t>(1, enrolled.size()));
    }
  }
  if (!ctx.json) {
    std::cout << "\nrank-1: the probe's own identity ranked first. accepted / wrong: first at or "
                 "above the threshold, right or wrong user. same top1/top5/dec.: agreement with "
                 "exact fp32 search (decision = accept/refuse and user). max |ds|: largest "
                 "difference of the best score from fp32. B/tmpl: memory per enrolled template.\n";
  }
  ctx.emit_json({{"ok", true},
                 {"recognizer", spec->id},
                 {"enrolled", enrolled.size()},
                 {"probes", probes.size()},
                 {"threshold", threshold},
                 {"results", out}});
  return kExitOk;
}

// --- eval deployment ---------------------------------------------------------------------

struct DeploymentCliOptions {
  EvalOptions eval;
  std::size_t enrol = 5;
  double target_fmr = 1e-5;
  std::size_t calibrate_people = 0;
  std::uint64_t seed = 1;
  bool no_duplicate_check = false;
};

// A deployment cache entry: the outcome code, then (outcome kOk) the views as in the LFW cache,
// zeros otherwise.
constexpr float kEntryOk = 0.f;
constexpr float kEntryNoFace = 1.f;
constexpr float kEntrySeveralFaces = 2.f;
constexpr float kEntryBadImage = 3.f;
constexpr float kEntryPoorQuality = 10.f;  // plus the first QualityIssue's value
constexpr int kLastQualityIssue = static_cast<int>(QualityIssue::kTurnedAway);

std::string unusable_reason(float code) {
  if (code == kEntryNoFace) {
    return "no_face";
  }
  if (code == kEntrySeveralFaces) {
    return "several_faces";
  }
  if (code == kEntryBadImage) {
    return "bad_image";
  }
  const int issue = static_cast<int>(code - kEntryPoorQuality);
  if (code >= kEntryPoorQuality && issue <= kLastQualityIssue) {
    return "poor_quality:" + std::string(quality_issue_name(static_cast<QualityIssue>(issue)));
  }
  return "unusable";
}

// Every image of the folder analysed as enrolment and login analyse a frame (quality gate on
// unless --no-quality, several faces refused, the largest face), from the cache or computed:
// templates of `spec`, or why the image is unusable.
Result<std::vector<eval::DeploymentImage>> deployment_images(Context& ctx,
                                                             const DeploymentCliOptions& opts,
                                                             const std::vector<std::string>& keys,
                                                             const RecognizerSpec& spec,
                                                             int threads) {
  Context local = ctx;
  local.recognizer = spec.id;
  auto engine = local.open_engine(1);
  if (!engine) {
    return make_error(engine.error());
  }
  const EngineOptions& eo = (*engine)->options();
  const ViewsLayout layout = views_layout((*engine)->recognizer(), eo.detector_id);
  AnalyzeOptions analyze;  // FaceService::check_frame's
  analyze.embed = false;   // views are computed below
  analyze.enforce_quality = !ctx.no_quality;
  // Everything that decides whether an image is usable is part of the fingerprint too.
  const QualityOptions& q = eo.quality;
  eval::EmbeddingCache cache;
  cache.recognizer_id = "deployment-" + layout.cache_id;
  cache.fingerprint = fmt::format(
      "{}|deployment-1:quality={}:several={}:subject=largest:max_side={}:score={}:second={}:"
      "q={},{},{},{},{},{},{},{},{},{}",
      layout.fingerprint, analyze.enforce_quality, analyze.refuse_several_faces,
      eo.detect_max_side, eo.detect_score_threshold, eo.second_face_area_ratio, q.min_face_px,
      q.max_face_fraction, q.max_outside_fraction, q.min_brightness, q.max_brightness,
      q.max_saturated_fraction, q.min_sharpness, q.max_yaw, q.max_pitch, q.max_roll);
  cache.dim = layout.dim + 1;
  std::filesystem::path cache_path;
  if (!opts.eval.no_cache) {
    // Keys are only "<person>/<file>": each folder gets its own cache, as for eval calibrate.
    std::error_code ec;
    const std::string folder = std::filesystem::weakly_canonical(opts.eval.images, ec).string();
    const std::filesystem::path dir =
        std::filesystem::path(opts.eval.cache_dir) /
        fmt::format("deployment-{:016x}", std::hash<std::string>{}(folder));
    std::filesystem::create_directories(dir, ec);
    cache_path = dir / (cache.recognizer_id + ".embcache");
    if (auto loaded = eval::load_embedding_cache(cache_path, cache.recognizer_id, cache.fingerprint)) {
      cache = std::move(*loaded);
    } else if (loaded.error().code() != ErrorCode::kNotFound && !ctx.json) {
      std::cerr << fmt::format("  ignoring cache {}: {}\n", cache_path.string(),
                               loaded.error().message());
    }
  }
  const MakeEntry make_entry =
      [&](Worker& worker,
          const std::filesystem::path& path) -> Result<std::optional<std::vector<float>>> {
    std::vector<float> entry(layout.dim + 1, 0.f);
    auto image = load_image_file(path);
    if (!image) {
      const ErrorCode code = image.error().code();
      if (code == ErrorCode::kNotFound || code == ErrorCode::kIoError) {
        return make_error(code, fmt::format("{}: {}", path.string(), image.error().message()));
      }
      entry[0] = kEntryBadImage;  // the product refuses it as an unusable image
      return entry;
    }
    auto analysis = worker.analyze(*image, analyze);
    if (!analysis) {
      return make_error(analysis.error());
    }
    switch (analysis->outcome) {
      case FrameOutcome::kOk: {
        auto views = worker.embed_views(*image, analysis->faces[*analysis->subject]);
        if (!views) {
          return make_error(views.error());
        }
        const std::vector<float> flat = flatten(layout, *views);
        std::copy(flat.begin(), flat.end(), entry.begin() + 1);
        entry[0] = kEntryOk;
        break;
      }
      case FrameOutcome::kNoFace:
        entry[0] = kEntryNoFace;
        break;
      case FrameOutcome::kSeveralFaces:
        entry[0] = kEntrySeveralFaces;
        break;
      case FrameOutcome::kPoorQuality:
        entry[0] = kEntryPoorQuality +
                   (analysis->quality.issues.empty()
                        ? 0.f
                        : static_cast<float>(static_cast<int>(analysis->quality.issues.front())));
        break;
    }
    return entry;
  };
  if (Status s = fill_cache(**engine, opts.eval.images, keys, cache, threads, cache_path, ctx.json,
                            make_entry);
      !s.ok()) {
    return make_error(s);
  }
  std::vector<eval::DeploymentImage> out;
  out.reserve(keys.size());
  for (const auto& key : keys) {
    eval::DeploymentImage image;
    image.key = key;
    const auto& entry = cache.entries.at(key);
    if (!entry || entry->empty()) {
      image.unusable = "no_face";
    } else if ((*entry)[0] != kEntryOk) {
      image.unusable = unusable_reason((*entry)[0]);
    } else {
      const std::vector<float> flat(entry->begin() + 1, entry->end());
      auto tmpl = compose_template(spec, unflatten(layout, flat));
      if (!tmpl) {
        return make_error(tmpl.error());
      }
      image.face = std::move(tmpl->embedding);
    }
    out.push_back(std::move(image));
  }
  return out;
}

nlohmann::json rates_json(const eval::DeploymentRates& r) {
  return {{"threshold", r.threshold},
          {"impostor_claims", r.impostor_claims},
          {"false_accepts", r.false_accepts},
          {"fmr", r.fmr},
          {"enrolled_impostor_claims", r.enrolled_impostor_claims},
          {"enrolled_false_accepts", r.enrolled_false_accepts},
          {"enrolled_fmr", r.enrolled_fmr},
          {"genuine_claims", r.genuine_claims},
          {"false_rejects", r.false_rejects},
          {"fnmr", r.fnmr},
          {"identification",
           {{"probes", r.identification_probes},
            {"false_identifications", r.false_identifications},
            {"false_identification_rate", r.false_identification_rate},
            {"genuine_probes", r.genuine_identification_probes},
            {"misses", r.identification_misses},
            {"miss_rate", r.identification_miss_rate}}}};
}

nlohmann::json optional_json(const std::optional<double>& v) {
  return v ? nlohmann::json(*v) : nlohmann::json(nullptr);
}

// eval deployment: a folder of people enrolled as `enroll` would enrol them, every other image
// claimed against every enrolled person, at the population-aware operating threshold and at the
// recogniser's own.
int run_eval_deployment(Context& ctx, const DeploymentCliOptions& opts) {
  auto keys = eval::list_identity_images(opts.eval.images);
  if (!keys) {
    return ctx.fail(keys.error());
  }
  if (keys->empty()) {
    return ctx.fail(Status(ErrorCode::kInvalidArgument,
                           fmt::format("no JPEG or PNG images in identity folders below {} "
                                       "(expected DIR/<person>/<image>)",
                                       opts.eval.images)));
  }
  auto chosen = chosen_recognizer(ctx);
  if (!chosen) {
    return ctx.fail(chosen.error());
  }
  const RecognizerSpec* spec = *chosen;
  const int threads = eval_threads(opts.eval);
  auto images = deployment_images(ctx, opts, *keys, *spec, threads);
  if (!images) {
    return ctx.fail(images.error());
  }
  eval::DeploymentOptions options;
  options.enrol = opts.enrol;
  options.model_threshold = std::isnan(ctx.threshold) ? spec->cosine_threshold() : ctx.threshold;
  options.same_person_threshold = spec->same_person_threshold;
  options.population.target_fmr = opts.target_fmr;
  options.calibrate_people = opts.calibrate_people;
  options.seed = opts.seed;
  options.threads = threads;
  options.check_duplicates = !opts.no_duplicate_check;
  const auto t0 = Clock::now();
  auto report = eval::simulate_deployment(
      *images, static_cast<std::size_t>(recognizer_embedding_size(*spec)), options);
  if (!report) {
    return ctx.fail(report.error());
  }
  const double simulate_s = std::chrono::duration<double>(Clock::now() - t0).count();
  const eval::DeploymentReport& r = *report;
  const PopulationEstimate& e = r.estimate;

  nlohmann::json refused = nlohmann::json::array();
  for (const auto& p : r.persons) {
    if (p.status != "enrolled") {
      refused.push_back({{"person", p.name},
                         {"status", p.status},
                         {"detail", p.detail},
                         {"usable_images", p.usable}});
    }
  }
  nlohmann::json doc = rates_json(r.at_operating);
  doc["ok"] = true;
  doc["recognizer"] = spec->id;
  doc["images_dir"] = opts.eval.images;
  doc["model_threshold"] = r.model_threshold;
  doc["model_threshold_overridden"] = !std::isnan(ctx.threshold);
  doc["enrol"] = opts.enrol;
  doc["duplicate_check"] = !opts.no_duplicate_check;
  doc["target_fmr"] = opts.target_fmr;
  doc["people"] = r.people;
  doc["images"] = r.images;
  doc["usable_images"] = r.usable_images;
  doc["unusable"] = r.unusable;
  doc["enrolled_people"] = r.enrolled_people;
  doc["enrolled_templates"] = r.enrolled_templates;
  doc["refused"] = r.refused;
  doc["refused_people"] = refused;
  doc["probes"] = r.probes;
  doc["at_model_threshold"] = rates_json(r.at_model);
  doc["population_estimate"] = {
      {"users", e.users},
      {"templates", e.templates},
      {"claims", e.claims},
      {"sampled", e.sampled},
      {"usable", e.usable},
      {"target_fmr", e.target_fmr},
      {"threshold", e.threshold ? nlohmann::json(*e.threshold) : nlohmann::json(nullptr)},
      {"method", e.method},
      {"tail_start", e.tail_start},
      {"tail_share", e.tail_share},
      {"tail_shape", e.tail_shape},
      {"tail_scale", e.tail_scale},
      {"predicted_fmr_at_threshold", optional_json(r.predicted_fmr_operating)},
      {"predicted_fmr_at_model_threshold", optional_json(r.predicted_fmr_model)}};
  doc["held_out"] = r.held_out
                        ? nlohmann::json{{"calibration_people", r.calibration_people},
                                         {"seed", opts.seed},
                                         {"measured_people", r.measured_people},
                                         {"measured_probes", r.measured_probes}}
                        : nlohmann::json(nullptr);
  doc["measured_threshold_for_target"] =
      r.measured_threshold_for_target ? nlohmann::json(*r.measured_threshold_for_target)
                                      : nlohmann::json(nullptr);
  doc["fnmr_at_measured_threshold"] = optional_json(r.fnmr_at_measured_threshold);
  doc["simulate_seconds"] = simulate_s;
  ctx.emit_json(doc);
  if (ctx.json) {
    return kExitOk;
  }

  std::string unusable;
  for (const auto& [reason, n] : r.unusable) {
    unusable += fmt::format("{}{} {}", unusable.empty() ? "" : ", ", n, reason);
  }
  std::cout << fmt::format("Deployment of {} on {}: {} people, {} images, {} usable{}\n",
                           spec->id, opts.eval.images, r.people, r.images, r.usable_images,
                           unusable.empty() ? "" : fmt::format(" (unusable: {})", unusable));
  std::string refusals;
  for (const auto& [status, n] : r.refused) {
    refusals += fmt::format("{}{} {}", refusals.empty() ? "" : ", ", n, status);
  }
  std::cout << fmt::format(
      "Enrolled {} people from their first {} usable image(s) ({} templates); not enrolled: "
      "{}{}\n",
      r.enrolled_people, opts.enrol, r.enrolled_templates, refusals.empty() ? "none" : refusals,
      opts.no_duplicate_check ? " (no duplicate-face check)" : "");
  std::size_t shown = 0;
  for (const auto& p : r.persons) {
    if (p.status != "enrolled" && p.status != "too_few_images" && shown++ < 10) {
      std::cout << fmt::format("  {}: {} ({})\n", p.name, p.status, p.detail);
    }
  }
  if (r.held_out) {
    std::cout << fmt::format(
        "Held out: the estimate is made on {} enrolled people drawn with seed {}; claims are "
        "measured between the {} other enrolled people and {} probes of people outside the "
        "calibration set\n",
        r.calibration_people, opts.seed, r.measured_people, r.measured_probes);
  }
  std::cout << fmt::format("Probes: {} usable images not enrolled, each claimed against every "
                           "{}enrolled person\n\n",
                           r.held_out ? r.measured_probes : r.probes, r.held_out ? "measured " : "");
  if (e.usable && e.threshold) {
    std::cout << fmt::format(
        "Population estimate on {} people ({} templates, {} impostor claims{}): threshold "
        "{:.4f} for FMR {:.0e} ({}; tail from {:.4f}, {:.2f}% of claims, shape {:.3f}, scale "
        "{:.4f})\n",
        e.users, e.templates, e.claims, e.sampled ? ", sampled" : "", *e.threshold, e.target_fmr,
        e.method, e.tail_start, 100 * e.tail_share, e.tail_shape, e.tail_scale);
  } else {
    std::cout << fmt::format(
        "Population estimate: not usable ({} people, {} impostor claims; {}): the "
        "recogniser's threshold holds\n",
        e.users, e.claims,
        e.method == "too-few-claims"
            ? fmt::format("FMR {:.0e} is more than a decade beyond them", e.target_fmr)
            : fmt::format("at least {} people needed", PopulationOptions{}.min_users));
  }
  std::cout << fmt::format(
      "{:<10} {:>7} {:>15} {:>8} {:>9} {:>13} {:>9} {:>7} {:>7} {:>9} {:>10}\n", "threshold",
      "value", "impostor claims", "accepted", "FMR", "FMR enrolled", "predicted", "genuine",
      "FNMR", "1:N false", "1:N misses");
  const auto row = [&](const char* name, const eval::DeploymentRates& x,
                       const std::optional<double>& predicted) {
    std::cout << fmt::format(
        "{:<10} {:>7.4f} {:>15} {:>8} {:>9.2e} {:>13.2e} {:>9} {:>7} {:>6.2f}% {:>9} {:>9.2f}%\n",
        name, x.threshold, x.impostor_claims, x.false_accepts, x.fmr, x.enrolled_fmr,
        predicted ? fmt::format("{:.2e}", *predicted) : std::string("-"), x.genuine_claims,
        100 * x.fnmr, x.false_identifications, 100 * x.identification_miss_rate);
  };
  row("model", r.at_model, r.predicted_fmr_model);
  row("operating", r.at_operating, r.predicted_fmr_operating);
  if (r.measured_threshold_for_target) {
    std::cout << fmt::format(
        "\nIn hindsight, threshold {:.4f} held FMR {:.0e} on these claims{}\n",
        *r.measured_threshold_for_target, opts.target_fmr,
        r.fnmr_at_measured_threshold
            ? fmt::format(" (FNMR {:.2f}%)", 100 * *r.fnmr_at_measured_threshold)
            : std::string());
  }
  std::cout << "\nClaims are 1:1, the probe against all of a user's templates (impostor: someone "
               "else's image; genuine: the user's own images not enrolled). FMR enrolled: "
               "impostor claims by enrolled people only, the population the estimate is made "
               "on (the others include people refused as duplicates). predicted: the "
               "estimate's FMR at that threshold. 1:N false: probes whose best user is someone "
               "else at or above the threshold; 1:N misses: enrolled people's probes not "
               "identified as themselves.\n";
  return kExitOk;
}

}  // namespace

void register_eval_commands(CLI::App& app, Context& ctx, int& exit_code) {
  auto* eval_cmd = app.add_subcommand("eval", "Measure recognition accuracy and liveness");
  eval_cmd->require_subcommand(1);
  register_spoof_eval(*eval_cmd, ctx, exit_code);
  register_challenge_eval(*eval_cmd, ctx, exit_code);
  register_replay_eval(*eval_cmd, ctx, exit_code);
  auto opts = std::make_shared<EvalOptions>();
  opts->cache_dir = ".cache/eval";
  auto* lfw = eval_cmd->add_subcommand(
      "lfw", "LFW View-2 protocol: n-fold accuracy, AUC, FNMR at FMR 1e-3/1e-4/1e-5, DET plot");
  lfw->add_option("--pairs", opts->pairs, "pairs.txt in the LFW View-2 format")
      ->required()
      ->check(CLI::ExistingFile);
  lfw->add_option("--images", opts->images, "Folder holding <Name>/<Name>_<NNNN>.jpg")->required();
  lfw->add_option("--recognizers", opts->recognizers,
                  "Recognisers to compare (default: --recognizer or the default one)")
      ->delimiter(',');
  lfw->add_option("--plot", opts->plot, "Write a DET plot (.svg or .png)");
  lfw->add_option("--cache-dir", opts->cache_dir, "Where embeddings are cached")
      ->capture_default_str();
  lfw->add_flag("--no-cache", opts->no_cache, "Neither read nor write the embedding cache");
  lfw->add_flag("--all-images", opts->all_images,
                "FMR/FNMR (and thresholds) over all pairs of every image in --images, not only "
                "of the images the pairs file uses");
  lfw->add_option("--threads", opts->threads, "Worker threads (default: all cores)")
      ->check(CLI::Range(0, 256));
  lfw->callback([&ctx, &exit_code, opts] { exit_code = run_eval_lfw(ctx, *opts); });

  auto gallery_opts = std::make_shared<EvalOptions>();
  gallery_opts->cache_dir = ".cache/eval";
  auto* gallery = eval_cmd->add_subcommand(
      "gallery",
      "1:N identification on LFW images: exact fp32, exact fp16 and the approximate index");
  gallery->add_option("--images", gallery_opts->images, "Folder holding <Name>/<Name>_<NNNN>.jpg")
      ->required();
  gallery->add_option("--cache-dir", gallery_opts->cache_dir, "Where embeddings are cached")
      ->capture_default_str();
  gallery->add_flag("--no-cache", gallery_opts->no_cache,
                    "Neither read nor write the embedding cache");
  gallery->add_option("--threads", gallery_opts->threads, "Worker threads (default: all cores)")
      ->check(CLI::Range(0, 256));
  gallery->callback(
      [&ctx, &exit_code, gallery_opts] { exit_code = run_eval_gallery(ctx, *gallery_opts); });

  auto calibrate_opts = std::make_shared<EvalOptions>();
  calibrate_opts->cache_dir = ".cache/eval";
  auto* calibrate = eval_cmd->add_subcommand(
      "calibrate",
      "The recogniser on your own people: false matches at its threshold, and the thresholds "
      "that would hold FMR 1e-3/1e-4/1e-5 on them");
  calibrate
      ->add_option("--images", calibrate_opts->images,
                   "Folder holding <person>/<image>.jpg|.png, one folder per person")
      ->required();
  calibrate
      ->add_option("--cache-dir", calibrate_opts->cache_dir,
                   "Where embeddings are cached (one cache per --images folder, by file name: "
                   "use --no-cache after replacing images)")
      ->capture_default_str();
  calibrate->add_flag("--no-cache", calibrate_opts->no_cache,
                      "Neither read nor write the embedding cache");
  calibrate->add_option("--threads", calibrate_opts->threads, "Worker threads (default: all cores)")
      ->check(CLI::Range(0, 256));
  calibrate->callback([&ctx, &exit_code, calibrate_opts] {
    exit_code = run_eval_calibrate(ctx, *calibrate_opts);
  });

  auto deployment_opts = std::make_shared<DeploymentCliOptions>();
  deployment_opts->eval.cache_dir = ".cache/eval";
  auto* deployment = eval_cmd->add_subcommand(
      "deployment",
      "A deployment simulated on a folder of people: the first N images of each enrolled as "
      "`enroll` would, every other image claimed against every enrolled person at the "
      "population-aware operating threshold and at the recogniser's");
  deployment
      ->add_option("--images", deployment_opts->eval.images,
                   "Folder holding <person>/<image>.jpg|.png, one folder per person")
      ->required();
  deployment->add_option("--enrol", deployment_opts->enrol, "Images per enrolment")
      ->check(CLI::Range(1, 1000))
      ->capture_default_str();
  deployment
      ->add_option("--target-fmr", deployment_opts->target_fmr,
                   "False-match rate per claim the operating threshold must hold")
      ->check(CLI::Range(1e-12, 0.5))
      ->capture_default_str();
  deployment
      ->add_option("--calibrate-people", deployment_opts->calibrate_people,
                   "Estimate the threshold on K enrolled people drawn at random, measure on the "
                   "others (0: estimate and measure on everyone)")
      ->capture_default_str();
  deployment->add_option("--seed", deployment_opts->seed, "Seed of the --calibrate-people draw")
      ->capture_default_str();
  deployment
      ->add_option("--cache-dir", deployment_opts->eval.cache_dir,
                   "Where image analyses are cached (one cache per --images folder)")
      ->capture_default_str();
  deployment->add_flag("--no-duplicate-check", deployment_opts->no_duplicate_check,
                       "Enrol people even when a face matches an enrolled user (not what "
                       "`enroll` does: shows what the duplicate check does to the estimate)");
  deployment->add_flag("--no-cache", deployment_opts->eval.no_cache,
                       "Neither read nor write the cache");
  deployment
      ->add_option("--threads", deployment_opts->eval.threads, "Worker threads (default: all cores)")
      ->check(CLI::Range(0, 256));
  deployment->callback([&ctx, &exit_code, deployment_opts] {
    exit_code = run_eval_deployment(ctx, *deployment_opts);
  });
}

}  // namespace facelogin::cli
