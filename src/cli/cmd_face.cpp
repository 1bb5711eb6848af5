// enroll, verify, identify: the face commands.

#include <algorithm>
#include <iostream>
#include <optional>

#include <fmt/format.h>

#include "cli/context.h"

namespace facelogin::cli {
namespace {

Result<std::vector<LabeledImage>> load_images(const std::vector<std::string>& paths) {
  std::vector<LabeledImage> images;
  for (const auto& p : paths) {
    auto image = load_image_file(p);
    if (!image) {
      return make_error(image.error().code(), fmt::format("{}: {}", p, image.error().message()));
    }
    images.push_back({p, std::move(*image)});
  }
  return images;
}

// A batch of images (verify, identify): every image gets its row, an image that cannot be
// checked (unreadable, no face, several, poor quality) gets its error there and the batch goes
// on; the exit code is the worst of the rows (no match 1, bad input 3). Paths that do not exist
// are refused by the command line before any image is looked at (exit 2).
struct Batch {
  int exit_code = kExitOk;
  std::optional<Status> worst;  // the error of the worst row, if any row failed
  int failed = 0;

  // Whether `status` belongs to one image (the batch goes on) rather than to the whole command.
  static bool per_image(const Status& status) {
    return exit_code_for(status.code()) == kExitBadInput;
  }
  // The row of an image that could not be checked (and its line, without --json).
  nlohmann::json fail(const std::string& path, const Status& status, bool json_output) {
    if (!json_output) {
      std::cout << fmt::format("{} (not checked)\n", status.message());  // names the file
    }
    ++failed;
    const int code = exit_code_for(status.code());
    if (!worst || code > exit_code) {
      worst = status;
    }
    exit_code = std::max(exit_code, code);
    return {{"source", path},
            {"error",
             {{"code", std::string(error_code_name(status.code()))},
              {"message", status.message()}}}};
  }
  void no_match() { exit_code = std::max(exit_code, static_cast<int>(kExitNoMatch)); }
  // For stderr: how many images could not be checked, and the worst reason (naming its file).
  std::string summary(std::size_t images) const {
    return fmt::format("facelogin: {} of {} image(s) could not be checked; {} [{}]\n", failed,
                       images, worst->message(), error_code_name(worst->code()));
  }
  // The document's error (the worst row's), for --json; null when every image was checked.
  nlohmann::json error_json() const {
    if (!worst) {
      return nullptr;
    }
    return {{"code", std::string(error_code_name(worst->code()))}, {"message", worst->message()}};
  }
};

// Loads one image of a batch; an unreadable one is named with its path.
Result<LabeledImage> load_one(const std::string& path) {
  auto image = load_image_file(path);
  if (!image) {
    return make_error(image.error().code(), fmt::format("{}: {}", path, image.error().message()));
  }
  return LabeledImage{path, std::move(*image)};
}

int run_enroll(Context& ctx, const std::string& user, const std::vector<std::string>& paths,
               bool add) {
  // Cheap checks first: a bad name or a taken one fails before images are decoded and models
  // loaded. The service checks both again, inside its transaction.
  if (Status s = validate_user_name(user); !s.ok()) {
    return ctx.fail(s);
  }
  auto images = load_images(paths);
  if (!images) {
    return ctx.fail(images.error());
  }
  auto store = ctx.open_store();
  if (!store) {
    return ctx.fail(store.error());
  }
  auto existing = (*store)->get_user(user);
  if (!add && existing) {
    return ctx.fail(Status(ErrorCode::kAlreadyExists,
                           fmt::format("user '{}' already exists (use --add to add faces)", user)));
  }
  if (add && !existing) {
    return ctx.fail(existing.error());
  }
  auto service = ctx.open_service(**store);
  if (!service) {
    return ctx.fail(service.error());
  }
  auto result = service->enroll(user, *images, add);
  if (!result) {
    return ctx.fail(result.error());
  }
  if (ctx.json) {
    nlohmann::json imgs = nlohmann::json::array();
    for (const auto& r : result->images) {
      imgs.push_back(to_json(r));
    }
    ctx.emit_json({{"ok", true},
                   {"user", result->user.name},
                   {"templates", result->user.template_count},
                   {"images", imgs}});
  } else {
    std::cout << fmt::format("Enrolled {} with {} face template(s) ({} in total).\n",
                             result->user.name, images->size(), result->user.template_count);
  }
  return kExitOk;
}

int run_verify(Context& ctx, const std::string& user, const std::vector<std::string>& paths) {
  if (Status s = validate_user_name(user); !s.ok()) {
    return ctx.fail(s);
  }
  auto store = ctx.open_store();
  if (!store) {
    return ctx.fail(store.error());
  }
  if (auto known = (*store)->get_user(user); !known) {
    return ctx.fail(known.error());  // an unknown user is the command's error, not an image's
  }
  auto service = ctx.open_service(**store);
  if (!service) {
    return ctx.fail(service.error());
  }
  nlohmann::json results = nlohmann::json::array();
  Batch batch;
  for (const auto& path : paths) {
    auto image = load_one(path);
    auto r = image ? service->verify(user, *image) : Result<VerifyResult>(make_error(image.error()));
    if (!r) {
      if (image && !Batch::per_image(r.error())) {
        return ctx.fail(r.error());
      }
      results.push_back(batch.fail(path, r.error(), ctx.json));
      continue;
    }
    if (!r->decision.match) {
      batch.no_match();
    }
    results.push_back({{"image", to_json(r->image)},
                       {"match", r->decision.match},
                       {"score", r->decision.score},
                       {"threshold", r->decision.threshold}});
    if (!ctx.json) {
      std::cout << fmt::format("{}: {} (score {:.3f}{}, threshold {:.3f})\n", path,
                               r->decision.match ? "MATCH" : "no match", r->decision.score,
                               r->image.first_pass ? " on the first pass" : "",
                               r->decision.threshold);
    }
  }
  const bool all_match = batch.exit_code == kExitOk;
  ctx.emit_json({{"ok", batch.failed == 0},
                 {"user", user},
                 {"match", all_match},
                 {"error", batch.error_json()},
                 {"results", results}});
  if (!ctx.json) {
    std::cout << (all_match ? fmt::format("Verified: this is {}.\n", user)
                            : fmt::format("Not verified as {}.\n", user));
    if (batch.failed > 0) {
      std::cerr << batch.summary(paths.size());
    }
  }
  return batch.exit_code;
}

int run_identify(Context& ctx, const std::vector<std::string>& paths, std::size_t top_k) {
  auto store = ctx.open_store();
  if (!store) {
    return ctx.fail(store.error());
  }
  auto service = ctx.open_service(**store);
  if (!service) {
    return ctx.fail(service.error());
  }
  nlohmann::json results = nlohmann::json::array();
  Batch batch;
  for (const auto& path : paths) {
    auto image = load_one(path);
    auto r = image ? service->identify(*image, top_k)
                   : Result<IdentifyResult>(make_error(image.error()));
    if (!r) {
      if (image && !Batch::per_image(r.error())) {
        return ctx.fail(r.error());
      }
      results.push_back(batch.fail(path, r.error(), ctx.json));
      continue;
    }
    if (!r->match) {
      batch.no_match();
    }
    nlohmann::json candidates = nlohmann::json::array();
    for (const auto& c : r->candidates) {
      candidates.push_back({{"user", c.user}, {"score", c.score}});
    }
    results.push_back({{"image", to_json(r->image)},
                       {"match", r->match},
                       {"user", r->match ? nlohmann::json(r->candidates.front().user)
                                         : nlohmann::json(nullptr)},
                       {"threshold", r->threshold},
                       {"candidates", candidates}});
    if (!ctx.json) {
      std::cout << fmt::format("{}: {}\n", path,
                               r->match ? fmt::format("identified as {}", r->candidates[0].user)
                                        : std::string("nobody we know"));
      for (const auto& c : r->candidates) {
        std::cout << fmt::format("  {:<24} {:.3f}{}\n", c.user, c.score,
                                 c.score >= r->threshold ? "  (above threshold)" : "");
      }
    }
  }
  ctx.emit_json({{"ok", batch.failed == 0},
                 {"match", batch.exit_code == kExitOk},
                 {"error", batch.error_json()},
                 {"results", results}});
  if (!ctx.json && batch.failed > 0) {
    std::cerr << batch.summary(paths.size());
  }
  return batch.exit_code;
}

}  // namespace

struct FaceOptions {
  std::string user;
  std::vector<std::string> images;
  bool add = false;
  std::size_t top_k = 3;
};

void register_face_commands(CLI::App& app, Context& ctx, int& exit_code) {
  auto enroll_opts = std::make_shared<FaceOptions>();
  auto* enroll = app.add_subcommand("enroll", "Enrol a user from one or more face images");
  enroll->alias("enrol");  // the British spelling the docs use
  enroll->add_option("--user", enroll_opts->user, "User name")->required();
  enroll->add_flag("--add", enroll_opts->add,
                   "Add faces to an existing user instead of creating one");
  enroll->add_option("images", enroll_opts->images, "JPEG or PNG images, one face each")
      ->required()
      ->check(CLI::ExistingFile);
  enroll->callback([&ctx, &exit_code, o = enroll_opts] {
    exit_code = run_enroll(ctx, o->user, o->images, o->add);
  });

  auto verify_opts = std::make_shared<FaceOptions>();
  auto* verify = app.add_subcommand("verify", "Check that images show an enrolled user (1:1)");
  verify->add_option("--user", verify_opts->user, "User name")->required();
  verify->add_option("images", verify_opts->images, "JPEG or PNG images")
      ->required()
      ->check(CLI::ExistingFile);
  verify->callback([&ctx, &exit_code, o = verify_opts] {
    exit_code = run_verify(ctx, o->user, o->images);
  });

  auto identify_opts = std::make_shared<FaceOptions>();
  auto* identify =
      app.add_subcommand("identify", "Find who images show among enrolled users (1:N)");
  identify->add_option("--top", identify_opts->top_k, "How many candidates to list")
      ->check(CLI::Range(1, 100));
  identify->add_option("images", identify_opts->images, "JPEG or PNG images")
      ->required()
      ->check(CLI::ExistingFile);
  identify->callback([&ctx, &exit_code, o = identify_opts] {
    exit_code = run_identify(ctx, o->images, o->top_k);
  });
}

}  // namespace facelogin::cli
