// facelogin: the command line. Each subcommand lives in a cmd_*.cpp file; this file only parses
// the global options and dispatches.

#include <cstdlib>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "cli/context.h"
#include "facelogin/models.h"

namespace {

std::filesystem::path default_home() {
  if (const char* env = std::getenv("FACELOGIN_HOME"); env != nullptr && *env != '\0') {
    return env;
  }
  if (const char* xdg = std::getenv("XDG_DATA_HOME"); xdg != nullptr && *xdg != '\0') {
    return std::filesystem::path(xdg) / "facelogin";
  }
  if (const char* home = std::getenv("HOME"); home != nullptr && *home != '\0') {
    return std::filesystem::path(home) / ".local/share/facelogin";
  }
  return ".facelogin";
}

}  // namespace

int main(int argc, char** argv) {
  using facelogin::cli::Context;
  Context ctx;
  ctx.home = default_home();
  int exit_code = facelogin::cli::kExitOk;

  CLI::App app{"facelogin: face login. Enrol faces, verify and identify them, evaluate and "
               "benchmark the recogniser."};
  app.require_subcommand(1);
  // Global options are taken after the subcommand too (`users list --json`): set before the
  // subcommands are made, which inherit it.
  app.fallthrough();
  app.set_version_flag("--version", std::string("facelogin ") + FACELOGIN_VERSION);
  app.add_option("--home", ctx.home, "Where the database and key live (env FACELOGIN_HOME)");
  app.add_option("--models", ctx.models, "Model directory (env FACELOGIN_MODEL_DIR)");
  // Options whose default comes from the environment; the command line wins.
  const auto from_env = [](const char* name, std::string& value) {
    if (const char* env = std::getenv(name); env != nullptr && *env != '\0') {
      value = env;
    }
  };
  from_env("FACELOGIN_DATABASE", ctx.database);
  app.add_option("--database", ctx.database,
                 "PostgreSQL connection (\"postgresql://user@host/db\" or \"host=... dbname=...\"; "
                 "env FACELOGIN_DATABASE) instead of the SQLite file in --home; the template key "
                 "still comes from --home or FACELOGIN_KEY");
  from_env("FACELOGIN_DATABASE_SCHEMA", ctx.database_schema);
  app.add_option("--database-schema", ctx.database_schema,
                 "Schema of --database that holds facelogin's tables (default facelogin; env "
                 "FACELOGIN_DATABASE_SCHEMA), so that several installations can share one "
                 "database");
  app.add_option("--recognizer", ctx.recognizer,
                 fmt::format("Recogniser id (see `models list`; default: the one the enrolled "
                             "users' templates were made with, else {})",
                             facelogin::default_recognizer_id()));
  app.add_option("--detector", ctx.detector,
                 "Detector id (see `models list`; default: YuNet when present, else the npm "
                 "fallback)");
  app.add_option("--threshold", ctx.threshold,
                 "Decision threshold (cosine) instead of the recogniser's calibrated default");
  app.add_flag("--json", ctx.json, "Machine-readable output on stdout");
  app.add_flag("--no-quality", ctx.no_quality,
               "Accept faces that fail the quality gate (for datasets; not for logins)");
  app.add_flag("--no-population-threshold", ctx.no_population_threshold,
               "Decide at the recogniser's threshold (or --threshold) alone, not raised to what "
               "the enrolled people need for FMR 1e-5 (`users calibration` shows both)");
  app.add_flag("--no-early-decision", ctx.no_early_decision,
               "Decide every comparison on the full template (exact scores; about twice the "
               "embedding time of a clear decision)");

  facelogin::cli::register_face_commands(app, ctx, exit_code);
  facelogin::cli::register_admin_commands(app, ctx, exit_code);
  facelogin::cli::register_eval_commands(app, ctx, exit_code);
  facelogin::cli::register_bench_command(app, ctx, exit_code);
  facelogin::cli::register_liveness_commands(app, ctx, exit_code);
  facelogin::cli::register_serve_command(app, ctx, exit_code);
  facelogin::cli::register_loadtest_command(app, ctx, exit_code);

  // `facelogin help [COMMAND...]`, as `--help` of that command.
  auto topic = std::make_shared<std::vector<std::string>>();
  auto* help = app.add_subcommand("help", "Show the help of facelogin or of one of its commands");
  help->add_option("command", *topic, "A command and its subcommands (`help users list`)");
  help->callback([&app, &exit_code, topic] {
    const CLI::App* at = &app;
    std::string parents;  // "facelogin users" for `help users list`, as --help would say
    for (const std::string& name : *topic) {
      parents += parents.empty() ? std::string("facelogin") : " " + at->get_name();
      const CLI::App* next = nullptr;
      for (const CLI::App* sub : at->get_subcommands([](const CLI::App*) { return true; })) {
        if (sub->check_name(name)) {
          next = sub;
        }
      }
      if (next == nullptr) {
        std::cerr << "facelogin: no command '" << name << "'"
                  << (at == &app ? std::string() : " under '" + at->get_name() + "'")
                  << ": see `facelogin help`\n";
        exit_code = facelogin::cli::kExitUsage;
        return;
      }
      at = next;
    }
    // The formatter, not App::help(), which would describe the selected subcommand (`help`).
    const std::string usage = at == &app ? "facelogin" : parents + " " + at->get_name();
    std::cout << at->get_formatter()->make_help(at, usage, CLI::AppFormatMode::Normal);
  });

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int code = app.exit(e);
    return code == 0 ? 0 : facelogin::cli::kExitUsage;
  } catch (const std::exception& e) {
    // Nothing is expected to throw past the library's adapters; if something does, say so
    // plainly instead of aborting.
    std::cerr << "facelogin: internal error: " << e.what() << "\n";
    return facelogin::cli::kExitInternal;
  }
  return exit_code;
}
