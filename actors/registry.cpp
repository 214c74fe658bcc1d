#include "actors/registry.hpp"

#include <unistd.h>

#include <memory>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "services/artifacts.hpp"
#include "services/run_record.hpp"
#include "services/run_spec_json.hpp"
#include "services/spec.hpp"

namespace corral {

namespace {

using self_ptr = registry_actor::stateful_pointer<registry_state>;

error no_such_run(const std::string& id) {
  return make_error(ec::not_found, "no run named '" + id + "'");
}

sched_request request_of(const std::string& id, const run_spec& spec,
                         std::uint64_t seq) {
  sched_request req;
  req.id = id;
  req.experiment = spec.experiment;
  req.priority = spec.priority;
  req.seq = seq;
  req.max_concurrent = spec.max_concurrent;
  if (spec.executor != "slurm") { // the cluster's resources, not ours
    req.gpus = spec.gpus;
    req.cpus = spec.cpus.value_or(0);
    req.memory = spec.memory_bytes.value_or(0);
  }
  return req;
}

// The scheduler that starts this run: this node's, or the Slurm runs'.
scheduler& sched_of(self_ptr self, const std::string& id) {
  auto& st = self->state;
  auto it = st.specs.find(id);
  if (it != st.specs.end() && it->second.executor == "slurm")
    return *st.slurm_sched;
  return *st.sched;
}

void fill_queue_position(self_ptr self, run_view& v) {
  if (v.state == run_state::queued && !v.retry_at)
    v.queue_position = sched_of(self, v.id).queue_position(v.id);
}

// Asks every run in `ids` for its view and delivers them in that order.
void collect_views(self_ptr self, const std::vector<std::string>& ids,
                   caf::typed_response_promise<views_result> rp,
                   std::function<bool(const run_view&)> keep) {
  struct pending {
    std::vector<std::optional<run_view>> views;
    std::size_t left;
  };
  std::vector<run_actor> handles;
  for (auto& id : ids)
    if (auto it = self->state.runs.find(id); it != self->state.runs.end())
      handles.push_back(it->second);
  if (handles.empty()) {
    rp.deliver(views_result{std::vector<run_view>{}});
    return;
  }
  auto acc = std::make_shared<pending>();
  acc->views.resize(handles.size());
  acc->left = handles.size();
  auto finish = [acc, rp, keep]() mutable {
    if (--acc->left > 0)
      return;
    std::vector<run_view> out;
    for (auto& v : acc->views)
      if (v && keep(*v))
        out.push_back(std::move(*v));
    rp.deliver(views_result{std::move(out)});
  };
  for (std::size_t i = 0; i < handles.size(); ++i)
    self->request(handles[i], caf::infinite, atom::get::value, false)
        .then(
            [self, acc, i, finish](view_result& r) mutable {
              if (r) {
                fill_queue_position(self, r.value());
                acc->views[i] = std::move(r.value());
              }
              finish();
            },
            [finish](caf::error&) mutable { finish(); });
}

// Starts every queued run the scheduler can place now, and wakes the
// registry again when a starvation deadline passes.
void schedule(self_ptr self) {
  auto& st = self->state;
  if (st.shutting_down)
    return;
  auto now = scheduler::clock::now();
  for (auto* sched : {st.sched.get(), st.slurm_sched.get()})
    for (auto& p : sched->schedule(now)) {
      auto it = st.runs.find(p.id);
      if (it == st.runs.end()) {
        sched->release(p.id);
        continue;
      }
      if (!p.gpus.empty())
        spdlog::info("registry places run/{} on GPU {}", p.id,
                     fmt::join(p.gpus, ","));
      self->send(it->second, atom::start::value, p.gpus);
    }
  // One wake-up per deadline, however often the queue is looked at.
  if (auto next = st.sched->next_deadline(); next && next != st.tick_at) {
    st.tick_at = next;
    self->delayed_send(
        self, std::chrono::duration_cast<millis>(*next - now) + millis{1},
        atom::tick::value);
  }
}

// On the interval's boundaries, so the runs' looks come in one burst.
void beat_later(self_ptr self) {
  auto every = self->state.cfg.observe_interval;
  auto now = std::chrono::duration_cast<millis>(
      std::chrono::steady_clock::now().time_since_epoch());
  self->delayed_send(self, every - now % every, atom::beat::value);
}

void maybe_finish_shutdown(self_ptr self) {
  auto& st = self->state;
  if (st.shutdown_waiters.empty())
    return;
  for (auto& [id, hdl] : st.runs)
    if (!st.ended.count(id))
      return;
  for (auto& w : st.shutdown_waiters)
    w.deliver(ok_result{ok});
  st.shutdown_waiters.clear();
}

// The GPU inventory with each device's holder.
gpu_report gpu_state(self_ptr self) {
  auto& st = self->state;
  gpu_report report;
  report.source = st.cfg.inventory ? st.cfg.inventory->source() : "config";
  if (st.cfg.inventory)
    for (auto& d : st.cfg.inventory->devices())
      report.gpus.push_back({d, st.sched->holder(d.index)});
  return report;
}

event_answer global_events_after(self_ptr self, const event_query& q) {
  auto& st = self->state;
  return {st.events.after(q.after), st.events.last(), false};
}

// Creates a run actor and queues it. `tmpl` is the spec as submitted,
// `spec` the same with placeholders bound for this id. With `restored`,
// the actor takes back a run a previous daemon knew; the registry then
// queues it, or counts its devices as held, by its stored state.
void create_run(self_ptr self, const std::string& id, run_spec tmpl,
                run_spec spec, std::optional<std::string> restart_of,
                std::optional<stored_run> restored = std::nullopt,
                std::optional<run_view> stored_view = std::nullopt) {
  auto& st = self->state;
  run_config rc;
  rc.id = id;
  rc.spec = spec;
  rc.tmpl = tmpl;
  rc.restart_of = std::move(restart_of);
  rc.exec = st.cfg.exec;
  rc.events = st.cfg.events;
  rc.listings = st.cfg.listings;
  rc.pause_timeout = st.cfg.pause_timeout;
  rc.inventory = st.cfg.inventory;
  rc.registry = caf::actor_cast<registry_actor>(self);
  rc.store = st.cfg.store;
  rc.slurm = st.cfg.slurm;
  auto seq
      = restored ? static_cast<std::uint64_t>(restored->seq) : st.next_seq++;
  rc.seq = static_cast<std::int64_t>(seq);
  if (restored) {
    if (auto it = st.cfg.restored_events.find(id);
        it != st.cfg.restored_events.end())
      rc.restored_events = std::move(it->second);
    rc.restored = std::move(restored);
  }
  auto req = request_of(id, rc.spec, seq);
  st.runs.emplace(id, self->spawn(run, std::move(rc)));
  st.requests.emplace(id, req);
  st.templates.emplace(id, std::move(tmpl));
  st.specs.emplace(id, std::move(spec));
  st.order.push_back(id);
  auto& sched = sched_of(self, id);
  if (!stored_view
      || (stored_view->state == run_state::queued
          && !stored_view->slurm_job_id))
    sched.enqueue(req, scheduler::clock::now());
  else if (is_ended(stored_view->state))
    st.ended.insert(id);
  else // active, or a job Slurm keeps pending: the run follows it
    sched.adopt(req, stored_view->gpus);
}

// Takes back every run the store holds, in creation order, before the
// first request is answered (the registry's mailbox holds them until
// this returns).
void restore_runs(self_ptr self) {
  auto& st = self->state;
  st.events.restore(std::move(st.cfg.restored_global));
  std::int64_t last_seq = -1;
  for (auto& r : st.cfg.restored) {
    last_seq = std::max(last_seq, r.seq);
    auto view = view_from_record(r.record.at("view"));
    auto spec = spec_from_json(r.record.at("spec"));
    auto tmpl = spec_from_json(r.record.at("tmpl"));
    if (!view || !spec || !tmpl) {
      spdlog::error("registry cannot take back run {}: {}", r.id,
                    !view   ? view.error().message
                    : !spec ? spec.error().message
                            : tmpl.error().message);
      continue;
    }
    std::optional<std::string> restart_of;
    if (auto& ro = r.record.at("restart_of"); !ro.is_null())
      restart_of = ro.get<std::string>();
    auto id = r.id;
    create_run(self, id, std::move(*tmpl), std::move(*spec),
               std::move(restart_of), std::move(r), std::move(*view));
  }
  st.next_seq = static_cast<std::uint64_t>(last_seq + 1);
  if (!st.cfg.restored.empty())
    spdlog::info("registry took back {} run(s) from the store", st.runs.size());
  st.cfg.restored.clear();
  st.cfg.restored_events.clear();
}

// Calls `then` once each run in `ids` has its record on disk: a new run
// that the API has answered for must be known to a restarted daemon.
void after_saved(self_ptr self, const std::vector<std::string>& ids,
                 std::function<void()> then) {
  auto left = std::make_shared<std::size_t>(ids.size() + 1);
  auto one_done = [left, then]() {
    if (--*left == 0)
      then();
  };
  for (auto& id : ids)
    if (auto it = self->state.runs.find(id); it != self->state.runs.end())
      self->request(it->second, caf::infinite, atom::persist::value)
          .then([one_done](ok_result&) { one_done(); },
                [one_done](caf::error&) { one_done(); });
    else
      one_done();
  one_done();
}

void persist_global_event(self_ptr self, const run_event& e) {
  auto& st = self->state;
  if (!st.cfg.store)
    return;
  store_batch b;
  b.events.push_back({"", e.seq, event_to_record(e)});
  self->send(st.cfg.store, atom::persist::value, std::move(b));
}

template <class Atom, class Result = view_result, class... Ts>
caf::result<Result> forward(self_ptr self, const std::string& id, Ts... xs) {
  auto it = self->state.runs.find(id);
  if (it == self->state.runs.end())
    return Result{no_such_run(id)};
  return self->delegate(it->second, Atom::value, std::move(xs)...);
}

} // namespace

std::string unique_run_id(const std::string& base,
                          const std::set<std::string>& taken) {
  if (!taken.count(base))
    return base;
  for (int n = 2;; ++n) {
    auto id = base + "-" + std::to_string(n);
    if (!taken.count(id))
      return id;
  }
}

registry_actor::behavior_type
registry(registry_actor::stateful_pointer<registry_state> self,
         registry_config cfg) {
  auto& st = self->state;
  st.cfg = std::move(cfg);
  std::vector<int> indices;
  if (st.cfg.inventory)
    for (auto& d : st.cfg.inventory->devices())
      indices.push_back(d.index);
  // CPUs and memory are placement only: the sum of what running runs ask
  // for stays within the node.
  auto cpus = static_cast<double>(::sysconf(_SC_NPROCESSORS_ONLN));
  auto memory = static_cast<std::uint64_t>(::sysconf(_SC_PHYS_PAGES))
                * static_cast<std::uint64_t>(::sysconf(_SC_PAGESIZE));
  st.sched = std::make_unique<scheduler>(
      indices, st.cfg.max_concurrent, st.cfg.starvation_timeout, cpus, memory);
  st.slurm_sched = std::make_unique<scheduler>(std::vector<int>{}, std::nullopt,
                                               st.cfg.starvation_timeout);
  // Runs are not linked (DELETE ends one without touching the registry),
  // so the registry ends them itself when it is told to exit.
  self->set_exit_handler([=](const caf::exit_msg& msg) {
    for (auto& [id, hdl] : self->state.runs)
      self->send_exit(hdl, msg.reason);
    self->quit(msg.reason);
  });
  restore_runs(self);
  schedule(self);
  beat_later(self);
  return {
      [=](atom::flush) -> caf::result<ok_result> {
        auto& st = self->state;
        auto rp = self->make_response_promise<ok_result>();
        std::vector<std::string> ids;
        for (auto& [id, hdl] : st.runs)
          ids.push_back(id);
        auto store = st.cfg.store;
        // Every run's record first, then what else is pending (the
        // daemon-wide events).
        after_saved(self, ids, [=]() mutable {
          if (!store) {
            rp.deliver(ok_result{ok_t{}});
            return;
          }
          self->request(store, caf::infinite, atom::flush::value)
              .then([=](ok_result& r) mutable { rp.deliver(std::move(r)); },
                    [=](caf::error& err) mutable {
                      rp.deliver(ok_result{
                          make_error(ec::internal, "the store did not confirm: "
                                                       + caf::to_string(err))});
                    });
        });
        return rp;
      },
      [=](atom::submit, std::vector<run_spec> specs,
          bool dry_run) -> caf::result<views_result> {
        auto& st = self->state;
        for (auto& spec : specs) {
          if (spec.executor.empty())
            spec.executor = st.cfg.default_executor;
          if (spec.executor == "slurm") {
            if (!st.cfg.slurm)
              return views_result{make_error(
                  ec::invalid_spec,
                  "experiment " + spec.experiment
                      + " uses executor slurm, but this daemon found no "
                        "Slurm client commands (sbatch, squeue, scontrol, "
                        "scancel) on its PATH")};
            continue; // the cluster decides what fits
          }
          auto why = st.sched->why_never(request_of("", spec, 0));
          if (!why.empty())
            return views_result{make_error(
                ec::invalid_spec, "experiment " + spec.experiment + " " + why
                                      + ", so it could never start")};
        }
        std::set<std::string> taken;
        for (auto& [id, hdl] : st.runs)
          taken.insert(id);
        std::vector<std::pair<std::string, run_spec>> planned;
        std::vector<run_spec> templates;
        for (auto& spec : specs) {
          auto id = unique_run_id(spec.id_base, taken);
          taken.insert(id);
          templates.push_back(spec);
          expand_run_placeholders(spec, id, "");
          planned.emplace_back(id, std::move(spec));
        }
        if (dry_run) {
          std::vector<run_view> out;
          for (auto& [id, spec] : planned) {
            run_view v;
            v.id = id;
            v.experiment = spec.experiment;
            v.state = run_state::queued;
            v.created_at = std::chrono::system_clock::now();
            v.cwd = spec.cwd;
            v.command = spec.command;
            v.executor = spec.executor;
            out.push_back(std::move(v));
          }
          return views_result{std::move(out)};
        }
        std::vector<std::string> ids;
        for (std::size_t i = 0; i < planned.size(); ++i) {
          auto& [id, spec] = planned[i];
          create_run(self, id, std::move(templates[i]), std::move(spec),
                     std::nullopt);
          ids.push_back(id);
        }
        spdlog::info("registry creates {} run(s)", ids.size());
        schedule(self);
        auto rp = self->make_response_promise<views_result>();
        after_saved(self, ids, [self, ids, rp]() mutable {
          collect_views(self, ids, rp, [](const run_view&) { return true; });
        });
        return rp;
      },
      [=](atom::list, run_filter filter) -> caf::result<views_result> {
        auto rp = self->make_response_promise<views_result>();
        collect_views(self, self->state.order, rp, [filter](const run_view& v) {
          if (!filter.experiment.empty() && v.experiment != filter.experiment)
            return false;
          if (filter.states.empty())
            return true;
          for (auto s : filter.states)
            if (s == v.state)
              return true;
          return false;
        });
        return rp;
      },
      [=](atom::get, std::string id,
          bool with_processes) -> caf::result<view_result> {
        auto it = self->state.runs.find(id);
        if (it == self->state.runs.end())
          return view_result{no_such_run(id)};
        auto rp = self->make_response_promise<view_result>();
        self->request(it->second, caf::infinite, atom::get::value,
                      with_processes)
            .then(
                [=](view_result& r) mutable {
                  if (r)
                    fill_queue_position(self, r.value());
                  rp.deliver(std::move(r));
                },
                [=](caf::error&) mutable {
                  rp.deliver(view_result{no_such_run(id)});
                });
        return rp;
      },
      [=](atom::pause, std::string id) {
        return forward<atom::pause>(self, id);
      },
      [=](atom::events, std::string id,
          event_query q) -> caf::result<event_page_result> {
        if (!id.empty())
          return forward<atom::events, event_page_result>(self, id, q);
        auto& st = self->state;
        auto a = global_events_after(self, q);
        if (!q.wait || !a.events.empty())
          return event_page_result{std::move(a)};
        auto wid = ++st.next_waiter;
        auto rp = self->make_response_promise<event_page_result>();
        st.event_waiters.push_back({wid, q, rp});
        self->delayed_send(self, q.wait_timeout, atom::deadline::value, wid);
        return rp;
      },
      [=](atom::logs, std::string id, log_query q) {
        return forward<atom::logs, logs_result>(self, id, q);
      },
      [=](atom::metrics, std::string id) {
        return forward<atom::metrics, json_result>(self, id);
      },
      [=](atom::artifacts, std::string id) {
        return forward<atom::artifacts, artifacts_result>(self, id);
      },
      [=](atom::artifact, std::string id, std::string name) {
        return forward<atom::artifact, artifact_result>(self, id, name);
      },
      [=](atom::restart, std::string id) -> caf::result<view_result> {
        auto& st = self->state;
        auto it = st.runs.find(id);
        if (it == st.runs.end())
          return view_result{no_such_run(id)};
        if (st.shutting_down)
          return view_result{
              make_error(ec::unavailable, "the daemon is shutting down")};
        auto rp = self->make_response_promise<view_result>();
        self->request(it->second, caf::infinite, atom::get::value, false)
            .then(
                [=](view_result& r) mutable {
                  if (!r) {
                    rp.deliver(view_result{r.error()});
                    return;
                  }
                  auto& st = self->state;
                  if (!is_ended(r->state) || !st.ended.count(id)) {
                    rp.deliver(view_result{make_error(
                        ec::invalid_transition,
                        "run " + id + " is " + std::string(to_string(r->state))
                            + "; only an ended run can be restarted (stop it "
                              "first)")});
                    return;
                  }
                  auto tmpl = st.templates.at(id);
                  auto& old = st.specs.at(id);
                  auto newest = latest_checkpoint(old.cwd, old.artifacts);
                  std::set<std::string> taken;
                  for (auto& [other, hdl] : st.runs)
                    taken.insert(other);
                  auto new_id = unique_run_id(tmpl.id_base, taken);
                  auto spec = tmpl;
                  expand_run_placeholders(spec, new_id,
                                          newest ? newest->path : "");
                  spdlog::info(
                      "registry restarts run/{} as run/{}{}", id, new_id,
                      newest ? " from " + newest->path : std::string{});
                  create_run(self, new_id, std::move(tmpl), std::move(spec),
                             id);
                  schedule(self);
                  after_saved(self, {new_id}, [=]() mutable {
                    auto it = self->state.runs.find(new_id);
                    if (it == self->state.runs.end()) {
                      rp.deliver(view_result{no_such_run(new_id)});
                      return;
                    }
                    self->request(it->second, caf::infinite, atom::get::value,
                                  true)
                        .then(
                            [=](view_result& v) mutable {
                              if (v)
                                fill_queue_position(self, v.value());
                              rp.deliver(std::move(v));
                            },
                            [=](caf::error&) mutable {
                              rp.deliver(view_result{no_such_run(new_id)});
                            });
                  });
                },
                [=](caf::error&) mutable {
                  rp.deliver(view_result{no_such_run(id)});
                });
        return rp;
      },
      [=](atom::event, run_event e) {
        auto& st = self->state;
        persist_global_event(self, st.events.push(std::move(e)));
        auto& ws = st.event_waiters;
        for (auto& w : ws) {
          event_query q = w.query;
          w.rp.deliver(event_page_result{global_events_after(self, q)});
        }
        ws.clear();
      },
      [=](atom::deadline, std::uint64_t wid) {
        auto& ws = self->state.event_waiters;
        for (auto it = ws.begin(); it != ws.end(); ++it)
          if (it->id == wid) {
            it->rp.deliver(
                event_page_result{global_events_after(self, it->query)});
            ws.erase(it);
            return;
          }
      },
      [=](atom::resume, std::string id) {
        return forward<atom::resume>(self, id);
      },
      [=](atom::stop, std::string id, stop_request req) {
        return forward<atom::stop>(self, id, req);
      },
      [=](atom::remove, std::string id) -> caf::result<ok_result> {
        auto it = self->state.runs.find(id);
        if (it == self->state.runs.end())
          return ok_result{no_such_run(id)};
        auto rp = self->make_response_promise<ok_result>();
        auto hdl = it->second;
        self->request(hdl, caf::infinite, atom::get::value, false)
            .then(
                [=](view_result& r) mutable {
                  if (!r) {
                    rp.deliver(ok_result{r.error()});
                    return;
                  }
                  if (auto ok = check_remove(id, r->state); !ok) {
                    rp.deliver(ok_result{ok.error()});
                    return;
                  }
                  auto& st = self->state;
                  if (st.cfg.listings)
                    st.cfg.listings->changed();
                  st.runs.erase(id);
                  st.requests.erase(id);
                  st.templates.erase(id);
                  st.specs.erase(id);
                  st.ended.erase(id);
                  std::erase(st.order, id);
                  self->send_exit(hdl, caf::exit_reason::user_shutdown);
                  spdlog::info("registry forgets run {}", id);
                  if (!st.cfg.store) {
                    rp.deliver(ok_result{ok_t{}});
                    return;
                  }
                  // Gone from the store before the answer, or a restarted
                  // daemon would bring it back.
                  store_batch b;
                  b.removed.push_back(id);
                  self->request(st.cfg.store, caf::infinite, atom::flush::value,
                                std::move(b))
                      .then([=](ok_result& r) mutable { rp.deliver(r); },
                            [=](caf::error& err) mutable {
                              rp.deliver(ok_result{make_error(
                                  ec::internal, "the store did not confirm: "
                                                    + caf::to_string(err))});
                            });
                },
                [=](caf::error&) mutable {
                  rp.deliver(ok_result{no_such_run(id)});
                });
        return rp;
      },
      [=](atom::shutdown) -> caf::result<ok_result> {
        auto& st = self->state;
        auto rp = self->make_response_promise<ok_result>();
        st.shutdown_waiters.push_back(rp);
        st.shutting_down = true; // nothing new starts
        spdlog::info("registry stops {} run(s) for daemon exit",
                     st.runs.size() - st.ended.size());
        for (auto& [id, hdl] : st.runs)
          if (!st.ended.count(id))
            // The run's end arrives as atom::ended; its reply adds nothing.
            self->request(hdl, caf::infinite, atom::shutdown::value)
                .then([](view_result&) {}, [](caf::error&) {});
        maybe_finish_shutdown(self);
        return rp;
      },
      [=](atom::gpus) -> gpus_result { return gpu_state(self); },
      [=](atom::node) -> node_result {
        auto stats = self->state.node.sample();
        if (!stats)
          return node_result{stats.error()};
        return node_report{*stats, gpu_state(self)};
      },
      [=](atom::ended, std::string id, bool final) {
        auto& st = self->state;
        // Stopped while queued, or its processes ended: either way its
        // place and its devices are free now.
        sched_of(self, id).dequeue(id);
        sched_of(self, id).release(id);
        if (final)
          st.ended.insert(id);
        schedule(self);
        maybe_finish_shutdown(self);
      },
      [=](atom::requeue, std::string id) {
        auto& st = self->state;
        auto it = st.requests.find(id);
        if (it == st.requests.end() || st.shutting_down)
          return;
        sched_of(self, id).enqueue(it->second, scheduler::clock::now());
        schedule(self);
      },
      [=](atom::tick) {
        self->state.tick_at.reset();
        schedule(self);
      },
      [=](atom::beat) {
        auto& st = self->state;
        for (auto& [id, hdl] : st.runs)
          if (!st.ended.contains(id))
            self->send(hdl, atom::tick::value);
        beat_later(self);
      },
  };
}

} // namespace corral
