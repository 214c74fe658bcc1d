#pragma once
/// A scripted api_backend for the gateway and CLI tests: a few runs in
/// memory, every call recorded, answers immediately, later (`defer`), from
/// another thread, or never (`drop`).

#include "services/api_backend.hpp"
#include "services/spec.hpp"

#include <chrono>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

namespace corral::testing {

inline run_view make_run(std::string id, run_state state,
                         std::string experiment = "ppo") {
  run_view v;
  v.id = std::move(id);
  v.experiment = std::move(experiment);
  v.state = state;
  v.pid = 4242;
  v.process_count = 3;
  v.command = {"python3", "train.py"};
  v.cwd = "/work/rl";
  v.processes = std::vector<process_info>{
      {4242, 4000, 'S', false, "python3 train.py", 12.5, 1 << 20},
      {4243, 4242, 'S', false, "python3 -c worker", 1.0, 1 << 19},
  };
  return v;
}

inline run_view with_gpus(run_view v, std::vector<int> gpus) {
  v.gpus = std::move(gpus);
  return v;
}

/// Two NVML-like GPUs held by ppo-1, the third by paused ppo-2, the fourth
/// known only by its index and free.
inline gpu_report make_gpu_report() {
  gpu_report r;
  r.source = "nvml";
  auto nvml_gpu = [](int index, std::uint64_t used, double util) {
    gpu_info g;
    g.index = index;
    g.uuid = "GPU-" + std::to_string(index);
    g.name = "NVIDIA H100 80GB HBM3";
    g.memory_total = std::uint64_t{80} << 30;
    g.memory_used = used;
    g.utilization = util;
    return g;
  };
  r.gpus = {{nvml_gpu(0, std::uint64_t{12} << 30, 97), "ppo-1"},
            {nvml_gpu(1, std::uint64_t{11} << 30, 95), "ppo-1"},
            {nvml_gpu(2, std::uint64_t{20} << 30, 0), "ppo-2"},
            {gpu_info{3, "", "", {}, {}, {}}, std::nullopt}};
  return r;
}

class fake_backend : public api_backend {
public:
  std::vector<run_view> runs{
      with_gpus(make_run("ppo-1", run_state::running), {0, 1}),
      with_gpus(make_run("ppo-2", run_state::paused), {2}),
      make_run("sac-1", run_state::stopped, "sac")};
  /// What gpus() answers.
  gpu_report gpu_state = make_gpu_report();
  /// When set, every call fails with it.
  std::optional<error> fail_with;
  /// Keep the answer in `pending` instead of answering.
  bool defer = false;
  /// Destroy the callback without answering.
  bool drop = false;
  /// Answer from another thread after this long.
  std::optional<std::chrono::milliseconds> delay;

  /// When set, the router may keep listings in it.
  listing_cache* cache = nullptr;
  listing_cache* listings() override { return cache; }

  std::vector<std::string> calls;
  run_filter last_filter;
  stop_request last_stop;
  std::vector<run_spec> last_submit;
  bool last_dry_run = false;
  std::vector<std::function<void()>> pending;

  ~fake_backend() override {
    for (auto& t : threads_)
      t.join();
  }

  void submit(std::vector<run_spec> specs, bool dry_run,
              reply<std::vector<run_view>> done) override {
    std::vector<run_view> views;
    for (auto s : specs) {
      // What the registry does once it has chosen the id.
      expand_run_placeholders(s, s.id_base, "");
      run_view v;
      v.id = s.id_base;
      v.experiment = s.experiment;
      v.command = s.command;
      v.cwd = s.cwd;
      views.push_back(v);
    }
    {
      std::lock_guard lock(mutex_);
      calls.push_back(dry_run ? "submit dry" : "submit");
      last_submit = std::move(specs);
      last_dry_run = dry_run;
    }
    answer(std::move(done), result<std::vector<run_view>>(std::move(views)));
  }

  void list_runs(run_filter filter,
                 reply<std::vector<run_view>> done) override {
    std::vector<run_view> out;
    for (auto& r : runs) {
      bool state_ok = filter.states.empty();
      for (auto s : filter.states)
        state_ok = state_ok || s == r.state;
      if (state_ok
          && (filter.experiment.empty() || filter.experiment == r.experiment))
        out.push_back(r); // processes left in: the router must null them
    }
    {
      std::lock_guard lock(mutex_);
      calls.push_back("list");
      last_filter = std::move(filter);
    }
    answer(std::move(done), result<std::vector<run_view>>(std::move(out)));
  }

  void get_run(std::string id, reply<run_view> done) override {
    record("get " + id);
    answer(std::move(done), find(id));
  }

  void pause(std::string id, reply<run_view> done) override {
    record("pause " + id);
    auto r = find(id);
    if (r && r->state != run_state::running)
      r = make_error(ec::invalid_transition,
                     "run " + id + " is " + std::string(to_string(r->state))
                         + "; only a running run can be paused");
    else if (r)
      r->state = run_state::paused;
    answer(std::move(done), std::move(r));
  }

  void resume(std::string id, reply<run_view> done) override {
    record("resume " + id);
    auto r = find(id);
    if (r)
      r->state = run_state::running;
    answer(std::move(done), std::move(r));
  }

  void stop(std::string id, stop_request req, reply<run_view> done) override {
    {
      std::lock_guard lock(mutex_);
      calls.push_back("stop " + id);
      last_stop = req;
    }
    auto r = find(id);
    if (r)
      r->state = req.wait ? run_state::stopped : run_state::stopping;
    answer(std::move(done), std::move(r));
  }

  void remove(std::string id, reply<ok_t> done) override {
    record("remove " + id);
    auto r = find(id);
    if (!r)
      return answer(std::move(done), result<ok_t>(r.error()));
    answer(std::move(done), result<ok_t>(ok));
  }

  void events(std::string id, event_query q,
              reply<event_answer> done) override {
    record("events " + id + (q.wait ? " wait" : ""));
    if (!id.empty())
      if (auto r = find(id); !r)
        return answer(std::move(done), result<event_answer>(r.error()));
    run_event e;
    e.seq = 1;
    e.run = id.empty() ? "ppo-1" : id;
    e.type = "state";
    e.cause = "scheduled";
    e.message = "starting";
    e.data = {{"from", "queued"}, {"to", "starting"}};
    event_answer a;
    if (!q.after || *q.after < 1)
      a.events.push_back(e);
    a.last = 1;
    // A stopped run has ended for good: a follower gets `end`.
    a.ended = !id.empty() && is_ended(find(id)->state);
    answer(std::move(done), result<event_answer>(std::move(a)));
  }

  void restart(std::string id, reply<run_view> done) override {
    record("restart " + id);
    auto r = find(id);
    if (r && !is_ended(r->state))
      r = make_error(ec::invalid_transition,
                     "run " + id + " is " + std::string(to_string(r->state))
                         + "; only an ended run can be restarted");
    else if (r) {
      r->restart_of = id;
      r->id = id + "-2";
      r->state = run_state::queued;
    }
    answer(std::move(done), std::move(r));
  }

  /// What logs() serves for every run: two stdout lines and a stderr one.
  std::vector<log_line> lines = [] {
    std::vector<log_line> out(3);
    out[0] = {log_stream::out, {}, "step 1", 0, 7};
    out[1] = {log_stream::err, {}, "warning: x", 0, 11};
    out[2] = {log_stream::out, {}, "step 2 \xc3\xa9", 7, 16};
    return out;
  }();
  log_query last_logs;

  void logs(std::string id, log_query q, reply<log_answer> done) override {
    {
      std::lock_guard lock(mutex_);
      calls.push_back("logs " + id);
      last_logs = q;
    }
    auto r = find(id);
    if (!r)
      return answer(std::move(done), result<log_answer>(r.error()));
    log_answer a;
    a.cursor = {16, 11};
    std::vector<log_line> picked;
    for (auto& l : lines) {
      if (!(l.stream == log_stream::out ? q.streams.out : q.streams.err))
        continue;
      if (q.since
          && l.end
                 <= (l.stream == log_stream::out ? q.since->out : q.since->err))
        continue;
      picked.push_back(l);
    }
    if (!q.since && picked.size() > q.tail)
      picked.erase(picked.begin(),
                   picked.end() - static_cast<std::ptrdiff_t>(q.tail));
    a.lines = std::move(picked);
    a.ended = is_ended(r->state);
    answer(std::move(done), result<log_answer>(std::move(a)));
  }

  void metrics(std::string id, reply<nlohmann::json> done) override {
    record("metrics " + id);
    auto r = find(id);
    if (!r)
      return answer(std::move(done), result<nlohmann::json>(r.error()));
    answer(std::move(done),
           result<nlohmann::json>(nlohmann::json{
               {"latest", {{"time/fps", 1207}}},
               {"series", {{"time/fps", {{1.5, 2048, 1207}}}}}}));
  }

  /// Files artifact_file() may serve, by name.
  std::vector<artifact> files;

  void artifacts(std::string id, reply<artifact_report> done) override {
    record("artifacts " + id);
    auto r = find(id);
    if (!r)
      return answer(std::move(done), result<artifact_report>(r.error()));
    answer(std::move(done), result<artifact_report>(artifact_report{files}));
  }

  void artifact_file(std::string id, std::string name,
                     reply<artifact> done) override {
    record("artifact " + id + " " + name);
    if (auto r = find(id); !r)
      return answer(std::move(done), result<artifact>(r.error()));
    if (name.find("..") != std::string::npos || name.starts_with("/"))
      return answer(std::move(done),
                    result<artifact>(make_error(
                        ec::forbidden, "artifact '" + name + "' is outside")));
    for (auto& f : files)
      if (f.name == name)
        return answer(std::move(done), result<artifact>(f));
    answer(std::move(done), result<artifact>(make_error(
                                ec::not_found, "no artifact '" + name + "'")));
  }

  void gpus(reply<gpu_report> done) override {
    record("gpus");
    answer(std::move(done), result<gpu_report>(gpu_state));
  }

  void node(reply<node_report> done) override {
    record("node");
    node_report r;
    r.node = {2, 37.5, {0.5, 0.25, 0.125}, 8ull << 30, 3ull << 30};
    r.gpus = gpu_state;
    answer(std::move(done), result<node_report>(std::move(r)));
  }

  std::size_t pending_count() {
    std::lock_guard lock(mutex_);
    return pending.size();
  }

  /// Answers every deferred call, from the calling thread.
  void answer_pending() {
    std::vector<std::function<void()>> todo;
    {
      std::lock_guard lock(mutex_);
      todo.swap(pending);
    }
    for (auto& f : todo)
      f();
  }

  std::vector<std::string> recorded() {
    std::lock_guard lock(mutex_);
    return calls;
  }

private:
  void record(std::string call) {
    std::lock_guard lock(mutex_);
    calls.push_back(std::move(call));
  }

  result<run_view> find(const std::string& id) {
    for (auto& r : runs)
      if (r.id == id)
        return r;
    return make_error(ec::not_found, "no run named '" + id + "'");
  }

  template <class T>
  void answer(reply<T> done, result<T> value) {
    if (fail_with)
      value = *fail_with;
    if (drop)
      return;
    if (defer) {
      std::lock_guard lock(mutex_);
      pending.push_back(
          [done = std::move(done), value = std::move(value)] { done(value); });
      return;
    }
    if (delay) {
      std::lock_guard lock(mutex_);
      threads_.emplace_back(
          [d = *delay, done = std::move(done), value = std::move(value)] {
            std::this_thread::sleep_for(d);
            done(value);
          });
      return;
    }
    done(std::move(value));
  }

  std::mutex mutex_;
  std::vector<std::thread> threads_;
};

} // namespace corral::testing
