#pragma once
/// Real daemons, real trainers, real HTTP: what integration tests share.

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "tests/temp_dir.hpp"

namespace corral::test {

using namespace std::chrono_literals;

struct reply {
  int status = 0;
  nlohmann::json body;
  std::string raw;
};

/// `corral serve` on 127.0.0.1 port 0 with its own state dir.
class test_daemon {
public:
  /// Extra flags go after the defaults (e.g. "--cgroup", "off").
  explicit test_daemon(std::vector<std::string> extra = {});
  /// A daemon on a state dir the caller owns (and keeps: it is not
  /// removed), e.g. one a previous daemon left behind, whose runs this one
  /// takes back. `stop_runs_on_exit`: pass --stop-runs-on-exit. The
  /// daemon's stderr is appended to <state_dir>/daemon.err, after a line
  /// that marks each start.
  test_daemon(const std::string& state_dir, std::vector<std::string> extra,
              bool stop_runs_on_exit);
  /// SIGTERM (the daemon stops its runs), bounded wait, then SIGKILL.
  ~test_daemon();
  test_daemon(const test_daemon&) = delete;
  test_daemon& operator=(const test_daemon&) = delete;

  reply call(const std::string& method, const std::string& target,
             const std::string& body = "",
             const std::string& content_type = "application/json",
             std::optional<std::string> token = std::nullopt);
  /// GET /api/v1/runs/{id}: the run object (with processes).
  nlohmann::json run(const std::string& id);
  /// What run `id` printed to stdout so far (its log file).
  std::string stdout_of(const std::string& id) const;
  /// POSTs an experiments YAML document; returns the reply.
  reply submit(const std::string& yaml, const std::string& base_dir = "/tmp");
  /// Sends SIGTERM and waits for the exit code.
  int terminate(std::chrono::seconds limit = 60s);
  /// SIGKILLs the daemon (nothing of it runs afterwards: no save, no
  /// shutdown) and reaps it. Its runs, in their own sessions, go on.
  void kill9();
  /// False once terminate() or kill9() ended the daemon.
  bool running() const { return pid_ > 0; }

  const std::string& url() const { return url_; }
  const std::string& token() const { return token_; }
  const std::string& state_dir() const { return state_path_; }
  int pid() const { return pid_; }
  /// What the daemon printed to stderr so far.
  std::string log() const;

private:
  void start(const std::vector<std::string>& args, bool append_log);
  std::string in_state(const std::string& name) const;

  std::optional<temp_dir> own_state_; // when the daemon made its own
  std::string state_path_;
  int pid_ = -1;
  std::string url_;
  std::string token_;
};

/// One server-sent event as a follower received it.
struct received_event {
  std::string event;
  std::string id;
  nlohmann::json data;
  std::chrono::steady_clock::time_point at; // when it arrived
};

/// Follows an SSE endpoint of `d` on a thread until the server sends
/// `end`, or `enough` holds for what arrived so far.
class sse_follower {
public:
  sse_follower(const test_daemon& d, std::string target,
               std::function<bool(const std::vector<received_event>&)> enough
               = {});
  ~sse_follower();
  sse_follower(const sse_follower&) = delete;
  sse_follower& operator=(const sse_follower&) = delete;

  /// What arrived so far.
  std::vector<received_event> events() const;
  /// Waits for the stream to end (or `enough`); false on timeout.
  bool wait_done(std::chrono::milliseconds limit = 60s) const;
  /// The HTTP status, once the answer's head arrived (0 before).
  int status() const;

private:
  struct impl;
  std::shared_ptr<impl> impl_;
};

/// Runs `corral ARGS...` to completion; returns exit code and output.
/// `env` ("NAME=value") is laid over the test's environment.
struct command_result {
  int exit_code = -1;
  std::string out;
  std::string err;
};
command_result run_corral(const std::vector<std::string>& args,
                          const std::vector<std::string>& env = {});
/// The same, SIGKILLed if it runs longer than `limit` (then exit_code is
/// -1 and `timed_out` is set).
struct bounded_result : command_result {
  bool timed_out = false;
  std::chrono::milliseconds took{0};
};
bounded_result run_corral_bounded(const std::vector<std::string>& args,
                                  std::chrono::milliseconds limit);

/// Polls pred every few ms until it holds or `limit` passes.
bool wait_until(const std::function<bool()>& pred,
                std::chrono::milliseconds limit = 10s);

/// A process that exists and is not a zombie.
bool alive(int pid);
/// /proc/<pid>/stat state letter, or '?' when gone.
char proc_state(int pid);

/// The tree_trainer.py fixture's files in a directory.
struct trainer_dir {
  std::string path;
  static inline const std::vector<std::string> roles{
      "main", "worker1", "worker2", "grandchild", "escapee"};
  std::optional<int> pid(const std::string& role) const;
  long count(const std::string& role) const;
  bool has(const std::string& file) const;
  /// Waits until every role has written its pid and a first count.
  bool wait_all_started(std::chrono::milliseconds limit = 20s) const;
  std::vector<int> pids() const;
  /// Kills whatever of the fixture is still alive (test cleanup only):
  /// by pid, after checking the process is still this fixture's.
  void kill_leftovers() const;
};

/// The YAML for one tree_trainer run.
std::string trainer_yaml(const std::string& name, const std::string& dir,
                         const std::string& extra_args = "",
                         const std::string& extra_keys = "");

} // namespace corral::test
