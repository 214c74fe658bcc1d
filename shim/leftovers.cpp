#include "shim/leftovers.hpp"

#include <sys/inotify.h>
#include <unistd.h>

#include <csignal>
#include <unordered_set>
#include <utility>
#include <vector>

#include "services/pidfd.hpp"
#include "services/proc.hpp"

namespace corral::shim {

std::vector<proc_stat> tree_processes() {
  auto self = ::getpid();
  auto pids = descendants_of(self);
  std::unordered_set<int> tree(pids.begin(), pids.end());
  tree.insert(self);
  std::vector<proc_stat> out;
  for (auto pid : pids)
    if (auto st = read_proc_stat(pid);
        st && st->state != 'Z' && tree.count(st->ppid))
      out.push_back(std::move(*st));
  return out;
}

leftovers::leftovers(std::optional<cgroup> cg) : cg_(std::move(cg)) {
  if (!cg_)
    return;
  if (auto mount = find_cgroup2_mount())
    cg_rel_ = cg_->relative_to(*mount);
  // The kernel modifies cgroup.events when "populated" flips: an inotify
  // watch tells the moment the cgroup empties, without polling.
  watch_.reset(::inotify_init1(IN_NONBLOCK | IN_CLOEXEC));
  if (watch_
      && ::inotify_add_watch(watch_.get(), cg_->events_path().c_str(),
                             IN_MODIFY)
             < 0)
    watch_.reset();
}

void leftovers::drain_watch() {
  alignas(inotify_event) char buf[4096];
  while (watch_ && ::read(watch_.get(), buf, sizeof buf) > 0) {
  }
}

std::chrono::milliseconds leftovers::rescan_interval() const {
  using namespace std::chrono_literals;
  return cg_ && watch_ ? 1000ms : 50ms;
}

bool leftovers::empty() {
  if (cg_) {
    auto ev = cg_->events();
    // A cgroup that is gone has no members.
    return !ev || !ev->populated;
  }
  return tree_processes().empty();
}

int leftovers::signal_new(int sig) {
  int total = 0;
  for (int n = signal_pass(sig); n > 0; n = signal_pass(sig))
    total += n;
  return total;
}

namespace {

/// sig, then SIGCONT to a stopped process (as systemd does): it acts on
/// the stop signal now instead of sleeping through the grace period into
/// SIGKILL. `state`: its /proc state letter.
void send_with_cont(const pidfd& fd, int sig, char state) {
  (void)fd.send_signal(sig);
  if (sig != SIGKILL && sig != SIGCONT && (state == 'T' || state == 't'))
    (void)fd.send_signal(SIGCONT);
}

} // namespace

int leftovers::signal_pass(int sig) {
  // Counts new processes found, signalled or not: one that exited
  // meanwhile still means the tree moved, so look again.
  int found = 0;
  if (cg_) {
    auto pids = cg_->procs();
    if (!pids)
      return 0;
    // Pin every pid first, then read the member list again: a pid read
    // from cgroup.procs may have been recycled by a process outside the
    // run before it was pinned, and a pinned outsider is not listed in
    // the second read (one read for the tree instead of one per process).
    std::vector<std::pair<int, pidfd>> pinned;
    for (auto pid : *pids)
      if (auto fd = pidfd::open(pid))
        pinned.emplace_back(pid, std::move(*fd));
    auto again = cg_->procs();
    if (!again)
      return 0;
    std::unordered_set<int> members(again->begin(), again->end());
    for (auto& [pid, fd] : pinned) {
      if (!members.count(pid))
        continue;
      auto st = read_proc_stat(pid);
      if (!st || !signalled_.insert({pid, st->starttime}).second)
        continue;
      send_with_cont(fd, sig, st->state);
      ++found;
    }
    return found;
  }
  // tree_processes() ties each stat to the walk; the start time then pins
  // the process (the check signal_process_safely makes).
  for (auto& st : tree_processes()) {
    if (!signalled_.insert({st.pid, st.starttime}).second)
      continue;
    if (auto fd = pidfd::open(st.pid, st.starttime))
      send_with_cont(*fd, sig, st.state);
    ++found;
  }
  return found;
}

void leftovers::kill() {
  if (cg_) {
    // One write kills every member at once, forks in flight included.
    (void)cg_->kill();
    return;
  }
  for (auto& st : tree_processes())
    (void)signal_process_safely(st.pid, st.starttime, SIGKILL);
}

} // namespace corral::shim
