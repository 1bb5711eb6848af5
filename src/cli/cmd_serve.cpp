// `facelogin serve`: the login server and web app.

#include <fmt/format.h>

#include <cmath>
#include <pthread.h>
#include <signal.h>

#include <charconv>
#include <iostream>
#include <map>

#include "cli/context.h"
#include "facelogin/auth_store.h"
#include "facelogin/liveness.h"
#include "facelogin/server.h"

namespace facelogin::cli {
namespace {

struct ServeArgs {
  std::filesystem::path config;
  std::string listen = "127.0.0.1:8080";
  std::filesystem::path data;
  std::filesystem::path web = FACELOGIN_WEB_DIR;
  int workers = 0;
  std::string liveness = "adaptive";
  std::filesystem::path tls_cert;
  std::filesystem::path tls_key;
  std::vector<std::string> trusted_proxies;
  bool secure_cookies = false;
  bool closed_registration = false;
  int enroll_frames = 5;
  // Which options the command line (or their environment variables) set: those override the
  // configuration file; the others keep its values or the defaults.
  std::map<std::string, CLI::Option*> given;
  bool set(const std::string& name) const {
    auto it = given.find(name);
    return it != given.end() && it->second->count() > 0;
  }
};

int run_serve(Context& ctx, const ServeArgs& args) {
  ServerOptions options;
  options.web_dir = args.web;
  if (!args.config.empty()) {
    std::filesystem::path data;
    std::string database;
    std::string database_schema;
    if (Status s =
            apply_server_config(args.config, &options, &data, &database, &database_schema);
        !s.ok()) {
      return ctx.fail(s);
    }
    if (!data.empty()) {
      ctx.home = data;
    }
    if (ctx.database.empty()) {  // --database and FACELOGIN_DATABASE win over the file
      ctx.database = database;
    }
    if (ctx.database_schema.empty()) {  // so do --database-schema and its variable
      ctx.database_schema = database_schema;
    }
  }
  if (args.set("--listen") || args.config.empty()) {
    if (Status s = parse_listen_address(args.listen, &options); !s.ok()) {
      return ctx.fail(s);
    }
  }
  if (args.set("--data")) {
    ctx.home = args.data;
  }
  if (args.set("--web")) {
    options.web_dir = args.web;
  }
  if (args.set("--workers")) {
    options.workers = args.workers;
  }
  if (args.set("--trusted-proxy")) {
    options.trusted_proxies = args.trusted_proxies;
  }
  if (args.set("--secure-cookies")) {
    options.secure_cookies = args.secure_cookies;
  }
  if (args.set("--tls-cert")) {
    options.tls_cert_file = args.tls_cert;
  }
  if (args.set("--tls-key")) {
    options.tls_key_file = args.tls_key;
  }
  if (args.set("--closed-registration")) {
    options.open_registration = !args.closed_registration;
  }
  if (args.set("--enroll-frames")) {
    options.enroll_frames_needed = args.enroll_frames;
  }
  if (args.set("--liveness")) {
    options.login.liveness.policy = *parse_liveness_policy(args.liveness);  // checked by CLI11
  }
  const std::string policy_name(liveness_policy_name(options.login.liveness.policy));

  auto store = ctx.open_store();
  if (!store) {
    return ctx.fail(store.error());
  }
  auto engine = ctx.open_engine_for(**store);
  if (!engine) {
    return ctx.fail(engine.error());
  }
  auto auth_store = ctx.open_auth_store();
  if (!auth_store) {
    return ctx.fail(auth_store.error());
  }
  ServerDeps deps;
  deps.engine = *engine;
  deps.store = store->get();
  deps.auth_store = auth_store->get();
  deps.service.analyze.enforce_quality = true;
  // --threshold and --no-population-threshold (before or after `serve`) win over [recognition].
  deps.service.threshold_override = std::isnan(ctx.threshold) ? options.threshold : ctx.threshold;
  deps.service.early_decision = !ctx.no_early_decision;
  deps.service.population_threshold = options.population_threshold && !ctx.no_population_threshold;
  // Loaded even under policy off when present: an API key may ask for liveness.
  if (auto liveness = LivenessModels::load(ctx.models)) {
    deps.liveness = *liveness;
  } else if (options.login.liveness.policy != LivenessPolicy::kOff) {
    return ctx.fail(liveness.error());
  }

  // SIGINT and SIGTERM end the server cleanly: blocked in every thread, taken by sigwait here.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  // For the banner: the base threshold, and whether the enrolled population may raise it.
  const std::string threshold_text = fmt::format(
      "{:.4f}{}",
      std::isnan(deps.service.threshold_override) ? (*engine)->recognizer().threshold
                                                  : deps.service.threshold_override,
      deps.service.population_threshold ? " raised by the population" : "");
  auto server = Server::start(options, std::move(deps));
  if (!server) {
    return ctx.fail(server.error());
  }
  const std::string url = fmt::format(
      "{}://{}:{}/", options.tls_cert_file.empty() ? "http" : "https",
      options.host.find(':') != std::string::npos ? "[" + options.host + "]" : options.host,
      (*server)->port());
  if (ctx.json) {
    ctx.emit_json({{"listening", url}, {"port", (*server)->port()}});
  } else {
    fmt::print("facelogin serve: listening on {} (recogniser {}, threshold {}, liveness {}, "
               "data {})\n",
               url, (*engine)->recognizer().id, threshold_text, policy_name, ctx.home.string());
  }
  std::cout.flush();
  std::fflush(stdout);
  int signal = 0;
  sigwait(&signals, &signal);
  fmt::print(stderr, "facelogin serve: stopping ({})\n", signal == SIGINT ? "SIGINT" : "SIGTERM");
  (*server)->stop();
  return kExitOk;
}

}  // namespace

void register_serve_command(CLI::App& app, Context& ctx, int& exit_code) {
  auto args = std::make_shared<ServeArgs>();
  CLI::App* cmd = app.add_subcommand(
      "serve", "Run the login server and web app (REST API under /api/v1, see docs/server.md)");
  cmd->add_option("--config", args->config,
                  "TOML configuration file (docs/server.md); options given here override it")
      ->envname("FACELOGIN_CONFIG")
      ->check(CLI::ExistingFile);
  args->given["--listen"] =
      cmd->add_option("--listen", args->listen, "HOST:PORT to listen on (default 127.0.0.1:8080)")
          ->envname("FACELOGIN_LISTEN");
  args->given["--data"] =
      cmd->add_option("--data", args->data, "Directory of the database and key (default: --home)")
          ->envname("FACELOGIN_DATA");
  args->given["--web"] = cmd->add_option("--web", args->web, "Directory of the web app's files")
                             ->envname("FACELOGIN_WEB_DIR");
  args->given["--workers"] =
      cmd->add_option("--workers", args->workers, "Recognition workers (default: one per core)")
          ->check(CLI::Range(0, 256));
  args->given["--liveness"] =
      cmd->add_option("--liveness", args->liveness, "Liveness policy for logins and enrolments")
          ->check(CLI::IsMember({"adaptive", "passive", "active", "off"}))
          ->envname("FACELOGIN_LIVENESS");
  args->given["--enroll-frames"] =
      cmd->add_option("--enroll-frames", args->enroll_frames, "Good frames an enrolment needs")
          ->check(CLI::Range(1, 30));
  args->given["--tls-cert"] =
      cmd->add_option(
             "--tls-cert", args->tls_cert,
             "PEM certificate chain: serve HTTPS (browsers allow the camera only over HTTPS "
             "or on localhost)")
          ->envname("FACELOGIN_TLS_CERT")
          ->check(CLI::ExistingFile);
  args->given["--tls-key"] =
      cmd->add_option("--tls-key", args->tls_key, "PEM private key of --tls-cert")
          ->envname("FACELOGIN_TLS_KEY")
          ->check(CLI::ExistingFile);
  args->given["--trusted-proxy"] =
      cmd->add_option("--trusted-proxy", args->trusted_proxies,
                      "IP address of a reverse proxy whose X-Forwarded-For names the client "
                      "(repeat for several)");
  args->given["--secure-cookies"] = cmd->add_flag(
      "--secure-cookies", args->secure_cookies,
      "Clients reach the server over HTTPS (a TLS proxy in front): Secure cookies, HSTS");
  args->given["--closed-registration"] =
      cmd->add_flag("--closed-registration", args->closed_registration,
                    "Do not let visitors create accounts (enrol them with `facelogin enroll`)");
  cmd->callback([&ctx, &exit_code, args] { exit_code = run_serve(ctx, *args); });
}

}  // namespace facelogin::cli
