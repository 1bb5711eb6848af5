#include "cli/serve_process.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstring>
#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

namespace facelogin::cli {
namespace {

using Clock = std::chrono::steady_clock;

std::string errno_text() { return std::strerror(errno); }

// The code whose error_code_name() is `name` (a child's JSON error), kUnavailable if none is.
ErrorCode code_named(const std::string& name) {
  for (int c = static_cast<int>(ErrorCode::kInvalidArgument);
       c <= static_cast<int>(ErrorCode::kInternal); ++c) {
    if (error_code_name(static_cast<ErrorCode>(c)) == name) {
      return static_cast<ErrorCode>(c);
    }
  }
  return ErrorCode::kUnavailable;
}

std::string describe_wait_status(int status) {
  if (WIFEXITED(status)) {
    return fmt::format("exited with status {}", WEXITSTATUS(status));
  }
  if (WIFSIGNALED(status)) {
    return fmt::format("was killed by signal {} ({})", WTERMSIG(status),
                       ::strsignal(WTERMSIG(status)));
  }
  return fmt::format("ended (wait status {})", status);
}

// Makes `fd` the child's descriptor `target`, open across exec. Async-signal-safe (runs between
// fork and exec).
void move_fd(int fd, int target) {
  if (fd == target) {
    ::fcntl(fd, F_SETFD, 0);
  } else {
    ::dup2(fd, target);
  }
}

std::vector<char*> c_strings(std::vector<std::string>& strings) {
  std::vector<char*> out;
  out.reserve(strings.size() + 1);
  for (auto& s : strings) {
    out.push_back(s.data());
  }
  out.push_back(nullptr);
  return out;
}

}  // namespace

Result<std::unique_ptr<ServeProcess>> ServeProcess::start(const std::filesystem::path& program,
                                                          const std::vector<std::string>& args,
                                                          const std::vector<std::string>& env,
                                                          const std::filesystem::path& log_file,
                                                          std::chrono::milliseconds timeout) {
  // Everything the child needs is prepared before fork: between fork and exec it may only make
  // async-signal-safe calls (the parent may have threads).
  std::vector<std::string> argv_strings = {"facelogin"};
  argv_strings.insert(argv_strings.end(), args.begin(), args.end());
  std::vector<std::string> env_strings = env;
  const std::vector<char*> argv = c_strings(argv_strings);
  const std::vector<char*> envp = c_strings(env_strings);
  const std::string program_path = program.string();

  const int log_fd = ::open(log_file.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (log_fd < 0) {
    return make_error(ErrorCode::kIoError,
                      fmt::format("cannot create {}: {}", log_file.string(), errno_text()));
  }
  const int null_fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  int out[2] = {-1, -1};
  if (null_fd < 0 || ::pipe2(out, O_CLOEXEC) != 0) {
    const std::string why = errno_text();
    ::close(log_fd);
    if (null_fd >= 0) {
      ::close(null_fd);
    }
    return make_error(ErrorCode::kIoError,
                      fmt::format("cannot set up a server process's output: {}", why));
  }
  const pid_t parent = ::getpid();
  const pid_t pid = ::fork();
  if (pid == 0) {
    // The child: if the load test dies without stopping it (SIGKILL, a crash), it gets SIGTERM.
    ::prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (::getppid() != parent) {
      ::_exit(127);  // the parent is already gone
    }
    // serve waits for SIGTERM with sigwait: start from a clean signal state whatever ours is.
    struct sigaction dfl {};
    dfl.sa_handler = SIG_DFL;
    ::sigaction(SIGTERM, &dfl, nullptr);
    ::sigaction(SIGINT, &dfl, nullptr);
    sigset_t none;
    ::sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    move_fd(null_fd, 0);
    move_fd(out[1], 1);
    move_fd(log_fd, 2);
    ::execve(program_path.c_str(), argv.data(), envp.data());
    static constexpr char kMessage[] = "facelogin loadtest: cannot execute the server binary\n";
    (void)!::write(2, kMessage, sizeof kMessage - 1);
    ::_exit(127);
  }
  const std::string fork_error = pid < 0 ? errno_text() : "";
  ::close(out[1]);
  ::close(null_fd);
  ::close(log_fd);
  if (pid < 0) {
    ::close(out[0]);
    return make_error(ErrorCode::kIoError,
                      fmt::format("cannot start a server process: {}", fork_error));
  }
  std::unique_ptr<ServeProcess> child(new ServeProcess(pid, out[0], log_file));
  if (Status s = child->read_port(timeout); !s.ok()) {
    return make_error(s);  // `child` stops the process on the way out
  }
  return child;
}

ServeProcess::~ServeProcess() { (void)finish(Clock::now() + std::chrono::seconds(5)); }

Status ServeProcess::read_port(std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  std::string text;
  char buffer[4096];
  for (;;) {
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
    if (left <= 0) {
      return Status(ErrorCode::kUnavailable,
                    fmt::format("server process {} did not report that it listens within {} s; "
                                "its stderr ends with:\n{}",
                                pid_, timeout.count() / 1000, log_tail()));
    }
    pollfd p{stdout_fd_, POLLIN, 0};
    const int ready = ::poll(&p, 1, static_cast<int>(std::min<long long>(left, 1000)));
    if (ready < 0 && errno != EINTR) {
      return Status(ErrorCode::kIoError,
                    fmt::format("cannot read server process {}'s output: {}", pid_, errno_text()));
    }
    if (ready <= 0) {
      continue;
    }
    const ssize_t got = ::read(stdout_fd_, buffer, sizeof buffer);
    if (got < 0) {
      if (errno == EINTR || errno == EAGAIN) {
        continue;
      }
      return Status(ErrorCode::kIoError,
                    fmt::format("cannot read server process {}'s output: {}", pid_, errno_text()));
    }
    if (got == 0) {
      // End of its output before the document: it is exiting; give it a moment to be reaped so
      // that the message can say how it ended.
      wait_until(Clock::now() + std::chrono::seconds(5));
      return Status(
          ErrorCode::kUnavailable,
          fmt::format("server process {} {} before it listened; its stderr ends "
                      "with:\n{}",
                      pid_, exited_ ? describe_wait_status(wait_status_) : "closed stdout",
                      log_tail()));
    }
    text.append(buffer, static_cast<std::size_t>(got));
    // The document is pretty-printed over several lines: it parses once it is complete.
    const nlohmann::json doc = nlohmann::json::parse(text, nullptr, false);
    if (doc.is_discarded()) {
      continue;
    }
    if (doc.is_object() && doc.contains("port") && doc["port"].is_number_unsigned() &&
        doc["port"].get<unsigned>() > 0 && doc["port"].get<unsigned>() <= 65535) {
      port_ = static_cast<std::uint16_t>(doc["port"].get<unsigned>());
      return Status::Ok();
    }
    if (doc.is_object() && doc.contains("error") && doc["error"].is_object()) {
      const auto& error = doc["error"];
      return Status(code_named(error.value("code", "")),
                    fmt::format("server process {}: {}", pid_, error.value("message", "")));
    }
    return Status(
        ErrorCode::kInternal,
        fmt::format("server process {} printed {} instead of its address", pid_, doc.dump()));
  }
}

Result<double> ServeProcess::cpu_seconds() const {
  if (exited_) {
    return make_error(ErrorCode::kUnavailable, fmt::format("server process {} has ended", pid_));
  }
  std::ifstream in(fmt::format("/proc/{}/stat", pid_));
  const std::string stat((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  // "pid (comm) state ppid ...": comm may hold spaces and parentheses, so fields are counted
  // from the last ')'. utime and stime are fields 14 and 15 of proc(5), in clock ticks.
  const std::size_t paren = stat.rfind(')');
  if (paren == std::string::npos) {
    return make_error(ErrorCode::kUnavailable,
                      fmt::format("cannot read /proc/{}/stat: the server process has ended", pid_));
  }
  std::istringstream fields(stat.substr(paren + 1));
  std::string field;
  unsigned long long ticks[2] = {0, 0};  // utime, stime
  for (int n = 3; n <= 15 && fields >> field; ++n) {
    if (n < 14) {
      continue;
    }
    const auto [end, ec] =
        std::from_chars(field.data(), field.data() + field.size(), ticks[n - 14]);
    if (ec != std::errc() || end != field.data() + field.size()) {
      break;
    }
    if (n == 15) {
      const long per_second = ::sysconf(_SC_CLK_TCK);
      return static_cast<double>(ticks[0] + ticks[1]) /
             static_cast<double>(per_second > 0 ? per_second : 100);
    }
  }
  return make_error(ErrorCode::kInternal,
                    fmt::format("/proc/{}/stat has no CPU times: {}", pid_, stat));
}

void ServeProcess::wait_until(std::chrono::steady_clock::time_point deadline) {
  while (!exited_) {
    int status = 0;
    const pid_t r = ::waitpid(pid_, &status, WNOHANG);
    if (r == pid_) {
      exited_ = true;
      wait_status_ = status;
      exited_before_stop_ = !stop_requested_;
      return;
    }
    if (r < 0 && errno != EINTR) {
      // Not our child any more (SIGCHLD ignored?): nothing left to wait for or to signal.
      exited_ = true;
      lost_ = errno_text();
      return;
    }
    if (Clock::now() >= deadline) {
      return;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

void ServeProcess::request_stop() {
  if (stop_requested_) {
    return;
  }
  wait_until(Clock::now());  // notes whether it had ended by itself
  stop_requested_ = true;
  if (!exited_) {
    ::kill(pid_, SIGTERM);
  }
}

Status ServeProcess::finish(std::chrono::steady_clock::time_point deadline) {
  if (finished_) {
    return result_;
  }
  request_stop();
  wait_until(deadline);
  bool killed = false;
  if (!exited_) {
    ::kill(pid_, SIGKILL);
    killed = true;
    int status = 0;
    while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
    }
    exited_ = true;
    wait_status_ = status;
  }
  ::close(stdout_fd_);
  finished_ = true;
  const std::string tail = log_tail();
  const std::string stderr_text = tail.empty() ? "" : "; its stderr ends with:\n" + tail;
  if (!lost_.empty()) {
    result_ = Status(ErrorCode::kUnavailable,
                     fmt::format("cannot wait for server process {}: {}", pid_, lost_));
  } else if (exited_before_stop_) {
    result_ = Status(ErrorCode::kUnavailable,
                     fmt::format("server process {} (port {}) {} before it was stopped{}", pid_,
                                 port_, describe_wait_status(wait_status_), stderr_text));
  } else if (killed) {
    result_ = Status(ErrorCode::kUnavailable,
                     fmt::format("server process {} (port {}) did not end after SIGTERM and was "
                                 "killed{}",
                                 pid_, port_, stderr_text));
  } else if (!WIFEXITED(wait_status_) || WEXITSTATUS(wait_status_) != 0) {
    result_ = Status(ErrorCode::kUnavailable,
                     fmt::format("server process {} (port {}) {} after SIGTERM{}", pid_, port_,
                                 describe_wait_status(wait_status_), stderr_text));
  }
  return result_;
}

std::string ServeProcess::log_tail(std::size_t max_bytes) const {
  std::ifstream in(log_file_, std::ios::binary);
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (text.size() <= max_bytes) {
    return text;
  }
  return "..." + text.substr(text.size() - max_bytes);
}

std::vector<Status> stop_all(const std::vector<std::unique_ptr<ServeProcess>>& children,
                             std::chrono::milliseconds grace) {
  for (const auto& child : children) {
    child->request_stop();
  }
  const auto deadline = Clock::now() + grace;
  std::vector<Status> errors;
  for (const auto& child : children) {
    if (Status s = child->finish(deadline); !s.ok()) {
      errors.push_back(std::move(s));
    }
  }
  return errors;
}

}  // namespace facelogin::cli
