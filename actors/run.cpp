#include "actors/run.hpp"

#include <sys/epoll.h>
#include <sys/inotify.h>

#include <functional>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "services/pidfd.hpp"
#include "services/run_record.hpp"
#include "services/run_spec_json.hpp"
#include "services/slurm_executor.hpp"
#include "services/spec.hpp"
#include "services/units.hpp"

namespace corral {

namespace {

using namespace std::chrono;
using self_ptr = run_actor::stateful_pointer<run_actor_state>;

double seconds_since(steady_clock::time_point t) {
  return duration<double>(steady_clock::now() - t).count();
}

// The run's executor when Slurm runs it; null for a local run.
slurm_executor* slurm_of(self_ptr self) {
  return dynamic_cast<slurm_executor*>(self->state.exec.get());
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

// Running time so far, pauses excluded: the clock of rates and ETAs.
double active_now(self_ptr self) {
  auto& st = self->state;
  auto active = st.active_before_s;
  if (st.view.state == run_state::running)
    active += seconds_since(st.running_since);
  return active;
}

run_view snapshot(self_ptr self, bool with_processes) {
  auto& st = self->state;
  auto v = st.view;
  v.active_s = active_now(self);
  if (st.output) {
    v.metrics = st.output->latest_metrics();
    auto est = st.output->estimate(v.active_s);
    v.fraction = est.fraction;
    if (!is_ended(v.state))
      v.eta_s = est.eta_s;
  }
  if (st.exec && is_active(v.state)) {
    v.pid = st.exec->main_pid();
    if (with_processes) {
      v.processes = st.exec->processes(true);
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

// What an event query gets now: the events after its position.
event_answer events_after(self_ptr self, const event_query& q) {
  auto& st = self->state;
  return {st.history.after(q.after), st.history.last(), st.final};
}

// Answers the followers that have something to get (or everything, when
// the run has ended for good).
void serve_event_waiters(self_ptr self) {
  auto& ws = self->state.event_waiters;
  for (auto it = ws.begin(); it != ws.end();) {
    auto a = events_after(self, it->query);
    if (a.events.empty() && !a.ended) {
      ++it;
      continue;
    }
    it->rp.deliver(event_page_result{std::move(a)});
    it = ws.erase(it);
  }
}

void serve_log_waiters(self_ptr self) {
  auto& st = self->state;
  for (auto it = st.log_waiters.begin(); it != st.log_waiters.end();) {
    if (!st.final && !st.output->has_news(it->query)) {
      ++it;
      continue;
    }
    auto a = st.output->query(it->query, st.final);
    if (a && a->lines.empty() && !a->ended) {
      ++it;
      continue;
    }
    it->rp.deliver(std::move(a));
    it = st.log_waiters.erase(it);
  }
}

void record(self_ptr self, std::string type, std::string cause,
            std::string message,
            nlohmann::json data = nlohmann::json::object()) {
  auto& st = self->state;
  run_event e;
  e.run = st.cfg.id;
  e.t = system_clock::now();
  e.type = std::move(type);
  e.cause = std::move(cause);
  e.message = std::move(message);
  e.data = std::move(data);
  // Before any answer this event belongs to is sent: a client that acts
  // and then lists sees what it did.
  if (st.cfg.listings)
    st.cfg.listings->changed();
  auto& kept = st.history.push(std::move(e));
  st.unsaved_events.push_back(kept);
  st.dirty = true;
  self->send(st.cfg.registry, atom::event::value, kept);
  serve_event_waiters(self);
}

// The spec as saved: made again only when an attempt changed it (a
// restart by policy binds {latest_checkpoint} anew), not every second.
const nlohmann::json& spec_json(self_ptr self) {
  auto& st = self->state;
  if (st.spec_json.is_null())
    st.spec_json = spec_to_json(st.cfg.spec);
  if (st.tmpl_json.is_null())
    st.tmpl_json = spec_to_json(st.cfg.tmpl);
  return st.spec_json;
}

// What a restarted daemon needs to take the run back (see restore()).
nlohmann::json make_record(self_ptr self) {
  auto& st = self->state;
  const auto& spec = spec_json(self);
  auto v = st.view;
  v.active_s = active_now(self);
  nlohmann::json stop
      = {{"reason", st.stop_reason ? nlohmann::json(*st.stop_reason)
                                   : nlohmann::json(nullptr)},
         {"grace_ms", st.stop_grace.count()},
         {"kill_at", st.kill_at ? nlohmann::json(to_unix_ms(*st.kill_at))
                                : nlohmann::json(nullptr)},
         {"awaiting_checkpoint", st.awaiting_checkpoint}};
  return {
      {"v", 1},
      {"view", view_to_record(v)},
      {"saved_at", to_unix_ms(system_clock::now())},
      {"spec", spec},
      {"tmpl", st.tmpl_json},
      {"restart_of", st.cfg.restart_of ? nlohmann::json(*st.cfg.restart_of)
                                       : nlohmann::json(nullptr)},
      {"exec", st.exec ? st.exec->identity_json() : nlohmann::json(nullptr)},
      {"restarts", st.restarts},
      {"paused_by_request", st.paused_by_request},
      {"attempt_active_base", st.attempt_active_base},
      {"stop", stop}};
}

// The record, new events and (when output was read since) the metrics.
store_batch take_batch(self_ptr self) {
  auto& st = self->state;
  store_batch b;
  b.runs.push_back({st.cfg.id, st.cfg.seq, st.final, make_record(self)});
  if (st.output && st.output_lines != st.saved_output_lines) {
    b.metrics.push_back({st.cfg.id, st.output->save()});
    st.saved_output_lines = st.output_lines;
  }
  if (st.files && st.artifacts_dirty) {
    b.artifacts.push_back(
        {st.cfg.id, artifacts_to_record(st.files->current())});
    st.artifacts_dirty = false;
  }
  for (auto& e : st.unsaved_events)
    b.events.push_back({st.cfg.id, e.seq, event_to_record(e)});
  st.unsaved_events.clear();
  st.dirty = false;
  return b;
}

// Sends what changed to the store, which commits it a moment later.
void persist(self_ptr self) {
  auto& st = self->state;
  if (st.cfg.store)
    self->send(st.cfg.store, atom::persist::value, take_batch(self));
}

// Writes what changed and calls `then` once it is on disk (or the store
// failed, which it logs): an answer that promises a change (a stop) must
// not outrun the record a restarted daemon would read.
void persist_now(self_ptr self, std::function<void()> then) {
  auto& st = self->state;
  if (!st.cfg.store)
    return then();
  self->request(st.cfg.store, caf::infinite, atom::flush::value,
                take_batch(self))
      .then([then](ok_result&) { then(); }, [then](caf::error&) { then(); });
}

// Reads the run's new output; with `final` also an unterminated last line.
void read_output(self_ptr self, bool final = false) {
  auto& st = self->state;
  st.output_pending->store(false);
  // A trainer printing faster than we parse must not keep the actor from
  // a pause or stop: read a slice, then queue the rest behind them.
  constexpr std::size_t budget = 50000;
  auto n = st.output->poll(active_now(self), final, final ? SIZE_MAX : budget);
  st.output_lines += n;
  if (n > 0 || final)
    serve_log_waiters(self);
  if (!final && n >= budget && !st.output_pending->exchange(true))
    self->send(self, atom::output::value);
}

// Watches the directories where artifacts appear; a directory created
// later is picked up by the next rescan.
void watch_artifact_dirs(self_ptr self) {
  auto& st = self->state;
  if (!st.files || !st.files->enabled() || st.final)
    return;
  auto hdl = caf::actor_cast<run_actor>(self);
  auto pending = st.files_pending;
  for (auto& dir : st.files->directories()) {
    if (std::find(st.files_dirs.begin(), st.files_dirs.end(), dir)
        != st.files_dirs.end())
      continue;
    int id = st.cfg.events->watch_path(
        dir,
        [hdl, pending] {
          if (!pending->exchange(true))
            caf::anon_send(hdl, atom::files::value);
        },
        IN_CLOSE_WRITE | IN_MOVED_TO | IN_CREATE);
    if (id >= 0) {
      st.files_watches.push_back(id);
      st.files_dirs.push_back(dir);
    }
  }
}

// Scans the artifact patterns; every new or rewritten file is an event.
void rescan_artifacts(self_ptr self) {
  auto& st = self->state;
  st.files_pending->store(false);
  if (!st.files || !st.files->enabled())
    return;
  auto changes = st.files->rescan();
  if (!changes.empty())
    st.artifacts_dirty = true;
  for (auto& [a, is_new] : changes)
    record(self, "artifact", "run",
           (is_new ? "new " : "") + a.kind + " " + a.name
               + (is_new ? "" : " rewritten") + " (" + format_size(a.size)
               + ")",
           {{"kind", a.kind},
            {"name", a.name},
            {"path", a.path},
            {"size", a.size},
            {"mtime", format_time(a.mtime)},
            {"change", is_new ? "new" : "rewritten"}});
  watch_artifact_dirs(self);
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
  persist(self);
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
  st.kill_at = system_clock::now() + st.stop_grace;
  persist(self);
  self->delayed_send(self, st.stop_grace, atom::deadline::value,
                     std::string{"kill"}, st.stop_generation);
}

std::int64_t mtime_ns(const artifact& a) {
  return duration_cast<nanoseconds>(a.mtime.time_since_epoch()).count();
}

// The checkpoint saved since the stop asked for one, if any.
std::optional<artifact> new_checkpoint(self_ptr self) {
  auto& st = self->state;
  auto newest = latest_checkpoint(st.cfg.spec.cwd, st.cfg.spec.artifacts);
  if (newest && mtime_ns(*newest) > st.checkpoint_baseline_ns.value_or(0))
    return newest;
  return std::nullopt;
}

void record_checkpoint(self_ptr self, const artifact& a,
                       const std::string& when) {
  spdlog::info("run/{} saw a new checkpoint {}", self->state.cfg.id, a.name);
  record(
      self, "checkpoint", "stop", "checkpoint " + a.name + " was saved " + when,
      {{"saved", true}, {"name", a.name}, {"path", a.path}, {"size", a.size}});
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
    auto newest = latest_checkpoint(st.cfg.spec.cwd, st.cfg.spec.artifacts);
    st.checkpoint_baseline_ns = newest ? mtime_ns(*newest) : 0;
    st.awaiting_checkpoint = true;
    record(self, "signal", "stop",
           "sent " + signal_name(*stop.checkpoint_signal)
               + " to the main process to ask for a checkpoint",
           {{"signal", signal_name(*stop.checkpoint_signal)}});
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
// `cgroup_changed`: cgroup.events changed (inotify). A freeze from outside
// shows there, so the once-a-second look at a running run reads only its
// main process's state.
void observe(self_ptr self, bool cgroup_changed) {
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
    else if (cgroup_changed && st.exec->uses_cgroup() && st.exec->frozen())
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

// The tree's CPU and RSS for summaries. A tree that used no CPU since the
// last look has not changed either: one cgroup read instead of a /proc
// walk per process (a thousand quiet runs cost next to nothing).
void refresh_resources(self_ptr self) {
  auto& st = self->state;
  auto usage = st.exec->cpu_usage_usec();
  if (usage && usage == st.tree_cpu_usec && st.ticks - st.resources_tick < 30) {
    st.cpu_pct = 0;
    return;
  }
  st.tree_cpu_usec = usage;
  st.resources_tick = st.ticks;
  st.cpu_pct = 0;
  st.rss_bytes = 0;
  auto tree = st.exec->processes(false);
  for (auto& p : tree) {
    st.cpu_pct += p.cpu_pct;
    st.rss_bytes += p.rss_bytes;
  }
  st.gpu_memory = gpu_memory_of(st.cfg.inventory, tree);
}

// The run's processes are gone: how they ended decides the state, and the
// restart policy whether another attempt follows. `while_away`: they ended
// while no daemon watched (found by a restarted daemon).
void finish_ending(self_ptr self, const exit_facts& facts,
                   bool while_away = false) {
  auto& st = self->state;
  auto ending = classify_ending(facts, st.stop_reason);
  if (while_away && !facts.recorded) {
    ending.state = run_state::failed;
    ending.reason = "lost";
    ending.message = "its processes vanished while the daemon was down, and "
                     "its shim left no exit record";
  }
  st.unwatch_all();
  read_output(self);
  if (st.awaiting_checkpoint) {
    // The run ended while the stop waited for its checkpoint.
    st.awaiting_checkpoint = false;
    if (auto saved = new_checkpoint(self))
      record_checkpoint(self, *saved, "as the run ended");
    else
      record(self, "checkpoint", "stop",
             "the run ended before it saved a checkpoint",
             {{"saved", false}, {"name", nullptr}});
  }
  if (st.exec)
    st.exec->cleanup();
  if (auto* s = slurm_of(self); s && st.cfg.slurm && !s->job_id().empty())
    self->send(st.cfg.slurm, atom::unwatch::value, s->job_id());
  st.kill_at.reset();
  st.view.reason = ending.reason;
  st.view.message = ending.message;
  st.view.exit_code = ending.exit_code;
  st.view.signal = ending.signal;
  st.view.ended_at = system_clock::now();
  if (st.exec)
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
    st.view.slurm_job_id.reset(); // the next attempt is a new job
    st.view.node.reset();
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
  st.final = true;
  read_output(self, true);
  rescan_artifacts(self);
  st.unwatch_files();
  serve_event_waiters(self);
  auto v = snapshot(self, false);
  for (auto& w : st.end_waiters)
    w.deliver(view_result{v});
  st.end_waiters.clear();
  persist(self);
  self->send(st.cfg.registry, atom::ended::value, st.cfg.id, true);
}

void on_ended(self_ptr self) {
  finish_ending(self, self->state.exec->collect_exit());
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
  // A closed pipe stays readable: stop watching it. An open one is armed
  // again now that what was ready has been read (the watch is one-shot).
  if (st.exec->status_closed())
    unwatch_fd(self, 0);
  else if (st.watched_fds[0] >= 0)
    st.cfg.events->rearm(st.watched_fds[0], EPOLLIN | EPOLLONESHOT);
}

void watch_run(self_ptr self);
void on_slurm_answer(self_ptr self, std::uint64_t attempt,
                     const std::string& tag, const command_result& answer);

// Hands a Slurm executor's commands to the slurm actor; the answers come
// back to on_slurm_answer, tied to the attempt that sent them.
slurm_sender slurm_sender_of(self_ptr self) {
  return [self](slurm_request req) {
    auto& st = self->state;
    auto attempt = st.attempt_generation;
    if (!st.cfg.slurm) {
      spdlog::error("run/{} has no Slurm client for '{}'", st.cfg.id, req.tag);
      return;
    }
    self->request(st.cfg.slurm, caf::infinite, atom::slurm::value,
                  std::move(req.commands))
        .then(
            [self, attempt, tag = req.tag](command_result& r) {
              on_slurm_answer(self, attempt, tag, r);
            },
            [self, attempt, tag = req.tag](caf::error& e) {
              on_slurm_answer(
                  self, attempt, tag,
                  command_result{make_error(ec::internal, caf::to_string(e))});
            });
  };
}

// Ends an attempt that could not start: the run fails with exec_error.
void fail_to_launch(self_ptr self, const std::string& message) {
  auto& st = self->state;
  st.view.reason = "exec_error";
  st.view.message = message;
  st.view.ended_at = system_clock::now();
  spdlog::error("run/{} cannot start: {}", st.cfg.id, message);
  change_state(self, run_state::failed, "exec_error", message);
  self->send(st.cfg.registry, atom::ended::value, st.cfg.id, true);
}

// Submits an attempt to Slurm. The run stays queued while Slurm keeps the
// job pending; squeue's RUNNING makes it running (on_slurm_job).
void launch_slurm(self_ptr self) {
  auto& st = self->state;
  auto look_first = std::exchange(st.slurm_lookup, false);
  auto launched = slurm_executor::launch(st.cfg.exec, st.cfg.id, st.cfg.spec,
                                         st.view.attempt > 1 || look_first,
                                         slurm_sender_of(self), look_first);
  if (!launched) {
    fail_to_launch(self, launched.error().message);
    return;
  }
  st.exec = std::move(*launched);
  st.slurm_reason.clear();
  if (st.view.attempt == 1) {
    st.files->rescan(); // what exists already is not news
    st.artifacts_dirty = true;
  }
  spdlog::info("run/{} submits {} to Slurm (attempt {})", st.cfg.id,
               st.cfg.spec.command.front(), st.view.attempt);
  watch_run(self);
  persist(self);
}

// Starts an attempt on the given GPUs: shim and watches.
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
  if (st.view.attempt > 1) {
    // A restart by policy resumes from this run's newest checkpoint.
    auto newest = latest_checkpoint(spec.cwd, spec.artifacts);
    auto again = st.cfg.tmpl;
    expand_run_placeholders(again, st.cfg.id, newest ? newest->path : "");
    spec.command = again.command;
    st.spec_json = nullptr;
    spec.env = again.env;
    st.view.command = spec.command;
  }
  st.view.slurm_job_id.reset();
  st.view.node.reset();
  if (spec.executor == "slurm") {
    launch_slurm(self);
    return;
  }
  change_state(self, run_state::starting, "scheduled",
               gpus.empty()
                   ? std::string{"starting without GPUs"}
                   : fmt::format("starting on GPU {}", fmt::join(gpus, ",")));
  auto launched = local_executor::launch(st.cfg.exec, st.cfg.id, spec, gpus,
                                         st.view.attempt > 1);
  if (!launched) {
    fail_to_launch(self, launched.error().message);
    return;
  }
  st.exec = std::move(*launched);
  if (st.view.attempt == 1) {
    st.files->rescan(); // what exists already is not news
    st.artifacts_dirty = true;
  }
  spdlog::info("run/{} starts {} (attempt {}, pause via {})", st.cfg.id,
               spec.command.front(), st.view.attempt, st.exec->mechanism());
  watch_run(self);
  // The shim's identity, at once: a daemon killed from here on must find
  // it again.
  persist(self);
}

// Watches what the run's executor exposes: its output, artifact
// directories, status pipe, shim, main process and cgroup, and takes part
// in the registry's observation ticks from now on.
void watch_run(self_ptr self) {
  auto& st = self->state;
  st.view.pause_mechanism = st.exec->mechanism();
  st.output->follow();
  // Another node's writes over NFS never reach inotify.
  st.poll_output = slurm_of(self) && st.cfg.exec.slurm_poll_logs;
  if (st.output_watch < 0 && !st.poll_output) {
    auto hdl = caf::actor_cast<run_actor>(self);
    auto pending = st.output_pending;
    st.output_watch = st.cfg.events->watch_path(
        st.exec->run_dir(),
        [hdl, pending] {
          if (!pending->exchange(true))
            caf::anon_send(hdl, atom::output::value);
        },
        IN_MODIFY | IN_CREATE | IN_MOVED_TO);
  }
  watch_artifact_dirs(self);
  watch_fd<atom::report>(self, 0, st.exec->status_fd(), EPOLLIN | EPOLLONESHOT);
  watch_fd<atom::shim_exit>(self, 1, st.exec->shim_fd(),
                            EPOLLIN | EPOLLONESHOT);
  if (auto path = st.exec->events_path(); !path.empty()) {
    auto hdl = caf::actor_cast<run_actor>(self);
    st.events_watch = st.cfg.events->watch_path(
        path, [hdl] { caf::anon_send(hdl, atom::cg_event::value); });
  }
}

// Queued, with this attempt's job handed to Slurm (pending, or sbatch
// still running).
bool submitted_to_slurm(self_ptr self) {
  auto& st = self->state;
  return slurm_of(self) && st.view.state == run_state::queued
         && !st.view.retry_at;
}

// Stops a run whose Slurm job has not started: scancel, and the run ends
// once squeue shows the job gone.
void cancel_pending(self_ptr self, const std::string& reason) {
  auto& st = self->state;
  auto* s = slurm_of(self);
  st.stop_reason = reason;
  ++st.stop_generation;
  change_state(self, run_state::stopping, reason,
               s->job_id().empty()
                   ? std::string{"the job will be cancelled as soon as "
                                 "sbatch answers"}
                   : "cancelling Slurm job " + s->job_id()
                         + " before it started");
  s->kill_tree(); // without a job id yet, the submit answer cancels it
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
  st.final = true;
  change_state(self, run_state::stopped, reason, st.view.message);
  read_output(self, true);
  st.unwatch_files();
  persist(self);
  self->send(st.cfg.registry, atom::ended::value, st.cfg.id, true);
}

// A stop that was under way when the daemon restarted goes on with its
// deadline.
void continue_stop(self_ptr self, const nlohmann::json& stop) {
  auto& st = self->state;
  ++st.stop_generation;
  auto kill_at = stop.at("kill_at");
  if (stop.value("awaiting_checkpoint", false) || kill_at.is_null()) {
    // The stop signal may not have gone out yet: send it (again; a
    // trainer that handles it once handles it twice), with a new grace.
    send_stop_signal(self);
  } else {
    auto due = from_unix_ms(kill_at.get<std::int64_t>());
    st.kill_at = due;
    auto left
        = std::max(milliseconds{0},
                   duration_cast<milliseconds>(due - system_clock::now()));
    self->delayed_send(self, left, atom::deadline::value, std::string{"kill"},
                       st.stop_generation);
  }
}

// Takes an active run back after the daemon restarted: its executor holds
// the shim, cgroup and main process again; the state is what the kernel
// says now, the stop (if one was under way) goes on with its deadline.
void adopt_active(self_ptr self, std::unique_ptr<executor> exec,
                  const nlohmann::json& stop) {
  auto& st = self->state;
  auto stored = st.view.state;
  st.exec = std::move(exec);
  st.running_since = steady_clock::now();
  watch_run(self);
  watch_fd<atom::main_exit>(self, 2, st.exec->main_fd(),
                            EPOLLIN | EPOLLONESHOT);
  if (auto pid = st.exec->main_pid())
    st.view.pid = *pid;
  if (!st.view.started_at)
    st.view.started_at = system_clock::now();
  auto now_state = stored;
  if (stored == run_state::stopping) {
    continue_stop(self, stop);
  } else if (!st.exec->main_pid()) {
    // Never reported (the daemon died as the shim started it), or exited
    // while the shim finishes: the shim's exit settles it either way.
    now_state = stored == run_state::starting ? run_state::running
                                              : run_state::stopping;
  } else if (st.exec->main_stopped()
             || (st.exec->uses_cgroup() && st.exec->frozen())) {
    now_state = run_state::paused;
  } else {
    now_state = run_state::running;
    st.paused_by_request = false;
  }
  // The state as found, without an event of its own: the only trace of
  // the restart is the event below.
  st.view.state = now_state;
  record(self, "daemon", "restart",
         "the daemon restarted and took the run back: "
             + std::string{to_string(now_state)},
         {{"before", std::string{to_string(stored)}},
          {"state", std::string{to_string(now_state)}},
          {"pid", st.view.pid ? nlohmann::json(*st.view.pid)
                              : nlohmann::json(nullptr)}});
  spdlog::info("run/{} re-adopted: {} (was {} when the daemon stopped)",
               st.cfg.id, to_string(now_state), to_string(stored));
  if (st.cfg.spec.max_runtime && now_state != run_state::stopping)
    self->send(self, atom::deadline::value, std::string{"runtime"},
               st.attempt_generation);
  rescan_artifacts(self);
  persist(self);
}

// Watches the Slurm job a previous daemon submitted. Its state is what
// the next poll says; until then the run shows what was saved.
void restore_slurm(self_ptr self, const nlohmann::json& identity,
                   const nlohmann::json& stop) {
  auto& st = self->state;
  auto stored = st.view.state;
  st.running_since = steady_clock::now();
  auto adopted = slurm_executor::adopt(st.cfg.exec, st.cfg.id, identity,
                                       slurm_sender_of(self));
  // (A daemon without a Slurm client does not start while its store holds
  // Slurm runs: see daemon_runtime.)
  if (!adopted) {
    auto why = adopted.error().message;
    spdlog::error("run/{} cannot follow its Slurm job: {}", st.cfg.id, why);
    st.output->follow();
    record(self, "daemon", "restart",
           "the daemon restarted but cannot follow the run's Slurm job: "
               + why);
    finish_ending(self, exit_facts{}, true);
    return;
  }
  st.exec = std::move(*adopted);
  auto* s = slurm_of(self);
  st.view.slurm_job_id = s->job_id();
  watch_run(self);
  self->send(st.cfg.slurm, atom::watch::value, s->job_id(),
             caf::actor_cast<run_actor>(self));
  if (stored == run_state::stopping)
    continue_stop(self, stop);
  record(self, "daemon", "restart",
         "the daemon restarted and follows Slurm job " + s->job_id()
             + " again (" + std::string{to_string(stored)}
             + " until squeue says otherwise)",
         {{"before", std::string{to_string(stored)}},
          {"state", std::string{to_string(stored)}},
          {"job", s->job_id()}});
  spdlog::info("run/{} follows Slurm job {} again ({})", st.cfg.id, s->job_id(),
               to_string(stored));
  if (st.cfg.spec.max_runtime
      && (stored == run_state::running || stored == run_state::paused))
    self->send(self, atom::deadline::value, std::string{"runtime"},
               st.attempt_generation);
  rescan_artifacts(self);
  persist(self);
}

// squeue's word on the run's job, after every poll: the only place a Slurm
// run becomes running, or ends.
void on_slurm_job(self_ptr self, const slurm_report& report) {
  auto& st = self->state;
  auto* s = slurm_of(self);
  if (!s || report.job_id != s->job_id() || is_ended(st.view.state))
    return;
  auto now = steady_clock::now();
  s->observe(
      report.listed ? std::optional<slurm_job>{report.job} : std::nullopt, now);
  if (!s->node().empty())
    st.view.node = s->node();
  if (s->ended(now)) {
    finish_ending(self, s->collect_exit());
    return;
  }
  auto& job = s->state();
  if (st.view.state == run_state::queued) {
    if (job == "PENDING" && s->reason() != st.slurm_reason) {
      st.slurm_reason = s->reason();
      record(self, "slurm", "slurm",
             "Slurm job " + s->job_id() + " is pending (" + s->reason() + ")",
             {{"job", s->job_id()}, {"reason", s->reason()}});
    } else if (job == "RUNNING" || job == "SUSPENDED" || job == "COMPLETING") {
      st.view.started_at = system_clock::now();
      st.view.pid = s->main_pid();
      change_state(self, run_state::running, "started",
                   "Slurm job " + s->job_id() + " runs on "
                       + (s->node().empty() ? "its node" : s->node()));
      if (auto limit = st.cfg.spec.max_runtime)
        self->delayed_send(self, *limit, atom::deadline::value,
                           std::string{"runtime"}, st.attempt_generation);
    }
    return;
  }
  if (!st.view.pid)
    st.view.pid = s->main_pid();
  auto before = st.view.state;
  observe(self, true);
  if (before == run_state::paused && st.view.state == run_state::running)
    // Resumed from outside: Slurm thawed the job, but the processes the
    // shim stopped at the suspend wait for its SIGCONT.
    st.exec->continue_stopped();
}

// Slurm answered a command the run's executor sent.
void on_slurm_answer(self_ptr self, std::uint64_t attempt,
                     const std::string& tag, const command_result& answer) {
  auto& st = self->state;
  auto* s = slurm_of(self);
  if (!s || attempt != st.attempt_generation)
    return; // an earlier attempt's
  auto out = s->on_answer(tag, answer);
  if (!out.note.empty()) {
    spdlog::warn("run/{}: {}", st.cfg.id, out.note);
    record(self, "slurm", "slurm", out.note);
  }
  if (tag == "submit" || tag == "find") {
    if (out.failure) {
      if (st.stop_reason) // stopped while sbatch ran
        finish_ending(self, exit_facts{});
      else
        fail_to_launch(self, out.failure->message);
      return;
    }
    if (out.ended_unseen) {
      record(self, "slurm", "slurm",
             "the job of a submission whose answer the previous daemon did "
             "not see has ended; its exit file says how");
      finish_ending(self, s->collect_exit(), true);
      return;
    }
    if (!out.submitted)
      return; // nothing found: submitted now, its answer follows
    st.view.slurm_job_id = s->job_id();
    self->send(st.cfg.slurm, atom::watch::value, s->job_id(),
               caf::actor_cast<run_actor>(self));
    record(self, "slurm", "submitted",
           "submitted to Slurm as job " + s->job_id(), {{"job", s->job_id()}});
    if (st.view.state == run_state::stopping)
      s->kill_tree(); // stopped while sbatch ran
    persist(self);
    return;
  }
  if (tag == "tstp" && out.failure) {
    fail_waiters(st.pause_waiters, *out.failure);
    return;
  }
  if (tag == "suspend" && !st.pause_waiters.empty() && s->frozen()) {
    finish_pause(self);
    return;
  }
  if (tag == "resume") {
    if (out.failure) {
      fail_waiters(st.resume_waiters, *out.failure);
      return;
    }
    if (st.view.state == run_state::paused) {
      st.paused_by_request = false;
      change_state(self, run_state::running, "user",
                   "Slurm job " + s->job_id()
                       + " resumed; the shim continued every process");
    }
    auto v = snapshot(self, false);
    for (auto& w : st.resume_waiters)
      w.deliver(view_result{v});
    st.resume_waiters.clear();
  }
}

// A restarted daemon's view of a run it knew: the record from the store,
// then the kernel's word on the processes.
void restore(self_ptr self) {
  auto& st = self->state;
  auto& rec = st.cfg.restored->record;
  st.view = view_from_record(rec.at("view")).value();
  st.history.restore(st.cfg.restored_events);
  st.final = st.cfg.restored->ended;
  st.restarts = rec.value("restarts", 0);
  st.paused_by_request = rec.value("paused_by_request", false);
  st.attempt_active_base = rec.value("attempt_active_base", 0.0);
  st.active_before_s = st.view.active_s;
  auto& stop = rec.at("stop");
  if (!stop.at("reason").is_null())
    st.stop_reason = stop.at("reason").get<std::string>();
  st.stop_grace = milliseconds{stop.value("grace_ms", std::int64_t{0})};
  // What the previous daemon saw is the baseline: files written since (a
  // checkpoint saved while no daemon ran) are news at the first rescan.
  std::optional<std::vector<artifact>> known;
  if (!st.cfg.restored->artifacts.is_null())
    if (auto r = artifacts_from_record(st.cfg.restored->artifacts))
      known = std::move(*r);
  if (known)
    st.files->seed(std::move(*known));
  else
    st.files->rescan();
  auto s = st.view.state;
  if (is_ended(s)) {
    st.final = true;
    return;
  }
  auto& id = rec.at("exec");
  // sbatch was sent, but its answer (the job id) was not saved: the next
  // launch looks for that job before it submits again.
  st.slurm_lookup = slurm_executor::names_slurm(id) && s == run_state::queued
                    && id.at("job_id").is_null();
  if (slurm_executor::names_slurm(id)
      && (s != run_state::queued || !id.at("job_id").is_null())) {
    if (s == run_state::running || s == run_state::stopping)
      st.active_before_s += std::max(
          0.0, duration<double>(
                   system_clock::now()
                   - from_unix_ms(rec.at("saved_at").get<std::int64_t>()))
                   .count());
    restore_slurm(self, id, stop);
    return;
  }
  if (s == run_state::queued) {
    // Queued again by the registry; a pending backoff starts over.
    st.view.retry_at.reset();
    record(self, "daemon", "restart",
           "the daemon restarted; the run is still queued");
    persist(self);
    return;
  }
  // Running time went on while no daemon watched a running run.
  auto saved_at = from_unix_ms(rec.at("saved_at").get<std::int64_t>());
  if (s == run_state::running || s == run_state::stopping)
    st.active_before_s += std::max(
        0.0, duration<double>(system_clock::now() - saved_at).count());
  std::optional<executor_identity> identity;
  if (!rec.at("exec").is_null())
    identity = executor_identity::from_json(rec.at("exec"));
  else
    // Killed between starting the shim and saving who it was: the tree in
    // the run's cgroup names it.
    identity = local_executor::find_identity(st.cfg.exec, st.cfg.id);
  adoption found;
  if (identity) {
    auto r = local_executor::adopt(st.cfg.exec, st.cfg.id, *identity);
    if (r) {
      found = std::move(*r);
      if (!found.message.empty())
        spdlog::info("run/{} on restart: {}", st.cfg.id, found.message);
    } else
      spdlog::error("run/{} cannot be re-adopted: {}", st.cfg.id,
                    r.error().message);
  }
  if (found.exec) {
    adopt_active(self, std::move(found.exec), stop);
    return;
  }
  // Ended while the daemon was down (or never got its shim): what it
  // printed meanwhile is read before it is classified.
  st.running_since = steady_clock::now();
  st.output->follow();
  auto facts = found.ended ? *found.ended
               : identity
                   ? exit_facts{}
                   : local_executor::recorded_exit(st.cfg.exec, st.cfg.id);
  record(self, "daemon", "restart",
         std::string{"the daemon restarted; the run had ended meanwhile"}
             + (facts.recorded ? "" : " without an exit record"));
  rescan_artifacts(self);
  finish_ending(self, facts, true);
}

} // namespace

run_actor_state::~run_actor_state() {
  unwatch_all();
  unwatch_files();
}

void run_actor_state::unwatch_files() {
  if (output_watch >= 0)
    cfg.events->unwatch_path(output_watch);
  output_watch = -1;
  for (int id : files_watches)
    cfg.events->unwatch_path(id);
  files_watches.clear();
  files_dirs.clear();
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
  st.view.restart_of = st.cfg.restart_of;
  st.view.executor = spec.executor.empty() ? "local" : spec.executor;
  auto run_dir = spec.executor == "slurm"
                     ? slurm_run_dir(st.cfg.exec, st.cfg.id)
                     : st.cfg.exec.runs_dir + "/" + st.cfg.id;
  const nlohmann::json* resume = nullptr;
  if (st.cfg.restored && !st.cfg.restored->metrics.is_null())
    resume = &st.cfg.restored->metrics;
  auto output = run_output::make(run_dir, spec.progress, spec.cwd, resume);
  if (!output) {
    // The spec was validated; if the parser still fails, logs go on.
    spdlog::warn("run/{} cannot parse progress: {}", st.cfg.id,
                 output.error().message);
    output = run_output::make(run_dir, progress_spec{}, spec.cwd);
  }
  st.output = std::move(*output);
  st.files = std::make_unique<artifact_watch>(spec.cwd, spec.artifacts);
  if (st.cfg.restored) {
    try {
      restore(self);
    } catch (const nlohmann::json::exception& e) {
      // A record this build cannot read (the registry checked its view and
      // specs): shown as stored, with the reason in the log.
      spdlog::error("run/{} cannot be taken back from the store: {}", st.cfg.id,
                    e.what());
    }
  } else
    record(self, "state", "submitted",
           st.cfg.restart_of ? "restart of " + *st.cfg.restart_of + " queued"
                             : "queued",
           {{"from", nullptr}, {"to", "queued"}, {"attempt", 1}});
  // The most frequent message first: CAF tries the handlers in order.
  return {
      [=](atom::tick) {
        // From the registry, once a second.
        auto& st = self->state;
        if (!st.exec || is_ended(st.view.state))
          return;
        ++st.ticks;
        // One look at the kernel per tick, taking turns: the main process's
        // state (a SIGSTOP from outside), then the tree's CPU and RSS. A
        // paused run is looked at every tick, to see a resume from outside.
        if (st.ticks % 2 == 1 || st.view.state == run_state::paused)
          observe(self, false);
        if (st.ticks % 2 == 0)
          refresh_resources(self);
        if (st.poll_output)
          read_output(self);
        st.output->poll_csv(active_now(self));
        // A change of state goes to the store at once (change_state); what
        // the output added, every 5 s: after a crash the next daemon reads
        // the lines since the saved position again, so nothing is lost,
        // and a thousand busy runs do not rewrite their metrics each
        // second. Runs take turns (by creation order), so the store gets a
        // fifth of them each second rather than all of them at once.
        bool output_moved = st.output_lines != st.saved_output_lines
                            || st.cfg.spec.progress.format == "csv";
        auto turn = (st.ticks + static_cast<unsigned>(st.cfg.seq)) % 5 == 0;
        if (st.dirty || (output_moved && turn)) {
          if (st.cfg.spec.progress.format == "csv")
            ++st.output_lines; // rows come from the file, not the log
          persist(self);
        }
        // inotify sees the pattern's own directory; deeper ones and
        // directories made later are found by this slower rescan.
        if (st.ticks % 5 == 0)
          rescan_artifacts(self);
      },
      [=](atom::persist) -> caf::result<ok_result> {
        auto rp = self->make_response_promise<ok_result>();
        persist_now(self, [rp]() mutable { rp.deliver(ok_result{ok_t{}}); });
        return rp;
      },
      [=](atom::get, bool with_processes) -> view_result {
        return snapshot(self, with_processes);
      },
      [=](atom::events, event_query q) -> caf::result<event_page_result> {
        auto a = events_after(self, q);
        if (!q.wait || !a.events.empty() || a.ended)
          return event_page_result{std::move(a)};
        auto& st = self->state;
        auto id = ++st.next_waiter;
        auto rp = self->make_response_promise<event_page_result>();
        st.event_waiters.push_back({id, q, rp});
        self->delayed_send(self, q.wait_timeout, atom::deadline::value,
                           std::string{"events_wait"}, id);
        return rp;
      },
      [=](atom::logs, log_query q) -> caf::result<logs_result> {
        auto& st = self->state;
        if (q.wait && q.since && !st.final)
          read_output(self); // an inotify message may be on its way
        auto a = st.output->query(q, st.final);
        // Nothing to send yet: wait rather than answer empty, or the
        // follower would ask again at once and spin.
        if (q.wait && q.since && a && a->lines.empty() && !a->ended) {
          auto id = ++st.next_waiter;
          auto rp = self->make_response_promise<logs_result>();
          st.log_waiters.push_back({id, q, rp});
          self->delayed_send(self, q.wait_timeout, atom::deadline::value,
                             std::string{"logs_wait"}, id);
          return rp;
        }
        return a;
      },
      [=](atom::metrics) -> json_result {
        return self->state.output->metrics_json();
      },
      [=](atom::artifacts) -> artifacts_result {
        auto& spec = self->state.cfg.spec;
        return artifact_report{scan_artifacts(spec.cwd, spec.artifacts)};
      },
      [=](atom::artifact, std::string name) -> artifact_result {
        auto& spec = self->state.cfg.spec;
        return resolve_artifact(spec.cwd, spec.artifacts, name);
      },
      [=](atom::output) { read_output(self); },
      [=](atom::files) {
        // Let a burst of writes settle: one rescan for a checkpoint.
        self->delayed_send(self, milliseconds{200}, atom::deadline::value,
                           std::string{"files"}, std::uint64_t{0});
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
      [=](atom::resume) -> caf::result<view_result> {
        auto& st = self->state;
        if (auto r = check_resume(st.cfg.id, st.view.state); !r)
          return view_result{r.error()};
        if (auto r = st.exec->thaw(); !r)
          return view_result{r.error()};
        if (slurm_of(self)) {
          // Running once Slurm and the shim have continued the job.
          auto rp = self->make_response_promise<view_result>();
          st.resume_waiters.push_back(rp);
          return rp;
        }
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
        auto rp = self->make_response_promise<view_result>();
        auto answer = [self, rp]() mutable {
          rp.deliver(view_result{snapshot(self, false)});
        };
        if (submitted_to_slurm(self)) {
          cancel_pending(self, "user");
        } else if (st.view.state == run_state::queued) {
          end_unstarted(self, "user");
          persist_now(self, answer);
          return rp;
        } else if (st.view.state == run_state::stopping) {
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
          st.end_waiters.push_back(rp);
          return rp;
        }
        persist_now(self, answer);
        return rp;
      },
      [=](atom::shutdown) -> caf::result<view_result> {
        auto& st = self->state;
        if (is_ended(st.view.state))
          return snapshot(self, false);
        if (submitted_to_slurm(self)) {
          cancel_pending(self, "daemon_exit");
        } else if (st.view.state == run_state::queued) {
          end_unstarted(self, "daemon_exit");
          return snapshot(self, false);
        } else if (st.view.state == run_state::starting) {
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
      [=](atom::cg_event) { observe(self, true); },
      [=](atom::job, slurm_report report) { on_slurm_job(self, report); },
      [=](atom::deadline, std::string kind, std::uint64_t gen) {
        auto& st = self->state;
        if (kind == "pause" || kind == "pause_poll") {
          if (gen != st.pause_generation || st.pause_waiters.empty())
            return;
          if (auto* s = slurm_of(self))
            s->advance_pause();
          if (st.exec->frozen()) {
            finish_pause(self);
          } else if (kind == "pause_poll") {
            // The shim's confirmation is a file on a shared filesystem.
            auto again = slurm_of(self) ? milliseconds{50} : milliseconds{1};
            self->delayed_send(self, again, atom::deadline::value,
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
            auto why = "processes that would not stop: "
                       + (names.empty() ? std::string{"unknown"} : names);
            if (auto* s = slurm_of(self))
              why = "the shim on the node did not confirm its tree "
                    "stopped (no stopped line in "
                    + s->run_dir()
                    + "/suspended; see its shim.log), or Slurm did not "
                      "answer scontrol suspend";
            auto err
                = make_error(ec::pause_timeout,
                             "run " + st.cfg.id + " did not freeze within "
                                 + std::to_string(st.cfg.pause_timeout.count())
                                 + " ms and was thawed again; " + why);
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
        if (kind == "logs_wait") {
          auto& ws = st.log_waiters;
          for (auto it = ws.begin(); it != ws.end(); ++it)
            if (it->id == gen) {
              it->rp.deliver(st.output->query(it->query, st.final));
              ws.erase(it);
              break;
            }
          return;
        }
        if (kind == "events_wait") {
          auto& ws = st.event_waiters;
          for (auto it = ws.begin(); it != ws.end(); ++it)
            if (it->id == gen) {
              it->rp.deliver(event_page_result{events_after(self, it->query)});
              ws.erase(it);
              break;
            }
          return;
        }
        if (kind == "files") {
          rescan_artifacts(self);
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
          if (auto saved = new_checkpoint(self)) {
            st.awaiting_checkpoint = false;
            record_checkpoint(self, *saved, "before the stop signal");
            ++st.stop_generation; // cancels ckpt_timeout
            send_stop_signal(self);
          } else {
            self->delayed_send(self, milliseconds{200}, atom::deadline::value,
                               std::string{"ckpt"}, gen);
          }
        } else if (kind == "ckpt_timeout") {
          st.awaiting_checkpoint = false;
          record(self, "checkpoint", "stop",
                 "no new checkpoint within checkpoint_timeout; stopping "
                 "anyway",
                 {{"saved", false}, {"name", nullptr}});
          spdlog::warn("run/{} wrote no checkpoint in time; stopping anyway",
                       st.cfg.id);
          ++st.stop_generation;
          send_stop_signal(self);
        }
      },
  };
}

} // namespace corral
