#pragma once

// `facelogin serve` as a child process of this binary, for `loadtest --processes`: started with
// fork/exec, its port read from the JSON document that `--json serve` prints once it listens,
// its CPU time read from /proc, and always stopped (SIGTERM, then SIGKILL) before the object
// goes away, so that no failure path of the parent leaves a server behind.

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "facelogin/status.h"

namespace facelogin::cli {

// One child server. Not thread-safe: owned and driven by one thread (the one that started it,
// which must live as long as the child: the child gets SIGTERM when that thread ends).
class ServeProcess {
 public:
  // Runs `program args...` with `env` ("NAME=value" strings) as its whole environment, stdin
  // from /dev/null, stdout into a pipe and stderr appended to `log_file`. `args` must make it
  // print one JSON document on stdout when it listens ({"listening": url, "port": N}: the global
  // --json before `serve`). Waits up to `timeout` for that document.
  // Errors: kIoError (cannot create the pipe, the log or the process); the child's own error
  // code and message when it prints a JSON error; kUnavailable when it exits or stays silent
  // until the timeout (the message quotes the end of its stderr). The child is stopped on error.
  [[nodiscard]] static Result<std::unique_ptr<ServeProcess>> start(
      const std::filesystem::path& program, const std::vector<std::string>& args,
      const std::vector<std::string>& env, const std::filesystem::path& log_file,
      std::chrono::milliseconds timeout);

  ServeProcess(const ServeProcess&) = delete;
  ServeProcess& operator=(const ServeProcess&) = delete;
  // Stops the child as stop_all() would, if that has not happened yet.
  ~ServeProcess();

  pid_t pid() const { return pid_; }
  std::uint16_t port() const { return port_; }

  // User plus system CPU time of the child so far (all its threads), in seconds, from
  // /proc/<pid>/stat (clock-tick resolution). Errors: kUnavailable when the child has ended.
  [[nodiscard]] Result<double> cpu_seconds() const;

  // Sends SIGTERM unless the child has ended (noting if it ended before being asked). Idempotent.
  void request_stop();
  // Waits for the child until `deadline`, then SIGKILLs it and reaps it. Ok when it exited with
  // status 0 after request_stop(); otherwise an error saying how it ended (kUnavailable).
  // Idempotent: later calls return the first result.
  Status finish(std::chrono::steady_clock::time_point deadline);

  // The last `max_bytes` of its stderr log (empty when unreadable).
  std::string log_tail(std::size_t max_bytes = 1500) const;

 private:
  ServeProcess(pid_t pid, int stdout_fd, std::filesystem::path log_file)
      : pid_(pid), stdout_fd_(stdout_fd), log_file_(std::move(log_file)) {}
  Status read_port(std::chrono::milliseconds timeout);
  // Reaps the child if it ends before `deadline` (polling; a deadline in the past checks once).
  void wait_until(std::chrono::steady_clock::time_point deadline);

  pid_t pid_;
  int stdout_fd_;  // read end of the child's stdout, kept open until it is reaped
  std::filesystem::path log_file_;
  std::uint16_t port_ = 0;
  bool stop_requested_ = false;
  bool exited_ = false;              // reaped (or lost: see lost_)
  int wait_status_ = 0;              // from waitpid, once exited_
  bool exited_before_stop_ = false;  // it ended before request_stop()
  std::string lost_;                 // why waitpid failed, if it did
  bool finished_ = false;
  Status result_;
};

// Asks every child to stop at once, then waits for all of them (`grace` in all before SIGKILL),
// so that N servers take one grace period, not N. Returns the errors of children that did not
// end cleanly (empty when all did).
std::vector<Status> stop_all(const std::vector<std::unique_ptr<ServeProcess>>& children,
                             std::chrono::milliseconds grace = std::chrono::seconds(5));

}  // namespace facelogin::cli
