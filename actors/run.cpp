#include "actors/run.hpp"

#include <sys/epoll.h>

#include <glob.h>
#include <sys/stat.h>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "services/pidfd.hpp"

namespace corral {

namespace {

using namespace std::chrono;
using self_ptr = run_actor::stateful_pointer<run_actor_state>;

double seconds_since(steady_clock::time_point t) {
  return duration<double>(steady_clock::now() - t).count();
}

// Newest modification time among the files a checkpoint glob matches.
std::optional<std::int64_t> newest_mtime_ns(const std::string& pattern) {
  glob_t g{};
  std::optional<std::int64_t> best;
  if (::glob(pattern.c_str(), 0, nullptr, &g) == 0) {
    for (std::size_t i = 0; i < g.gl_pathc; ++i) {
      struct stat st {};
      if (::stat(g.gl_pathv[i], &st) == 0) {
        auto ns = std::int64_t{st.st_mtim.tv_sec} * 1'000'000'000
                  + st.st_mtim.tv_nsec;
        if (!best || ns > *best)
          best = ns;
      }
    }
  }
  ::globfree(&g);
  return best;
}

std::string checkpoint_glob(const run_spec& spec) {
  auto& pattern = spec.artifacts.checkpoints;
  if (pattern.empty() || pattern.front() == '/')
    return pattern;
  return spec.cwd + "/" + pattern;
}

// GPU memory used by the processes of the tree, where NVML tells.
std::optional<std::uint64_t>
gpu_memory_of(gpu_inventory* inventory,
              const std::vector<process_info>& processes) {
  if (inventory == nullptr || inventory->source() != "nvml")
    return std::nullopt;
  std::uint64_t total = 0;
  for (auto& gp : inventory->processes())
    for (auto& p : processes)
      if (p.pid == gp.pid)
        total += gp.memory_used;
  return total;
}

run_view snapshot(self_ptr self, bool with_processes) {
  auto& st = self->state;
  auto v = st.view;
  v.active_s = st.active_before_s;
  if (v.state == run_state::running)
    v.active_s += seconds_since(st.running_since);
  if (st.exec && is_active(v.state)) {
    v.pid = st.exec->main_pid();
    if (with_processes) {
      v.processes = st.exec->processes();
      v.process_count = static_cast<int>(v.processes->size());
      v.gpu_memory_bytes = gpu_memory_of(st.cfg.inventory, *v.processes);
      for (auto& p : *v.processes) {
        v.cpu_pct += p.cpu_pct;
        v.rss_bytes += p.rss_bytes;
      }
    } else {
      v.process_count = st.exec->process_count();
      v.cpu_pct = st.cpu_pct;
      v.rss_bytes = st.rss_bytes;
      v.gpu_memory_bytes = st.gpu_memory;
    }
  } else if (with_processes) {
    v.processes = std::vector<process_info>{};
  }
  return v;
}

constexpr std::size_t max_events = 1000;

void record(self_ptr self, std::string type, std::string cause,
            std::string message,
            nlohmann::json data = nlohmann::json::object()) {
  auto& h = self->state.history;
  h.push_back({system_clock::now(), std::move(type), std::move(cause),
               std::move(message), std::move(data)});
  if (h.size() > max_events)
    h.pop_front();
}

void change_state(self_ptr self, run_state next, const std::string& cause,
                  const std::string& message) {
  auto& st = self->state;
  auto prev = st.view.state;
  if (prev == next)
    return;
  if (prev == run_state::running)
    st.active_before_s += seconds_since(st.running_since);
  if (next == run_state::running)
    st.running_since = steady_clock::now();
  st.view.state = next;
  record(self, "state", cause, message,
         {{"from", std::string{to_string(prev)}},
          {"to", std::string{to_string(next)}},
          {"attempt", st.view.attempt}});
  spdlog::info("run/{} {} → {} ({}): {}", st.cfg.id, to_string(prev),
               to_string(next), cause, message);
}

template <class Atom>
void watch_fd(self_ptr self, int slot, int fd, std::uint32_t events) {
  auto& st = self->state;
  if (fd < 0)
    return;
  auto hdl = caf::actor_cast<run_actor>(self);
  st.cfg.events->watch(
      fd, events, [hdl](std::uint32_t) { caf::anon_send(hdl, Atom::value); });
  st.watched_fds[slot] = fd;
}

void unwatch_fd(self_ptr self, int slot) {
  auto& st = self->state;
  if (st.watched_fds[slot] >= 0) {
    st.cfg.events->unwatch(st.watched_fds[slot]);
    st.watched_fds[slot] = -1;
  }
}

void fail_waiters(std::vector<caf::typed_response_promise<view_result>>& ws,
                  const error& err) {
  for (auto& w : ws)
    w.deliver(view_result{err});
  ws.clear();
}

void send_stop_signal(self_ptr self) {
  auto& st = self->state;
  auto& stop = st.cfg.spec.stop;
  if (stop.mode == stop_mode::tree) {
    record(self, "signal", "stop",
           "sent " + signal_name(stop.signal) + " to every process");
    spdlog::info("run/{} sends {} to every process", st.cfg.id,
                 signal_name(stop.signal));
    st.exec->signal_tree(stop.signal);
  } else {
    record(self, "signal", "stop",
           "sent " + signal_name(stop.signal) + " to the main process");
    spdlog::info("run/{} sends {} to its main process", st.cfg.id,
                 signal_name(stop.signal));
    if (!st.exec->signal_main(stop.signal))
      // The main process is gone already: the shim stops what is left.
      spdlog::debug("run/{} main process already exited", st.cfg.id);
  }
  self->delayed_send(self, st.stop_grace, atom::deadline::value,
                     std::string{"kill"}, st.stop_generation);
}

void begin_stop(self_ptr self, const stop_request& req,
                const std::string& reason) {
  auto& st = self->state;
  st.stop_reason = reason;
  st.stop_grace = req.grace.value_or(st.cfg.spec.stop.grace);
  ++st.stop_generation;
  fail_waiters(st.pause_waiters,
               make_error(ec::invalid_transition,
                          "run " + st.cfg.id + " is being stopped"));
  if (st.view.state == run_state::paused) {
    // A frozen trainer cannot run its SIGTERM handler: thaw first.
    (void)st.exec->thaw();
    st.exec->continue_stopped();
    st.paused_by_request = false;
  }
  change_state(self, run_state::stopping, reason,
               req.force ? "killing every process now"
                         : "stop sequence begins");
  if (req.force) {
    st.exec->kill_tree();
    return;
  }
  auto& stop = st.cfg.spec.stop;
  if (stop.checkpoint_signal && !st.cfg.spec.artifacts.checkpoints.empty()) {
    st.checkpoint_baseline_ns
        = newest_mtime_ns(checkpoint_glob(st.cfg.spec)).value_or(0);
    spdlog::info("run/{} asks for a checkpoint with {}", st.cfg.id,
                 signal_name(*stop.checkpoint_signal));
    (void)st.exec->signal_main(*stop.checkpoint_signal);
    self->delayed_send(self, milliseconds{200}, atom::deadline::value,
                       std::string{"ckpt"}, st.stop_generation);
    self->delayed_send(self, stop.checkpoint_timeout, atom::deadline::value,
                       std::string{"ckpt_timeout"}, st.stop_generation);
    return;
  }
  send_stop_signal(self);
}

void finish_pause(self_ptr self) {
  auto& st = self->state;
  st.paused_by_request = true;
  change_state(self, run_state::paused, "user",
               "every process frozen via " + st.exec->mechanism());
  auto v = snapshot(self, false);
  for (auto& w : st.pause_waiters)
    w.deliver(view_result{v});
  st.pause_waiters.clear();
}

// Reconciles the state with what the kernel says; the only place a run
// becomes paused or running without a request.
void observe(self_ptr self) {
  auto& st = self->state;
  if (!st.exec)
    return;
  if (!st.pause_waiters.empty() && st.exec->frozen()) {
    finish_pause(self);
    return;
  }
  auto s = st.view.state;
  if (s == run_state::running && st.pause_waiters.empty()) {
    if (st.exec->main_stopped())
      change_state(self, run_state::paused, "external",
                   "main process was stopped from outside (e.g. SIGSTOP)");
    else if (st.exec->uses_cgroup() && st.exec->frozen())
      change_state(self, run_state::paused, "external",
                   "the run's cgroup was frozen from outside");
  } else if (s == run_state::paused) {
    // Frozen counts when we froze it, or when its cgroup is frozen by
    // anyone; one look at the kernel either way.
    bool still = st.exec->main_stopped()
                 || ((st.paused_by_request || st.exec->uses_cgroup())
                     && st.exec->frozen());
    if (!still) {
      st.paused_by_request = false;
      change_state(self, run_state::running, "external",
                   "the run was resumed from outside (e.g. SIGCONT)");
    }
  }
}

void on_ended(self_ptr self) {
  auto& st = self->state;
  auto facts = st.exec->collect_exit();
  auto ending = classify_ending(facts, st.stop_reason);
  st.unwatch_all();
  st.exec->cleanup();
  st.view.reason = ending.reason;
  st.view.message = ending.message;
  st.view.exit_code = ending.exit_code;
  st.view.signal = ending.signal;
  st.view.ended_at = system_clock::now();
  st.view.pid = st.exec->main_pid();
  change_state(self, ending.state, ending.reason, ending.message);
  fail_waiters(st.pause_waiters,
               make_error(ec::invalid_transition,
                          "run " + st.cfg.id + " is "
                              + std::string{to_string(ending.state)}
                              + "; only a running run can be paused"));
  ++st.stop_generation;
  ++st.attempt_generation;
  if (st.end_waiters.empty()
      && should_restart(st.cfg.spec.restart, ending, st.restarts)) {
    auto wait = restart_backoff(st.cfg.spec.restart, st.restarts);
    ++st.restarts;
    st.view.retry_at = system_clock::now() + wait;
    change_state(self, run_state::queued, "restart",
                 "attempt " + std::to_string(st.view.attempt) + " "
                     + ending.message + "; restart "
                     + std::to_string(st.restarts) + " of "
                     + std::to_string(st.cfg.spec.restart.max) + " in "
                     + std::to_string(wait.count()) + " ms");
    ++st.view.attempt;
    self->send(st.cfg.registry, atom::ended::value, st.cfg.id, false);
    self->delayed_send(self, wait, atom::deadline::value, std::string{"retry"},
                       st.attempt_generation);
    return;
  }
  auto v = snapshot(self, false);
  for (auto& w : st.end_waiters)
    w.deliver(view_result{v});
  st.end_waiters.clear();
  self->send(st.cfg.registry, atom::ended::value, st.cfg.id, true);
}

void on_report(self_ptr self) {
  auto& st = self->state;
  while (auto report = st.exec->read_report()) {
    unwatch_fd(self, 0);
    if (!report->started) {
      // The shim records the same error in its exit file and exits next.
      spdlog::warn("run/{} cannot start: {}", st.cfg.id, report->message);
      continue;
    }
    if (auto r = st.exec->adopt_main(report->pid, report->starttime); !r)
      spdlog::warn("run/{} cannot hold its main process: {}", st.cfg.id,
                   r.error().message);
    watch_fd<atom::main_exit>(self, 2, st.exec->main_fd(),
                              EPOLLIN | EPOLLONESHOT);
    st.view.pid = report->pid;
    st.view.started_at = system_clock::now();
    if (st.pending_stop) {
      // Asked to stop while starting: the state is stopping already.
      st.view.state = run_state::running;
      st.running_since = steady_clock::now();
      auto req = *st.pending_stop;
      st.pending_stop.reset();
      begin_stop(self, req, *st.stop_reason);
    } else {
      change_state(self, run_state::running, "started",
                   "main process " + std::to_string(report->pid) + " started");
    }
    if (auto limit = st.cfg.spec.max_runtime)
      self->delayed_send(self, *limit, atom::deadline::value,
                         std::string{"runtime"}, st.attempt_generation);
  }
  // A closed pipe stays readable: stop watching it, or the reactor spins.
  if (st.exec->status_closed())
    unwatch_fd(self, 0);
}

// Starts an attempt on the given GPUs: shim, watches, observation ticks.
void launch(self_ptr self, const std::vector<int>& gpus) {
  auto& st = self->state;
  auto& spec = st.cfg.spec;
  st.view.gpus = gpus;
  st.view.retry_at.reset();
  st.view.pid.reset();
  st.view.exit_code.reset();
  st.view.signal.reset();
  st.view.ended_at.reset();
  st.view.reason.clear();
  st.view.message.clear();
  st.stop_reason.reset();
  st.paused_by_request = false;
  st.exec.reset();
  st.attempt_active_base = st.active_before_s;
  change_state(self, run_state::starting, "scheduled",
               gpus.empty()
                   ? std::string{"starting without GPUs"}
                   : fmt::format("starting on GPU {}", fmt::join(gpus, ",")));
  auto launched = local_executor::launch(st.cfg.exec, st.cfg.id, spec, gpus,
                                         st.view.attempt > 1);
  if (!launched) {
    st.view.reason = "exec_error";
    st.view.message = launched.error().message;
    st.view.ended_at = system_clock::now();
    spdlog::error("run/{} cannot start: {}", st.cfg.id,
                  launched.error().message);
    change_state(self, run_state::failed, "exec_error",
                 launched.error().message);
    self->send(st.cfg.registry, atom::ended::value, st.cfg.id, true);
    return;
  }
  st.exec = std::move(*launched);
  st.view.pause_mechanism = st.exec->mechanism();
  spdlog::info("run/{} starts {} (attempt {}, pause via {})", st.cfg.id,
               spec.command.front(), st.view.attempt, st.exec->mechanism());
  watch_fd<atom::report>(self, 0, st.exec->status_fd(), EPOLLIN);
  watch_fd<atom::shim_exit>(self, 1, st.exec->shim_fd(),
                            EPOLLIN | EPOLLONESHOT);
  if (auto path = st.exec->events_path(); !path.empty()) {
    auto hdl = caf::actor_cast<run_actor>(self);
    st.events_watch = st.cfg.events->watch_path(
        path, [hdl] { caf::anon_send(hdl, atom::cg_event::value); });
  }
  self->delayed_send(self, st.cfg.observe_interval, atom::tick::value);
}

// Ends a run that never started (stopped while queued or in backoff).
void end_unstarted(self_ptr self, const std::string& reason) {
  auto& st = self->state;
  st.view.reason = reason;
  st.view.message = reason == "daemon_exit"
                        ? "stopped at daemon exit before it started"
                        : "stopped before it started";
  st.view.retry_at.reset();
  st.view.ended_at = system_clock::now();
  ++st.attempt_generation; // cancels a pending retry
  change_state(self, run_state::stopped, reason, st.view.message);
  self->send(st.cfg.registry, atom::ended::value, st.cfg.id, true);
}

} // namespace

run_actor_state::~run_actor_state() {
  unwatch_all();
}

void run_actor_state::unwatch_all() {
  for (auto& fd : watched_fds) {
    if (fd >= 0)
      cfg.events->unwatch(fd);
    fd = -1;
  }
  if (events_watch >= 0) {
    cfg.events->unwatch_path(events_watch);
    events_watch = -1;
  }
}

run_actor::behavior_type run(run_actor::stateful_pointer<run_actor_state> self,
                             run_config cfg) {
  auto& st = self->state;
  st.cfg = std::move(cfg);
  auto& spec = st.cfg.spec;
  st.view.id = st.cfg.id;
  st.view.experiment = spec.experiment;
  st.view.state = run_state::queued;
  st.view.created_at = system_clock::now();
  st.view.cwd = spec.cwd;
  st.view.command = spec.command;
  return {
      [=](atom::get, bool with_processes) -> view_result {
        return snapshot(self, with_processes);
      },
      [=](atom::events) -> events_result {
        auto& h = self->state.history;
        return std::vector<run_event>(h.begin(), h.end());
      },
      [=](atom::pause) -> caf::result<view_result> {
        auto& st = self->state;
        if (auto r = check_pause(st.cfg.id, st.view.state); !r)
          return view_result{r.error()};
        if (auto r = st.exec->freeze(); !r)
          return view_result{r.error()};
        auto rp = self->make_response_promise<view_result>();
        st.pause_waiters.push_back(rp);
        if (st.exec->frozen()) {
          finish_pause(self);
          return rp;
        }
        if (st.pause_waiters.size() == 1) {
          auto gen = ++st.pause_generation;
          self->delayed_send(self, st.cfg.pause_timeout, atom::deadline::value,
                             std::string{"pause"}, gen);
          if (!st.exec->uses_cgroup())
            // No kernel notification for "all stopped": look again shortly.
            self->delayed_send(self, milliseconds{1}, atom::deadline::value,
                               std::string{"pause_poll"}, gen);
        }
        return rp;
      },
      [=](atom::resume) -> view_result {
        auto& st = self->state;
        if (auto r = check_resume(st.cfg.id, st.view.state); !r)
          return view_result{r.error()};
        if (auto r = st.exec->thaw(); !r)
          return view_result{r.error()};
        st.paused_by_request = false;
        change_state(self, run_state::running, "user",
                     "every process thawed and continued");
        // Processes stopped from outside get SIGCONT right after the answer:
        // a read per process would double the resume latency.
        self->send(self, atom::deadline::value, std::string{"continue"},
                   std::uint64_t{0});
        return snapshot(self, false);
      },
      [=](atom::stop, stop_request req) -> caf::result<view_result> {
        auto& st = self->state;
        if (auto r = check_stop(st.cfg.id, st.view.state); !r)
          return view_result{r.error()};
        if (st.view.state == run_state::queued) {
          end_unstarted(self, "user");
          return snapshot(self, false);
        }
        if (st.view.state == run_state::stopping) {
          if (req.force) {
            spdlog::info("run/{} escalates its stop to SIGKILL", st.cfg.id);
            record(self, "signal", "user", "forced: SIGKILL to every process");
            if (st.exec)
              st.exec->kill_tree();
          }
        } else if (st.view.state == run_state::starting) {
          st.pending_stop = req;
          st.stop_reason = "user";
          change_state(self, run_state::stopping, "user",
                       "stop requested while starting");
        } else {
          begin_stop(self, req, "user");
        }
        if (req.wait && !is_ended(st.view.state)) {
          auto rp = self->make_response_promise<view_result>();
          st.end_waiters.push_back(rp);
          return rp;
        }
        return snapshot(self, false);
      },
      [=](atom::shutdown) -> caf::result<view_result> {
        auto& st = self->state;
        if (is_ended(st.view.state))
          return snapshot(self, false);
        if (st.view.state == run_state::queued) {
          end_unstarted(self, "daemon_exit");
          return snapshot(self, false);
        }
        if (st.view.state == run_state::starting) {
          st.pending_stop = stop_request{};
          st.stop_reason = "daemon_exit";
          change_state(self, run_state::stopping, "daemon_exit",
                       "daemon exits while the run starts");
        } else if (st.view.state != run_state::stopping) {
          begin_stop(self, stop_request{}, "daemon_exit");
        }
        auto rp = self->make_response_promise<view_result>();
        st.end_waiters.push_back(rp);
        return rp;
      },
      [=](atom::start, std::vector<int> gpus) {
        if (self->state.view.state == run_state::queued)
          launch(self, gpus);
      },
      [=](atom::report) { on_report(self); },
      [=](atom::shim_exit) {
        // The status pipe may still hold the report the shim wrote.
        if (self->state.watched_fds[0] >= 0)
          on_report(self);
        on_ended(self);
      },
      [=](atom::main_exit) {
        auto& st = self->state;
        unwatch_fd(self, 2);
        if (st.view.state == run_state::running
            || st.view.state == run_state::paused)
          change_state(
              self, run_state::stopping, "exit",
              "main process exited; stopping what is left of its tree");
      },
      [=](atom::cg_event) { observe(self); },
      [=](atom::tick) {
        auto& st = self->state;
        if (is_ended(st.view.state))
          return;
        observe(self);
        // Every few ticks, refresh the tree's CPU and RSS for summaries.
        if (st.exec && ++st.ticks % 8 == 0) {
          st.cpu_pct = 0;
          st.rss_bytes = 0;
          auto tree = st.exec->processes();
          for (auto& p : tree) {
            st.cpu_pct += p.cpu_pct;
            st.rss_bytes += p.rss_bytes;
          }
          st.gpu_memory = gpu_memory_of(st.cfg.inventory, tree);
        }
        self->delayed_send(self, st.cfg.observe_interval, atom::tick::value);
      },
      [=](atom::deadline, std::string kind, std::uint64_t gen) {
        auto& st = self->state;
        if (kind == "pause" || kind == "pause_poll") {
          if (gen != st.pause_generation || st.pause_waiters.empty())
            return;
          if (st.exec->frozen()) {
            finish_pause(self);
          } else if (kind == "pause_poll") {
            self->delayed_send(self, milliseconds{1}, atom::deadline::value,
                               std::string{"pause_poll"}, gen);
          } else {
            auto stuck = st.exec->unfrozen_processes();
            (void)st.exec->thaw();
            st.exec->continue_stopped();
            std::string names;
            for (auto& p : stuck)
              names += (names.empty() ? "" : ", ") + std::to_string(p.pid)
                       + " (" + p.cmd + ", state " + std::string(1, p.state)
                       + ")";
            auto err
                = make_error(ec::pause_timeout,
                             "run " + st.cfg.id + " did not freeze within "
                                 + std::to_string(st.cfg.pause_timeout.count())
                                 + " ms and was thawed again; processes that "
                                   "would not stop: "
                                 + (names.empty() ? "unknown" : names));
            spdlog::warn("run/{} pause timed out: {}", st.cfg.id, err.message);
            record(self, "pause_timeout", "user", err.message);
            fail_waiters(st.pause_waiters, err);
          }
          return;
        }
        if (kind == "retry") {
          if (gen == st.attempt_generation
              && st.view.state == run_state::queued) {
            st.view.retry_at.reset();
            self->send(st.cfg.registry, atom::requeue::value, st.cfg.id);
          }
          return;
        }
        if (kind == "runtime") {
          auto s = st.view.state;
          if (gen != st.attempt_generation
              || (s != run_state::running && s != run_state::paused))
            return;
          // max_runtime counts running time: a paused run gets its pause
          // back before the limit applies.
          auto active = st.active_before_s - st.attempt_active_base;
          if (s == run_state::running)
            active += seconds_since(st.running_since);
          auto limit = duration<double>(*st.cfg.spec.max_runtime).count();
          if (active + 0.001 < limit) {
            self->delayed_send(
                self,
                duration_cast<milliseconds>(duration<double>(limit - active))
                    + milliseconds{1},
                atom::deadline::value, std::string{"runtime"}, gen);
            return;
          }
          spdlog::info("run/{} exceeded max_runtime; stopping it", st.cfg.id);
          begin_stop(self, stop_request{}, "timeout");
          return;
        }
        if (kind == "continue") {
          if (st.exec && is_active(st.view.state))
            st.exec->continue_stopped();
          return;
        }
        if (gen != st.stop_generation || st.view.state != run_state::stopping)
          return;
        if (kind == "kill") {
          record(self, "signal", "grace",
                 "grace period over: SIGKILL to every process left");
          spdlog::info("run/{} grace period over: SIGKILL to what is left",
                       st.cfg.id);
          st.exec->kill_tree();
        } else if (kind == "ckpt") {
          auto now = newest_mtime_ns(checkpoint_glob(st.cfg.spec)).value_or(0);
          if (now > st.checkpoint_baseline_ns.value_or(0)) {
            spdlog::info("run/{} saw a new checkpoint", st.cfg.id);
            record(self, "checkpoint", "stop",
                   "a new checkpoint was saved before the stop signal");
            ++st.stop_generation; // cancels ckpt_timeout
            send_stop_signal(self);
          } else {
            self->delayed_send(self, milliseconds{200}, atom::deadline::value,
                               std::string{"ckpt"}, gen);
          }
        } else if (kind == "ckpt_timeout") {
          record(
              self, "checkpoint", "stop",
              "no new checkpoint within checkpoint_timeout; stopping anyway");
          spdlog::warn("run/{} wrote no checkpoint in time; stopping anyway",
                       st.cfg.id);
          ++st.stop_generation;
          send_stop_signal(self);
        }
      },
  };
}

} // namespace corral
