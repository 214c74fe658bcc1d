#include "services/local_executor.hpp"

#include <fcntl.h>
#include <poll.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <limits>
#include <set>
#include <thread>

#include "services/exit_record.hpp"
#include "services/proc.hpp"

extern char** environ;

namespace corral {

namespace {

using namespace std::chrono_literals;

/// How long adopt() waits for killed leftovers of a crashed shim to leave
/// their cgroup before it removes it: SIGKILL takes effect in
/// milliseconds, unless a process is stuck in uninterruptible sleep, and a
/// daemon starting up should not hang on one.
constexpr auto leftover_exit_wait = 2s;

/// /proc/<pid>/stat opened for repeated reads, once it is checked to be
/// that process (the pid could have been reused before the open).
unique_fd open_stat_of(int pid, std::uint64_t starttime) {
  unique_fd fd{::open(("/proc/" + std::to_string(pid) + "/stat").c_str(),
                      O_RDONLY | O_CLOEXEC)};
  if (!fd)
    return {};
  char buf[1024];
  auto n = ::pread(fd.get(), buf, sizeof buf, 0);
  auto st = n > 0 ? parse_proc_stat({buf, static_cast<std::size_t>(n)})
                  : std::nullopt;
  if (!st || st->starttime != starttime)
    return {};
  return fd;
}

std::int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// posix_spawn's attributes and file actions, released however we leave.
struct spawn_setup {
  posix_spawnattr_t attr;
  posix_spawn_file_actions_t actions;
  spawn_setup() {
    posix_spawnattr_init(&attr);
    posix_spawn_file_actions_init(&actions);
  }
  ~spawn_setup() {
    posix_spawnattr_destroy(&attr);
    posix_spawn_file_actions_destroy(&actions);
  }
};

/// A saved cgroup path is trusted with SIGKILL and rmdir only if it looks
/// like a run's cgroup: absolute, normalized, under the v2 mount and named
/// for the run. (The parent may differ from today's cgroup_parent: the
/// daemon may have been restarted from another cgroup.)
bool is_run_cgroup(const std::string& path, const std::string& mount,
                   const std::string& run_id) {
  std::filesystem::path p{path};
  return !mount.empty() && p.is_absolute()
         && p.lexically_normal().string() == path
         && path.rfind(mount + "/", 0) == 0 && p.filename() == run_id;
}

/// The trainer among the shim's children, for a daemon that died before
/// the shim reported it: a live session leader (the trainer calls
/// setsid()), in the run's cgroup when there is one; the oldest if several
/// (orphans reparented to the shim came later).
std::optional<proc_stat> find_main(int shim_pid, const std::string& cg_rel) {
  std::optional<proc_stat> best;
  for (auto pid : list_pids()) {
    auto st = read_proc_stat(pid);
    if (!st || st->ppid != shim_pid || st->sid != pid || st->state == 'Z')
      continue;
    if (!cg_rel.empty() && proc_cgroup2_path(pid) != cg_rel)
      continue;
    if (!best || st->starttime < best->starttime)
      best = st;
  }
  return best;
}

/// Ends what a shim that died left in the run's cgroup and removes the
/// cgroup. Returns what it did, for the log; "" when there was nothing.
std::string end_leftovers(const cgroup& cg) {
  std::string said;
  auto pids = cg.procs();
  if (pids && !pids->empty()) {
    // cgroup.kill, or SIGKILL to each pid still in the cgroup: the kernel
    // names the members, so no foreign process can be hit.
    (void)cg.kill();
    said = "kills " + std::to_string(pids->size())
           + " processes left in cgroup " + cg.path();
    auto deadline = std::chrono::steady_clock::now() + leftover_exit_wait;
    for (;;) {
      auto ev = cg.events();
      if (!ev || !ev->populated)
        break;
      if (std::chrono::steady_clock::now() >= deadline) {
        said += "; they have not exited yet";
        break;
      }
      std::this_thread::sleep_for(5ms);
    }
  }
  if (auto r = cg.remove(); !r)
    said += (said.empty() ? "" : "; ") + std::string{"cannot remove "}
            + cg.path() + ": " + r.error().message;
  return said;
}

/// A non-negative integer field no larger than `max`; a missing optional
/// one keeps `out`.
bool read_count(const nlohmann::json& j, const char* key, std::uint64_t max,
                bool required, std::uint64_t& out) {
  auto it = j.find(key);
  if (it == j.end())
    return !required;
  std::uint64_t v = 0;
  if (it->is_number_unsigned())
    v = it->get<std::uint64_t>();
  else if (it->is_number_integer() && it->get<std::int64_t>() >= 0)
    v = static_cast<std::uint64_t>(it->get<std::int64_t>());
  else
    return false;
  if (v > max)
    return false;
  out = v;
  return true;
}

} // namespace

nlohmann::json executor_identity::to_json() const {
  return {{"shim_pid", shim_pid},
          {"shim_starttime", shim_starttime},
          {"main_pid", main_pid},
          {"main_starttime", main_starttime},
          {"cgroup", cgroup}};
}

std::optional<executor_identity>
executor_identity::from_json(const nlohmann::json& j) {
  if (!j.is_object())
    return std::nullopt;
  constexpr auto max_pid
      = static_cast<std::uint64_t>(std::numeric_limits<int>::max());
  constexpr auto max_u64 = std::numeric_limits<std::uint64_t>::max();
  std::uint64_t shim_pid = 0, main_pid = 0;
  executor_identity id;
  if (!read_count(j, "shim_pid", max_pid, true, shim_pid) || shim_pid == 0
      || !read_count(j, "shim_starttime", max_u64, true, id.shim_starttime)
      || !read_count(j, "main_pid", max_pid, false, main_pid)
      || !read_count(j, "main_starttime", max_u64, false, id.main_starttime))
    return std::nullopt;
  id.shim_pid = static_cast<int>(shim_pid);
  id.main_pid = static_cast<int>(main_pid);
  if (auto it = j.find("cgroup"); it != j.end()) {
    if (!it->is_string())
      return std::nullopt;
    id.cgroup = it->get<std::string>();
  }
  return id;
}

std::optional<shim_report> parse_shim_report(const std::string& line) {
  shim_report r;
  if (line.rfind("started ", 0) == 0) {
    unsigned long long start = 0;
    if (std::sscanf(line.c_str() + 8, "%d %llu", &r.pid, &start) != 2)
      return std::nullopt;
    r.started = true;
    r.starttime = start;
    return r;
  }
  if (line.rfind("exec_error ", 0) == 0) {
    r.message = line.substr(11);
    return r;
  }
  return std::nullopt;
}

std::map<std::string, std::string>
run_environment(const run_spec& spec, const std::string& run_id,
                const std::vector<int>& gpus) {
  auto env = spec.base_env;
  for (auto& [k, v] : spec.env)
    env[k] = v;
  // gpus: 0 hides every device, so a run cannot touch one by accident.
  std::string visible;
  for (auto g : gpus)
    visible += (visible.empty() ? "" : ",") + std::to_string(g);
  env["CUDA_VISIBLE_DEVICES"] = visible;
  if (!gpus.empty()) {
    env["NVIDIA_VISIBLE_DEVICES"] = visible;
    // CUDA numbers devices fastest first unless told otherwise; NVML (and
    // so the scheduler) numbers them by PCI bus.
    env["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID";
  }
  env["CORRAL_RUN_ID"] = run_id;
  env.try_emplace("PYTHONUNBUFFERED", "1");
  return env;
}

exit_facts facts_from_record(const std::string& run_dir) {
  exit_facts facts;
  if (auto rec = read_exit_record(run_dir)) {
    facts.recorded = true;
    facts.exec_error = rec->status == "exec_error";
    facts.signaled = rec->status == "signaled";
    facts.code = rec->code;
    facts.message = rec->message;
  } else {
    facts.message = "the shim exited without an exit record";
  }
  return facts;
}

status archive_run_dir(const std::string& dir, const std::string& archive) {
  std::error_code err;
  if (!std::filesystem::exists(dir, err))
    return ok;
  auto stamp = std::chrono::duration_cast<std::chrono::milliseconds>(
                   std::chrono::system_clock::now().time_since_epoch())
                   .count();
  std::filesystem::create_directories(archive, err);
  auto name = std::filesystem::path(dir).filename().string();
  std::filesystem::rename(
      dir, archive + "/" + name + "-" + std::to_string(stamp), err);
  if (err)
    return make_error(ec::internal, "cannot move the old run directory " + dir
                                        + " aside: " + err.message());
  return ok;
}

result<std::unique_ptr<local_executor>>
local_executor::launch(const executor_config& cfg, const std::string& run_id,
                       const run_spec& spec, const std::vector<int>& gpus,
                       bool next_attempt) {
  std::unique_ptr<local_executor> self{new local_executor};
  self->run_id_ = run_id;
  self->run_dir_ = cfg.runs_dir + "/" + run_id;
  std::error_code err;
  if (next_attempt) {
    // The previous attempt's exit record must not be read as this one's.
    std::filesystem::remove(self->run_dir_ + "/exit", err);
  } else if (auto moved = archive_run_dir(self->run_dir_,
                                          cfg.runs_dir + "/../runs-archive");
             !moved) {
    return moved.error();
  }
  std::filesystem::create_directories(self->run_dir_, err);
  if (err)
    return make_error(ec::internal, "cannot create run directory "
                                        + self->run_dir_ + ": "
                                        + err.message());
  if (cfg.cgroup_parent) {
    auto cg = cgroup::create(*cfg.cgroup_parent + "/" + run_id);
    if (!cg)
      return cg.error();
    self->cgroup_ = *cg;
    self->cgroup_rel_ = cg->relative_to(cfg.cgroup_mount);
  }

  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0)
    return make_error(ec::internal, std::string{"cannot create a pipe: "}
                                        + std::strerror(errno));
  self->status_.reset(fds[0]);
  unique_fd status_w{fds[1]};
  ::fcntl(self->status_.get(), F_SETFL, O_NONBLOCK);

  std::vector<std::string> args{cfg.shim_path, "--run-dir", self->run_dir_};
  if (self->cgroup_) {
    args.push_back("--cgroup");
    args.push_back(self->cgroup_->path());
  }
  args.insert(args.end(), {"--cwd", spec.cwd, "--stop-signal",
                           std::to_string(spec.stop.signal), "--grace-ms",
                           std::to_string(spec.stop.grace.count()),
                           "--log-max-bytes", std::to_string(cfg.log_max_bytes),
                           "--log-keep", std::to_string(cfg.log_keep), "--"});
  args.insert(args.end(), spec.command.begin(), spec.command.end());
  std::vector<char*> argv;
  for (auto& a : args)
    argv.push_back(a.data());
  argv.push_back(nullptr);

  std::vector<std::string> env_strings;
  for (auto& [k, v] : run_environment(spec, run_id, gpus))
    env_strings.push_back(k + "=" + v);
  std::vector<char*> envp;
  for (auto& e : env_strings)
    envp.push_back(e.data());
  envp.push_back(nullptr);

  spawn_setup setup;
  sigset_t none, all;
  sigemptyset(&none);
  sigfillset(&all);
  // Its own session: a Ctrl-C to a foreground daemon does not reach runs.
  posix_spawnattr_setflags(&setup.attr, POSIX_SPAWN_SETSID
                                            | POSIX_SPAWN_SETSIGMASK
                                            | POSIX_SPAWN_SETSIGDEF);
  posix_spawnattr_setsigmask(&setup.attr, &none);
  posix_spawnattr_setsigdefault(&setup.attr, &all);
  for (int fd : {0, 1, 2})
    posix_spawn_file_actions_addopen(&setup.actions, fd, "/dev/null",
                                     fd == 0 ? O_RDONLY : O_WRONLY, 0);
  posix_spawn_file_actions_adddup2(&setup.actions, status_w.get(), 3);

  pid_t pid = 0;
  int rc = ::posix_spawn(&pid, cfg.shim_path.c_str(), &setup.actions,
                         &setup.attr, argv.data(), envp.data());
  if (rc != 0)
    return make_error(ec::internal, "cannot start the shim " + cfg.shim_path
                                        + ": " + std::strerror(rc));
  // The shim is our unreaped child: its pid cannot be reused yet, and its
  // stat stays readable even if it already exited.
  auto shim = pidfd::open(pid);
  if (!shim)
    return shim.error();
  self->shim_ = std::move(*shim);
  if (auto st = read_proc_stat(pid))
    self->shim_start_ = st->starttime;
  return self;
}

std::optional<executor_identity>
local_executor::find_identity(const executor_config& cfg,
                              const std::string& run_id) {
  if (!cfg.cgroup_parent)
    return std::nullopt;
  auto path = *cfg.cgroup_parent + "/" + run_id;
  auto cg = cgroup::open_existing(path);
  if (!cg)
    return std::nullopt;
  auto pids = cg->procs();
  if (!pids)
    return std::nullopt;
  for (int pid : *pids) {
    auto main = read_proc_stat(pid);
    if (!main
        || std::find(pids->begin(), pids->end(), main->ppid) != pids->end())
      continue;
    auto shim = read_proc_stat(main->ppid);
    if (!shim || main->ppid <= 1)
      continue;
    executor_identity id;
    id.shim_pid = main->ppid;
    id.shim_starttime = shim->starttime;
    id.main_pid = pid;
    id.main_starttime = main->starttime;
    id.cgroup = path;
    return id;
  }
  return std::nullopt;
}

exit_facts local_executor::recorded_exit(const executor_config& cfg,
                                         const std::string& run_id) {
  return facts_from_record(cfg.runs_dir + "/" + run_id);
}

result<adoption> local_executor::adopt(const executor_config& cfg,
                                       const std::string& run_id,
                                       const executor_identity& id) {
  if (id.shim_pid <= 0)
    return make_error(ec::internal,
                      "the saved identity of run " + run_id + " names no shim");
  std::optional<cgroup> cg;
  std::string cg_rel;
  bool cgroup_gone = false;
  if (!id.cgroup.empty()) {
    auto mount = cfg.cgroup_mount;
    if (mount.empty())
      mount = find_cgroup2_mount().value_or("");
    if (!is_run_cgroup(id.cgroup, mount, run_id))
      return make_error(ec::internal, "the saved identity of run " + run_id
                                          + " names cgroup " + id.cgroup
                                          + ", which is not the run's");
    if (auto opened = cgroup::open_existing(id.cgroup)) {
      cg = *opened;
      cg_rel = cg->relative_to(mount);
    } else if (opened.error().code == ec::not_found) {
      cgroup_gone = true;
    } else {
      return opened.error();
    }
  }

  // Alive means: the pid names a process that started when the shim did.
  // A recycled pid (another process, or a thread of one) has another start
  // time. A zombie shim has exited: its record is final.
  std::optional<pidfd> shim;
  if (auto st = read_proc_stat(id.shim_pid);
      st && st->starttime == id.shim_starttime && st->state != 'Z') {
    auto fd = pidfd::open(id.shim_pid, id.shim_starttime);
    if (fd && !fd->exited())
      shim = std::move(*fd);
    else if (!fd && fd.error().code != ec::not_found)
      return fd.error();
  }

  auto run_dir = cfg.runs_dir + "/" + run_id;
  if (!shim) {
    adoption out;
    if (auto facts = facts_from_record(run_dir); facts.recorded)
      out.ended = std::move(facts);
    if (cg)
      out.message = end_leftovers(*cg);
    return out;
  }

  std::unique_ptr<local_executor> self{new local_executor};
  self->run_id_ = run_id;
  self->run_dir_ = run_dir;
  self->cgroup_ = cg;
  self->cgroup_rel_ = cg_rel;
  // Its report went to the daemon that died; the pipe is closed for us.
  self->status_closed_ = true;
  self->shim_ = std::move(*shim);
  self->shim_start_ = id.shim_starttime;
  self->shim_is_child_ = false;

  adoption out;
  int main_pid = id.main_pid;
  auto main_start = id.main_starttime;
  if (main_pid <= 0) {
    // The daemon died before the shim's report reached it.
    if (auto st = find_main(id.shim_pid, cg_rel)) {
      main_pid = st->pid;
      main_start = st->starttime;
      out.message = "finds main process " + std::to_string(main_pid)
                    + " among the shim's children";
    }
  }
  if (main_pid > 0) {
    self->main_pid_ = main_pid;
    self->main_start_ = main_start;
    // A main process that exited already (the shim is finishing) is not
    // held (a zombie's pidfd reads as exited): the shim's exit follows.
    if (auto fd = pidfd::open(main_pid, main_start); fd && !fd->exited()) {
      self->main_ = std::move(*fd);
      self->main_stat_ = open_stat_of(main_pid, main_start);
    }
  }
  if (cgroup_gone)
    out.message += (out.message.empty() ? "" : "; ") + std::string{"cgroup "}
                   + id.cgroup
                   + " is gone; watches the tree through the shim instead";
  out.exec = std::move(self);
  return out;
}

executor_identity local_executor::identity() const {
  executor_identity id;
  id.shim_pid = shim_.pid();
  id.shim_starttime = shim_start_;
  id.main_pid = main_pid_;
  id.main_starttime = main_start_;
  if (cgroup_)
    id.cgroup = cgroup_->path();
  return id;
}

local_executor::~local_executor() {
  // Reap a shim that already exited; one still running (the daemon exits
  // and leaves it) is inherited by init. An adopted shim is not our child:
  // its pid is not ours to wait for.
  if (shim_is_child_ && !reaped_ && shim_) {
    int wstatus = 0;
    ::waitpid(shim_.pid(), &wstatus, WNOHANG);
  }
}

std::string local_executor::mechanism() const {
  return cgroup_ ? "cgroup-v2" : "signals";
}

std::string local_executor::events_path() const {
  return cgroup_ ? cgroup_->events_path() : std::string{};
}

std::optional<shim_report> local_executor::read_report() {
  if (!status_)
    return std::nullopt;
  char buf[1024];
  for (;;) {
    auto n = ::read(status_.get(), buf, sizeof buf);
    if (n > 0) {
      status_buf_.append(buf, static_cast<std::size_t>(n));
      continue;
    }
    if (n == 0)
      status_closed_ = true;
    break;
  }
  auto nl = status_buf_.find('\n');
  if (nl == std::string::npos)
    return std::nullopt;
  auto line = status_buf_.substr(0, nl);
  status_buf_.erase(0, nl + 1);
  return parse_shim_report(line);
}

status local_executor::adopt_main(int pid, std::uint64_t starttime) {
  auto fd = pidfd::open(pid, starttime);
  if (!fd)
    return fd.error();
  main_ = std::move(*fd);
  main_stat_ = open_stat_of(pid, starttime);
  main_pid_ = pid;
  main_start_ = starttime;
  return ok;
}

std::optional<int> local_executor::main_pid() const {
  if (main_pid_ <= 0)
    return std::nullopt;
  return main_pid_;
}

std::vector<int> local_executor::tree_pids() const {
  if (cgroup_) {
    auto pids = cgroup_->procs();
    return pids ? *pids : std::vector<int>{};
  }
  // Fallback: the shim is the tree's subreaper, so every process of the
  // tree, setsid() escapees included, descends from it.
  return descendants_of(shim_.pid());
}

status local_executor::freeze() {
  if (cgroup_)
    return cgroup_->freeze();
  // A process forked between the scan and the signal is caught by the next
  // round; stop once a round finds nothing new.
  std::set<int> stopped;
  for (int round = 0; round < 100; ++round) {
    bool fresh = false;
    for (auto pid : tree_pids()) {
      if (stopped.count(pid))
        continue;
      if (auto st = read_proc_stat(pid))
        signal_process_safely(pid, st->starttime, SIGSTOP);
      stopped.insert(pid);
      fresh = true;
    }
    if (!fresh)
      return ok;
  }
  return make_error(ec::internal, "the tree of run " + run_id_
                                      + " keeps forking new processes");
}

bool local_executor::frozen() const {
  if (cgroup_) {
    auto ev = cgroup_->events();
    return ev && ev->frozen;
  }
  for (auto pid : tree_pids()) {
    auto st = read_proc_stat(pid);
    if (st && st->state != 'T' && st->state != 't' && st->state != 'Z')
      return false;
  }
  return true;
}

status local_executor::thaw() {
  status r = ok;
  if (cgroup_)
    r = cgroup_->thaw();
  else
    continue_stopped();
  // The main process decides whether the run counts as running; the rest
  // of a cgroup tree follows in continue_stopped().
  if (main_stopped())
    (void)main_.send_signal(SIGCONT);
  return r;
}

void local_executor::continue_stopped() {
  // Only processes stopped by a signal need SIGCONT; reading their state
  // first costs one read each instead of a pidfd round per process.
  for (auto pid : tree_pids()) {
    auto st = read_proc_stat(pid);
    if (!st || (st->state != 'T' && st->state != 't'))
      continue;
    auto fd = pidfd::open(pid, st->starttime);
    if (fd && (!cgroup_ || proc_cgroup2_path(pid) == cgroup_rel_))
      (void)fd->send_signal(SIGCONT);
  }
}

std::optional<std::uint64_t> local_executor::cpu_usage_usec() {
  if (!cgroup_)
    return std::nullopt;
  if (!cpu_stat_)
    cpu_stat_ = cgroup_->open_cpu_stat();
  return cpu_stat_ ? read_cpu_usage_usec(cpu_stat_.get()) : std::nullopt;
}

bool local_executor::main_stopped() const {
  if (!main_)
    return false;
  if (main_stat_) {
    auto state = read_proc_state(main_stat_.get());
    return state && (*state == 'T' || *state == 't');
  }
  auto st = read_proc_stat(main_.pid());
  return st && st->starttime == main_start_
         && (st->state == 'T' || st->state == 't');
}

std::vector<process_info> local_executor::unfrozen_processes() const {
  std::vector<process_info> out;
  for (auto pid : tree_pids()) {
    auto st = read_proc_stat(pid);
    if (!st)
      continue;
    // A process in uninterruptible sleep is what blocks a freeze.
    if (!cgroup_ ? (st->state != 'T' && st->state != 't') : st->state == 'D')
      out.push_back({pid, st->ppid, st->state, false, read_cmdline(pid), 0, 0});
  }
  if (out.empty() && cgroup_)
    for (auto pid : tree_pids())
      if (auto st = read_proc_stat(pid))
        out.push_back(
            {pid, st->ppid, st->state, false, read_cmdline(pid), 0, 0});
  return out;
}

status local_executor::signal_main(int sig) {
  if (!main_)
    return make_error(ec::not_found, "run " + run_id_ + " has no main process");
  return main_.send_signal(sig);
}

void local_executor::signal_tree(int sig) {
  if (cgroup_) {
    cgroup_->signal_all(sig);
    return;
  }
  for (auto pid : tree_pids())
    if (auto st = read_proc_stat(pid))
      signal_process_safely(pid, st->starttime, sig);
}

void local_executor::kill_tree() {
  if (cgroup_) {
    // A frozen cgroup is killed as well: SIGKILL needs no thaw.
    (void)cgroup_->kill();
    return;
  }
  // Rounds catch processes forked meanwhile. Zombies are dead already:
  // waiting for their reaping would keep walking the shim's children, and
  // could SIGKILL one the shim starts for itself at exit (LSan's tracer).
  for (int round = 0; round < 100; ++round) {
    bool any = false;
    for (auto pid : tree_pids())
      if (auto st = read_proc_stat(pid); st && st->state != 'Z') {
        any = true;
        signal_process_safely(pid, st->starttime, SIGKILL);
      }
    if (!any)
      return;
  }
}

int local_executor::process_count() const {
  return static_cast<int>(tree_pids().size());
}

std::vector<process_info> local_executor::processes(bool details) {
  std::vector<process_info> out;
  bool cg_frozen = details && cgroup_ && frozen();
  auto now = now_ns();
  auto ticks = static_cast<double>(clock_ticks_per_second());
  // For a process seen for the first time: its average since it started.
  double uptime_s = 0;
  if (auto text = read_small_file("/proc/uptime"))
    uptime_s = std::strtod(text->c_str(), nullptr);
  std::map<int, cpu_sample> next;
  for (auto pid : tree_pids()) {
    auto st = read_proc_stat(pid);
    if (!st)
      continue;
    process_info p;
    p.pid = pid;
    p.ppid = st->ppid;
    p.state = st->state;
    p.frozen = cgroup_ ? cg_frozen : (st->state == 'T' || st->state == 't');
    if (details)
      p.cmd = read_cmdline(pid);
    p.rss_bytes = st->rss_pages * static_cast<std::uint64_t>(page_size_bytes());
    auto used = st->utime + st->stime;
    if (auto it = cpu_.find(pid); it != cpu_.end() && now > it->second.at_ns
                                  && used >= it->second.ticks) {
      auto secs = static_cast<double>(now - it->second.at_ns) / 1e9;
      p.cpu_pct
          = 100.0 * static_cast<double>(used - it->second.ticks) / ticks / secs;
    } else {
      auto age_s = uptime_s - static_cast<double>(st->starttime) / ticks;
      if (age_s > 0.01)
        p.cpu_pct = 100.0 * static_cast<double>(used) / ticks / age_s;
    }
    next[pid] = {used, now};
    out.push_back(std::move(p));
  }
  cpu_ = std::move(next);
  return out;
}

exit_facts local_executor::collect_exit() {
  if (!reaped_) {
    if (shim_is_child_) {
      int wstatus = 0;
      while (::waitpid(shim_.pid(), &wstatus, 0) < 0 && errno == EINTR) {
      }
    } else {
      // Someone else reaps it; its pidfd turns readable once it exited,
      // and it wrote its record before that.
      pollfd p{shim_.fd(), POLLIN, 0};
      while (::poll(&p, 1, -1) < 0 && errno == EINTR) {
      }
    }
    reaped_ = true;
  }
  return facts_from_record(run_dir_);
}

void local_executor::cleanup() {
  cpu_stat_.reset();
  if (cgroup_)
    (void)cgroup_->remove();
}

} // namespace corral
