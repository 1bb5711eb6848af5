// `facelogin loadtest`: the server under load on loopback, with real frames. It starts servers
// in this process (fresh temporary store, the configured workers) or, with --processes, as
// `facelogin serve` child processes on the same throw-away store; enrols one user through the
// API, measures the CPU time of one login, then runs concurrent clients through complete logins
// (every frame over HTTP) and reports logins per second, frame and login latency, errors, and
// the CPU-bound limit (cores / CPU time of one login) beside them. Bounded in count.

#include <fmt/format.h>
#include <sys/resource.h>

#include <algorithm>
#include <atomic>
#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <cmath>
#include <fstream>
#include <iostream>
#include <iterator>
#include <mutex>
#include <set>
#include <string_view>
#include <thread>

#include "cli/context.h"
#include "cli/serve_process.h"
#include "facelogin/auth.h"
#include "facelogin/auth_store.h"
#include "facelogin/postgres_store.h"
#include "facelogin/liveness.h"
#include "facelogin/server.h"

namespace facelogin::cli {
namespace {

namespace beast = boost::beast;
namespace http = beast::http;
namespace net = boost::asio;
using Clock = std::chrono::steady_clock;
using json = nlohmann::json;

struct LoadArgs {
  std::vector<std::string> enrol;
  std::vector<std::string> login;
  int clients = 2;
  int logins = 20;
  int workers = 0;
  int servers = 1;
  bool processes = false;  // each server a `facelogin serve` child process
  std::string liveness = "passive";
};

// One keep-alive connection to the server.
class Client {
 public:
  Client(std::uint16_t port, std::string api_key) : stream_(ioc_), api_key_(std::move(api_key)) {
    stream_.connect(net::ip::tcp::endpoint(net::ip::make_address("127.0.0.1"), port));
  }

  // status and parsed body (null when not JSON).
  std::pair<unsigned, json> call(http::verb method, const std::string& target,
                                 const std::string& body, const std::string& type,
                                 const std::string& nonce = "") {
    http::request<http::string_body> req(method, target, 11);
    req.set(http::field::host, "127.0.0.1");
    req.keep_alive(true);
    if (!type.empty()) {
      req.set(http::field::content_type, type);
    }
    if (!nonce.empty()) {
      req.set("X-Attempt-Nonce", nonce);
    }
    req.set("X-API-Key", api_key_);
    req.body() = body;
    req.prepare_payload();
    http::write(stream_, req);
    http::response<http::string_body> res;
    http::read(stream_, buffer_, res);
    return {res.result_int(), json::parse(res.body(), nullptr, false)};
  }

 private:
  net::io_context ioc_;
  beast::tcp_stream stream_;
  beast::flat_buffer buffer_;
  std::string api_key_;  // the load test is an application with bearer sessions
};

std::string read_all(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

double cpu_seconds() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  const auto s = [](const timeval& t) { return t.tv_sec + t.tv_usec / 1e6; };
  return s(usage.ru_utime) + s(usage.ru_stime);
}

double percentile(std::vector<double> v, double q) {
  if (v.empty()) {
    return 0;
  }
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<std::size_t>(q * static_cast<double>(v.size())))];
}

struct LoginOutcome {
  bool accepted = false;
  std::string error;  // empty when the login ran without an HTTP error
  std::vector<double> frame_ms;
  double total_ms = 0;
  int busy = 0;  // 503 answers (retried)
};

LoginOutcome one_login(Client& client, const std::vector<std::string>& frames) {
  LoginOutcome out;
  const auto t0 = Clock::now();
  auto [status, start] =
      client.call(http::verb::post, "/api/v1/login/attempts",
                  json{{"user", "loadtest"}, {"session", "bearer"}}.dump(), "application/json");
  if (status != 201) {
    out.error = fmt::format("start: HTTP {}", status);
    return out;
  }
  const std::string target =
      fmt::format("/api/v1/login/attempts/{}/frames", start["id"].get<std::string>());
  const std::string nonce = start["nonce"];
  for (std::size_t i = 0; i < 4 * frames.size(); ++i) {
    const auto f0 = Clock::now();
    auto [code, body] =
        client.call(http::verb::post, target, frames[i % frames.size()], "image/jpeg", nonce);
    if (code == 503) {
      // Saturated: a real client waits as told (Retry-After: 1) and sends the frame again.
      ++out.busy;
      --i;
      std::this_thread::sleep_for(std::chrono::seconds(1));
      continue;
    }
    out.frame_ms.push_back(std::chrono::duration<double, std::milli>(Clock::now() - f0).count());
    if (code != 200) {
      out.error = fmt::format("frame: HTTP {}", code);
      return out;
    }
    const std::string state = body.value("state", "");
    if (state != "pending") {
      out.accepted = state == "accepted";
      if (!out.accepted) {
        out.error = fmt::format("refused: {}", body.value("reason", ""));
      }
      break;
    }
  }
  out.total_ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
  return out;
}

// The load test is an application: it uses bearer sessions with its own API key, created here.
Result<std::string> create_loadtest_key(AuthStore& auth_store) {
  auto api_key = new_api_key();
  if (!api_key) {
    return make_error(api_key.error());
  }
  ApiKeyRecord key_record;
  key_record.name = "loadtest";
  key_record.scopes = {"login", "enroll"};
  if (auto id = auth_store.create_api_key(key_record, token_hash(*api_key)); !id) {
    return make_error(id.error());
  }
  return api_key;
}

// Our environment without the variables that would send a child server elsewhere than the
// command line the load test gives it (another data directory, database, schema, configuration,
// address, web directory or TLS). FACELOGIN_KEY stays: the parent read the same template key.
std::vector<std::string> child_environment() {
  static const std::set<std::string, std::less<>> kDropped = {
      "FACELOGIN_HOME",     "FACELOGIN_DATA",   "FACELOGIN_DATABASE", "FACELOGIN_DATABASE_SCHEMA",
      "FACELOGIN_CONFIG",   "FACELOGIN_LISTEN", "FACELOGIN_WEB_DIR",  "FACELOGIN_LIVENESS",
      "FACELOGIN_TLS_CERT", "FACELOGIN_TLS_KEY"};
  std::vector<std::string> env;
  for (char** entry = environ; *entry != nullptr; ++entry) {
    const std::string_view text(*entry);
    if (!kDropped.contains(text.substr(0, text.find('=')))) {
      env.emplace_back(text);
    }
  }
  return env;
}

// With --processes: creates the throw-away database the way the CLI does (SQLite file and
// template key file in `dir`, or `pg`'s schema with the key file in `dir`), creates the API key
// there, then starts `args.servers` `facelogin serve` processes of this binary on it, one after
// the other, each listening on a free loopback port.
Status start_server_processes(const Context& ctx, const LoadArgs& args,
                              const std::filesystem::path& dir, const PostgresOptions& pg,
                              std::string* api_key,
                              std::vector<std::unique_ptr<ServeProcess>>* children) {
  {
    Context store_ctx = ctx;
    store_ctx.home = dir;
    if (!pg.conninfo.empty()) {
      store_ctx.database_schema = pg.schema;
    }
    // open_store() creates and migrates the database and writes dir/template.key (0600), which
    // the children read from their --home; with FACELOGIN_KEY set, they inherit that instead.
    auto store = store_ctx.open_store();
    if (!store) {
      return store.error();
    }
    auto auth_store = store_ctx.open_auth_store();
    if (!auth_store) {
      return auth_store.error();
    }
    auto key = create_loadtest_key(**auth_store);
    if (!key) {
      return key.error();
    }
    *api_key = std::move(*key);
  }  // our connections close before the children open theirs

  // What serve takes only from a configuration file: the in-process servers' start limit (as
  // high as the file allows; one address is every client here) and no web app, as in-process.
  // serve has neither an option nor a key for max_frames_per_flow: its default applies (checked
  // against the frames by the caller).
  const std::filesystem::path config = dir / "serve.toml";
  {
    std::ofstream out(config);
    out << "# Written by `facelogin loadtest --processes` for its servers.\n"
           "web = \"\"\n"
           "[limits]\n"
           "starts_per_minute = 100000\n";
    if (!out.flush()) {
      return Status(ErrorCode::kIoError, fmt::format("cannot write {}", config.string()));
    }
  }
  std::error_code ec;
  const std::filesystem::path self = std::filesystem::read_symlink("/proc/self/exe", ec);
  if (ec) {
    return Status(ErrorCode::kIoError,
                  fmt::format("cannot find this program (/proc/self/exe): {}", ec.message()));
  }
  std::vector<std::string> command = {"--home", dir.string()};
  if (!pg.conninfo.empty()) {
    command.insert(command.end(), {"--database", pg.conninfo, "--database-schema", pg.schema});
  }
  if (!ctx.models.empty()) {
    command.insert(command.end(), {"--models", ctx.models.string()});
  }
  if (!ctx.recognizer.empty()) {
    command.insert(command.end(), {"--recognizer", ctx.recognizer});
  }
  if (!ctx.detector.empty()) {
    command.insert(command.end(), {"--detector", ctx.detector});
  }
  if (!std::isnan(ctx.threshold)) {
    command.insert(command.end(), {"--threshold", fmt::format("{}", ctx.threshold)});
  }
  if (ctx.no_early_decision) {
    command.emplace_back("--no-early-decision");
  }
  command.insert(command.end(), {"--json", "serve", "--config", config.string(), "--listen",
                                 "127.0.0.1:0", "--data", dir.string(), "--workers",
                                 std::to_string(args.workers), "--liveness", args.liveness});
  const std::vector<std::string> env = child_environment();
  for (int i = 0; i < args.servers; ++i) {
    // Loading the models takes seconds; a minute means something is wrong.
    auto child = ServeProcess::start(self, command, env, dir / fmt::format("serve-{}.log", i),
                                     std::chrono::seconds(60));
    if (!child) {
      return child.error();
    }
    children->push_back(std::move(*child));
  }
  return Status::Ok();
}

int run_loadtest(Context& ctx, const LoadArgs& args) {
  if (args.enrol.empty() || args.login.empty()) {
    return ctx.fail(Status(ErrorCode::kInvalidArgument, "--enrol and --login frames are needed"));
  }
  std::vector<std::string> enrol_frames;
  std::vector<std::string> login_frames;
  for (const auto& f : args.enrol) {
    enrol_frames.push_back(read_all(f));
  }
  for (const auto& f : args.login) {
    login_frames.push_back(read_all(f));
  }
  if (args.processes) {
    // A served enrolment or attempt takes at most this many frames (retries of a 503 included),
    // and serve cannot raise it; a login here may send its frames up to 4 times.
    const std::size_t per_flow = static_cast<std::size_t>(ServerOptions{}.max_frames_per_flow);
    if (enrol_frames.size() > per_flow || 4 * login_frames.size() > per_flow) {
      return ctx.fail(Status(
          ErrorCode::kInvalidArgument,
          fmt::format("with --processes, at most {} --enrol frames and {} --login frames (serve "
                      "takes at most {} frames per enrolment or login attempt)",
                      per_flow, per_flow / 4, per_flow)));
    }
  }

  auto scratch = ScratchDir::make("facelogin-loadtest");
  if (!scratch) {
    return ctx.fail(scratch.error());
  }
  const std::filesystem::path dir = (*scratch)->path();
  // A throw-away database: a SQLite file in the temporary directory, or (with --database) a
  // fresh schema of that PostgreSQL database, dropped at the end.
  const std::string key(32, '\x5a');
  PostgresOptions pg;
  if (!ctx.database.empty()) {
    if (!is_postgres_conninfo(ctx.database)) {
      return ctx.fail(Status(ErrorCode::kInvalidArgument,
                             "--database must be a PostgreSQL connection string"));
    }
    pg.conninfo = ctx.database;
    pg.schema = fmt::format("facelogin_loadtest_{}", ::getpid());
    pg.key = key;
    pg.pool_size = 2 * std::max(1, args.workers > 0 ? args.workers : static_cast<int>(std::thread::hardware_concurrency()));
  }
  struct DropSchema {
    const PostgresOptions* pg;
    ~DropSchema() {
      if (!pg->conninfo.empty()) {
        (void)drop_postgres_schema(*pg);
      }
    }
  } drop_schema{&pg};
  // Declared after the schema and the directory, so that every server ends before they go.
  std::vector<std::unique_ptr<ServeProcess>> children;
  struct StopChildren {
    std::vector<std::unique_ptr<ServeProcess>>* children;
    ~StopChildren() { (void)stop_all(*children); }  // on every way out; a no-op once stopped
  } stop_children{&children};
  std::vector<std::unique_ptr<Store>> stores;
  std::vector<std::unique_ptr<AuthStore>> auth_stores;
  std::vector<std::unique_ptr<Server>> servers;
  std::vector<std::uint16_t> ports;
  std::string api_key;

  if (args.processes) {
    if (Status s = start_server_processes(ctx, args, dir, pg, &api_key, &children); !s.ok()) {
      return ctx.fail(s);
    }
    for (const auto& child : children) {
      ports.push_back(child->port());
    }
  } else {
    auto engine = ctx.open_engine();
    if (!engine) {
      return ctx.fail(engine.error());
    }
    // Each server has its own stores (own connections), as separate processes would.
    for (int i = 0; i < args.servers; ++i) {
      Result<std::unique_ptr<Store>> store = make_error(ErrorCode::kInternal, "unset");
      Result<std::unique_ptr<AuthStore>> auth = make_error(ErrorCode::kInternal, "unset");
      if (pg.conninfo.empty()) {
        SqliteStoreOptions store_options;
        store_options.key = key;
        store = open_sqlite_store(dir / "facelogin.db", store_options);
        auth = open_sqlite_auth_store(dir / "facelogin.db");
      } else {
        store = open_postgres_store(pg);
        auth = open_postgres_auth_store(pg);
      }
      if (!store) {
        return ctx.fail(store.error());
      }
      if (!auth) {
        return ctx.fail(auth.error());
      }
      stores.push_back(std::move(*store));
      auth_stores.push_back(std::move(*auth));
    }
    ServerOptions options;
    options.port = 0;
    options.workers = args.workers;
    options.starts_per_minute = 1'000'000;  // one address is every client here
    options.max_frames_per_flow = 1000;
    options.login.liveness.policy = *parse_liveness_policy(args.liveness);  // checked by CLI11
    ServerDeps deps;
    deps.engine = *engine;
    deps.service.threshold_override = ctx.threshold;
    deps.service.early_decision = !ctx.no_early_decision;
    deps.service.population_threshold = !ctx.no_population_threshold;
    if (options.login.liveness.policy != LivenessPolicy::kOff) {
      auto liveness = LivenessModels::load(ctx.models);
      if (!liveness) {
        return ctx.fail(liveness.error());
      }
      deps.liveness = *liveness;
    }
    for (int i = 0; i < args.servers; ++i) {
      deps.store = stores[static_cast<std::size_t>(i)].get();
      deps.auth_store = auth_stores[static_cast<std::size_t>(i)].get();
      auto server = Server::start(options, deps);
      if (!server) {
        return ctx.fail(server.error());
      }
      ports.push_back((*server)->port());
      servers.push_back(std::move(*server));
    }
    auto created = create_loadtest_key(*auth_stores.front());
    if (!created) {
      return ctx.fail(created.error());
    }
    api_key = std::move(*created);
  }
  const std::uint16_t port = ports.front();
  // CPU time so far of this process (the clients, and the servers when they run in it) and of
  // the server processes.
  const auto cpu_now = [&children]() -> Result<double> {
    double total = cpu_seconds();
    for (const auto& child : children) {
      auto child_cpu = child->cpu_seconds();
      if (!child_cpu) {
        return child_cpu;
      }
      total += *child_cpu;
    }
    return total;
  };

  // Enrol through the API.
  {
    Client client(port, api_key);
    auto [status, start] =
        client.call(http::verb::post, "/api/v1/enrollments",
                    json{{"user", "loadtest"}, {"session", "bearer"}}.dump(), "application/json");
    if (status != 201) {
      return ctx.fail(
          Status(ErrorCode::kInternal, fmt::format("enrolment start: HTTP {}", status)));
    }
    const std::string id = start["id"];
    bool ready = false;
    for (const auto& frame : enrol_frames) {
      auto [code, body] = client.call(http::verb::post, "/api/v1/enrollments/" + id + "/frames",
                                      frame, "image/jpeg");
      if (code == 200 && body.value("ready", false)) {
        ready = true;
        break;
      }
    }
    auto [code, done] =
        client.call(http::verb::post, "/api/v1/enrollments/" + id + "/finish", "", "");
    if (!ready || code != 201) {
      return ctx.fail(Status(ErrorCode::kInvalidArgument,
                             fmt::format("the --enrol frames did not make an enrolment (HTTP {}: "
                                         "{})",
                                         code, done.dump())));
    }
  }

  // CPU time of one login, alone (client and server together, the client's share is small;
  // with --processes, this process's and the server processes' CPU added up).
  constexpr int kCalibrationLogins = 3;
  double cpu_per_login = 0;
  double frames_per_login = 0;
  {
    Client client(port, api_key);
    (void)one_login(client, login_frames);  // warm-up
    const Result<double> c0 = cpu_now();
    if (!c0) {
      return ctx.fail(c0.error());
    }
    for (int i = 0; i < kCalibrationLogins; ++i) {
      LoginOutcome o = one_login(client, login_frames);
      if (!o.accepted) {
        return ctx.fail(Status(ErrorCode::kInvalidArgument,
                               fmt::format("the --login frames do not log in: {}", o.error)));
      }
      frames_per_login += static_cast<double>(o.frame_ms.size()) / kCalibrationLogins;
    }
    const Result<double> c1 = cpu_now();
    if (!c1) {
      return ctx.fail(c1.error());
    }
    cpu_per_login = (*c1 - *c0) / kCalibrationLogins;
  }
  const unsigned cores = std::max(1u, std::thread::hardware_concurrency());
  const double limit = cores / cpu_per_login;

  // The load: `clients` threads, `logins` logins in all.
  std::atomic<int> next{0};
  std::mutex mu;
  std::vector<double> frame_ms;
  std::vector<double> login_ms;
  int accepted = 0;
  int busy = 0;
  std::map<std::string, int> errors;
  const auto t0 = Clock::now();
  std::vector<std::thread> threads;
  for (int c = 0; c < args.clients; ++c) {
    threads.emplace_back([&, c] {
      try {
        // Clients spread over the servers, as a load balancer would.
        Client client(ports[static_cast<std::size_t>(c) % ports.size()], api_key);
        while (next.fetch_add(1) < args.logins) {
          LoginOutcome o = one_login(client, login_frames);
          std::lock_guard lock(mu);
          frame_ms.insert(frame_ms.end(), o.frame_ms.begin(), o.frame_ms.end());
          busy += o.busy;
          if (o.accepted) {
            ++accepted;
            login_ms.push_back(o.total_ms);
          } else {
            ++errors[o.error];
          }
        }
      } catch (const std::exception& e) {
        std::lock_guard lock(mu);
        ++errors[fmt::format("connection: {}", e.what())];
      }
    });
  }
  for (auto& t : threads) {
    t.join();
  }
  const double wall = std::chrono::duration<double>(Clock::now() - t0).count();
  for (auto& server : servers) {
    server->stop();
  }
  // A server process that crashed or would not stop is an error of the run.
  for (const Status& s : stop_all(children)) {
    ++errors[s.message()];
  }

  int error_count = 0;
  for (const auto& [what, n] : errors) {
    error_count += n;
  }
  const double rate = accepted / wall;
  json doc = {
      {"clients", args.clients},
      {"logins", args.logins},
      {"accepted", accepted},
      {"errors", error_count},
      {"busy_retries", busy},
      {"error_kinds", errors},
      {"seconds", wall},
      {"logins_per_s", rate},
      {"frames_per_login", frames_per_login},
      {"frame_ms", {{"p50", percentile(frame_ms, 0.5)}, {"p99", percentile(frame_ms, 0.99)}}},
      {"login_ms", {{"p50", percentile(login_ms, 0.5)}, {"p99", percentile(login_ms, 0.99)}}},
      {"cpu_s_per_login", cpu_per_login},
      {"cores", cores},
      {"cpu_bound_logins_per_s", limit},
      {"share_of_limit", rate / limit},
      {"liveness", args.liveness},
      {"servers", args.servers},
      {"processes", args.processes},
      {"database", pg.conninfo.empty() ? "sqlite" : "postgresql"}};
  if (ctx.json) {
    ctx.emit_json(doc);
  } else {
    std::cout << fmt::format(
        "loadtest: {} clients, {} logins over HTTP on loopback, {} {} on {} (liveness {})\n"
        "  accepted {} · errors {} · 503 busy (retried) {} · {:.1f} s\n"
        "  logins/s {:.2f}   CPU-bound limit {:.2f} ({} cores / {:.3f} CPU s per login) -> "
        "{:.0f}% of it\n"
        "  frame latency p50 {:.1f} ms  p99 {:.1f} ms · login p50 {:.0f} ms  p99 {:.0f} ms "
        "({:.1f} frames per login)\n",
        args.clients, args.logins, args.servers,
        args.processes ? "server process(es)" : "in-process server(s)",
        pg.conninfo.empty() ? "SQLite" : "PostgreSQL", args.liveness, accepted, error_count, busy,
        wall, rate, limit, cores, cpu_per_login, 100 * rate / limit, percentile(frame_ms, 0.5),
        percentile(frame_ms, 0.99), percentile(login_ms, 0.5), percentile(login_ms, 0.99),
        frames_per_login);
    for (const auto& [what, n] : errors) {
      std::cout << fmt::format("  error x{}: {}\n", n, what);
    }
  }
  return error_count == 0 ? kExitOk : kExitInternal;
}

}  // namespace

void register_loadtest_command(CLI::App& app, Context& ctx, int& exit_code) {
  auto args = std::make_shared<LoadArgs>();
  CLI::App* cmd = app.add_subcommand(
      "loadtest", "Logins per second and latency of the server on loopback, with real frames");
  cmd->add_option("--enrol", args->enrol, "JPEG frames of one person to enrol (in order)")
      ->required()
      ->check(CLI::ExistingFile);
  cmd->add_option("--login", args->login, "JPEG frames of the same person to log in with")
      ->required()
      ->check(CLI::ExistingFile);
  cmd->add_option("--clients", args->clients, "Concurrent clients")->check(CLI::Range(1, 64));
  cmd->add_option("--logins", args->logins, "Logins in all")->check(CLI::Range(1, 10000));
  cmd->add_option("--workers", args->workers, "Server workers (default: one per core)")
      ->check(CLI::Range(0, 64));
  cmd->add_option("--servers", args->servers,
                  "Servers on the one database (each with its own stores and workers, in this "
                  "process or, with --processes, as child processes); clients are spread over "
                  "them. With --database, a fresh schema of that PostgreSQL")
      ->check(CLI::Range(1, 8));
  cmd->add_flag("--processes", args->processes,
                "Run each server as a `facelogin serve` child process of this binary (on the "
                "same throw-away database and template key) instead of inside this process");
  cmd->add_option("--liveness", args->liveness, "Liveness policy")
      ->check(CLI::IsMember({"passive", "off"}));
  cmd->callback([&ctx, &exit_code, args] { exit_code = run_loadtest(ctx, *args); });
}

}  // namespace facelogin::cli
