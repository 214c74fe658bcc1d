#include "shim/suspend.hpp"

#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstdint>
#include <cstring>
#include <map>
#include <thread>
#include <utility>

#include "services/pidfd.hpp"
#include "services/proc.hpp"
#include "shim/io.hpp"
#include "shim/leftovers.hpp"

namespace corral::shim {

namespace {

using namespace std::chrono_literals;
using steady = std::chrono::steady_clock;

/// How often the states are read while waiting for the tree to stop.
constexpr auto state_poll = 3ms;

/// (pid, start time): a pid alone may be recycled.
using identity = std::pair<int, std::uint64_t>;

enum class stop_state { running, stopped, gone };

stop_state state_of(const identity& id) {
  auto st = read_proc_stat(id.first);
  if (!st || st->starttime != id.second || st->state == 'Z' || st->state == 'X')
    return stop_state::gone;
  return st->state == 'T' || st->state == 't' ? stop_state::stopped
                                              : stop_state::running;
}

/// SIGSTOPs the processes of the tree not in `known` yet and adds them;
/// how many it found.
int stop_new(std::map<identity, stop_state>& known) {
  int found = 0;
  for (auto& st : tree_processes()) {
    identity id{st.pid, st.starttime};
    if (known.count(id))
      continue;
    if (auto fd = pidfd::open(st.pid, st.starttime))
      (void)fd->send_signal(SIGSTOP);
    known.emplace(id, stop_state::running);
    ++found;
  }
  return found;
}

bool resume_pending() {
  sigset_t pending;
  return ::sigpending(&pending) == 0 && sigismember(&pending, SIGCONT) == 1;
}

} // namespace

void suspend_tree(const std::string& file, std::chrono::milliseconds limit,
                  logger& log) {
  auto deadline = steady::now() + limit;
  std::map<identity, stop_state> known;
  for (;;) {
    // A walk that finds nothing new, with every process found stopped: a
    // stopped process forks no more, so the tree is complete.
    int fresh = stop_new(known);
    bool all = true;
    for (auto& [id, state] : known) {
      if (state == stop_state::running)
        state = state_of(id);
      all = all && state != stop_state::running;
    }
    if ((fresh == 0 && all) || steady::now() >= deadline)
      break;
    if (resume_pending()) {
      log.info("stops waiting for the tree to stop: SIGCONT came first");
      return;
    }
    if (fresh == 0)
      std::this_thread::sleep_for(state_poll);
  }

  int stopped = 0, total = 0;
  std::string running;
  for (auto& [id, state] : known) {
    // One that stopped may have been continued or killed since: look again.
    state = state_of(id);
    if (state == stop_state::gone)
      continue;
    ++total;
    if (state == stop_state::stopped)
      ++stopped;
    else
      running += " " + std::to_string(id.first);
  }
  auto now = std::to_string(unix_time_ms());
  std::string text;
  if (running.empty()) {
    text = "stopped " + std::to_string(stopped) + " " + now + "\n";
    log.info("stops the %d processes of the tree (SIGTSTP)", stopped);
  } else {
    text = "partial " + std::to_string(stopped) + "/" + std::to_string(total)
           + " " + now + "\n";
    log.warn("stops %d of %d processes of the tree (SIGTSTP); not stopped "
             "after %lld ms:%s",
             stopped, total, static_cast<long long>(limit.count()),
             running.c_str());
  }
  if (!write_file_atomically(file, text))
    log.warn("cannot write the suspend file %s: %s", file.c_str(),
             std::strerror(errno));
}

void resume_tree(const std::string& file, logger& log) {
  if (::unlink(file.c_str()) != 0 && errno != ENOENT)
    log.warn("cannot remove the suspend file %s: %s", file.c_str(),
             std::strerror(errno));
  // A stopped process forks nothing: one walk finds them all. One in
  // state D may still hold the suspend's SIGSTOP pending, and would stop
  // once it leaves D: SIGCONT discards a pending stop signal.
  int continued = 0;
  for (auto& st : tree_processes())
    if ((st.state == 'T' || st.state == 'D')
        && signal_process_safely(st.pid, st.starttime, SIGCONT))
      ++continued;
  log.info("continues the tree: SIGCONT to %d stopped processes", continued);
}

} // namespace corral::shim
