#include "actors/daemon.hpp"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "actors/registry.hpp"
#include "actors/slurm.hpp"
#include "actors/store.hpp"
#include "services/reactor.hpp"
#include "services/run_record.hpp"

#include <stdexcept>

namespace corral {

namespace {

// Each API call is a short-lived actor that asks the registry and hands
// the answer to the gateway's callback: no I/O thread waits on an actor.
class actor_backend final : public api_backend {
public:
  actor_backend(caf::actor_system& sys, registry_actor reg,
                listing_cache& listings)
      : sys_(sys), registry_(std::move(reg)), listings_(listings) {}

  listing_cache* listings() override { return &listings_; }

  void submit(std::vector<run_spec> runs, bool dry_run,
              reply<std::vector<run_view>> done) override {
    ask<views_result>(std::move(done), atom::submit::value, std::move(runs),
                      dry_run);
  }
  void list_runs(run_filter filter,
                 reply<std::vector<run_view>> done) override {
    ask<views_result>(std::move(done), atom::list::value, std::move(filter));
  }
  void get_run(std::string id, reply<run_view> done) override {
    ask<view_result>(std::move(done), atom::get::value, std::move(id), true);
  }
  void pause(std::string id, reply<run_view> done) override {
    ask<view_result>(std::move(done), atom::pause::value, std::move(id));
  }
  void resume(std::string id, reply<run_view> done) override {
    ask<view_result>(std::move(done), atom::resume::value, std::move(id));
  }
  void stop(std::string id, stop_request req, reply<run_view> done) override {
    ask<view_result>(std::move(done), atom::stop::value, std::move(id), req);
  }
  void remove(std::string id, reply<ok_t> done) override {
    ask<ok_result>(std::move(done), atom::remove::value, std::move(id));
  }
  void restart(std::string id, reply<run_view> done) override {
    ask<view_result>(std::move(done), atom::restart::value, std::move(id));
  }
  void events(std::string id, event_query q,
              reply<event_answer> done) override {
    ask<event_page_result>(std::move(done), atom::events::value, std::move(id),
                           q);
  }
  void logs(std::string id, log_query q, reply<log_answer> done) override {
    ask<logs_result>(std::move(done), atom::logs::value, std::move(id), q);
  }
  void metrics(std::string id, reply<nlohmann::json> done) override {
    ask<json_result>(std::move(done), atom::metrics::value, std::move(id));
  }
  void artifacts(std::string id, reply<artifact_report> done) override {
    ask<artifacts_result>(std::move(done), atom::artifacts::value,
                          std::move(id));
  }
  void artifact_file(std::string id, std::string name,
                     reply<artifact> done) override {
    ask<artifact_result>(std::move(done), atom::artifact::value, std::move(id),
                         std::move(name));
  }
  void gpus(reply<gpu_report> done) override {
    ask<gpus_result>(std::move(done), atom::gpus::value);
  }
  void node(reply<node_report> done) override {
    ask<node_result>(std::move(done), atom::node::value);
  }

private:
  template <class Result, class Done, class... Ts>
  void ask(Done done, Ts... xs) {
    auto reg = registry_;
    sys_.spawn([=](caf::event_based_actor* self) {
      self->request(reg, caf::infinite, xs...)
          .then([=](Result& r) { done(std::move(r)); },
                [=](caf::error& err) {
                  done(make_error(ec::unavailable,
                                  "the daemon could not answer: "
                                      + self->system().render(err)));
                });
    });
  }

  caf::actor_system& sys_;
  registry_actor registry_;
  listing_cache& listings_;
};

} // namespace

struct daemon_runtime::impl {
  caf::actor_system_config cfg;
  std::unique_ptr<reactor> events = std::make_unique<reactor>();
  /// Answers of GET /api/v1/runs kept while no run changed, for at most a
  /// second (progress and resources change without events).
  listing_cache listings{std::chrono::seconds{1}};
  std::unique_ptr<caf::actor_system> sys;
  registry_actor registry;
  store_actor store;
  slurm_actor slurm;
  std::unique_ptr<actor_backend> backend;
};

namespace {

std::vector<run_event> events_of(const state_store& db,
                                 const std::string& scope, std::size_t n) {
  std::vector<run_event> out;
  auto stored = db.load_events(scope, n);
  if (!stored)
    throw std::runtime_error(stored.error().message);
  for (auto& e : *stored)
    if (auto ev = event_from_record(e.event))
      out.push_back(std::move(*ev));
  return out;
}

} // namespace

daemon_runtime::daemon_runtime(runtime_options opts)
    : impl_(std::make_unique<impl>()) {
  impl_->cfg.set("scheduler.max-threads", opts.threads);
  // Work stealing parks idle workers in sleeps of up to 10 ms: fine for
  // throughput, too slow for a pause that must answer in about a
  // millisecond. The sharing policy wakes a worker at once.
  impl_->cfg.set("scheduler.policy", caf::atom("sharing"));
  impl_->sys = std::make_unique<caf::actor_system>(impl_->cfg);
  registry_config rc;
  rc.exec = opts.exec;
  rc.events = impl_->events.get();
  rc.listings = &impl_->listings;
  rc.pause_timeout = opts.pause_timeout;
  rc.inventory = opts.inventory;
  rc.max_concurrent = opts.max_concurrent;
  rc.starvation_timeout = opts.starvation_timeout;
  if (!opts.store_path.empty()) {
    auto opened = state_store::open(opts.store_path);
    if (!opened)
      throw std::runtime_error(opened.error().message);
    std::shared_ptr<state_store> db = std::move(*opened);
    auto runs = db->load_runs();
    if (!runs)
      throw std::runtime_error(runs.error().message);
    if (!opts.slurm) {
      // Without a Slurm client these runs could not be followed, and would
      // end as lost: refuse, and change nothing.
      std::vector<std::string> on_slurm;
      for (auto& r : *runs)
        if (!r.ended && r.record.contains("spec")
            && r.record["spec"].value("executor", "") == "slurm")
          on_slurm.push_back(r.id);
      if (!on_slurm.empty())
        throw std::runtime_error(
            fmt::format("the state store holds {} Slurm run(s) that have not "
                        "ended ({}), but sbatch, squeue, scontrol or scancel "
                        "is not on this daemon's PATH: start it where Slurm's "
                        "client commands are",
                        on_slurm.size(), fmt::join(on_slurm, ", ")));
    }
    for (auto& r : *runs)
      rc.restored_events[r.id] = events_of(*db, r.id, 1000);
    rc.restored_global = events_of(*db, "", 10000);
    rc.restored = std::move(*runs);
    // Bounded like the memory, so the file does not grow run after run.
    if (auto trimmed = db->trim_events(1000, 10000); !trimmed)
      spdlog::warn("store: {}", trimmed.error().message);
    // SQLite waits for the disk: on a thread of its own, not a worker's.
    impl_->store
        = impl_->sys->spawn<caf::detached>(store, std::move(db), millis{200});
    rc.store = impl_->store;
  }
  rc.default_executor = opts.default_executor;
  if (opts.slurm) {
    // Slurm's commands block for as long as the controller takes: on a
    // thread of their own.
    slurm_config sc;
    sc.poll = opts.slurm_poll;
    impl_->slurm = impl_->sys->spawn<caf::detached>(slurm_client, sc);
    rc.slurm = impl_->slurm;
  }
  impl_->registry = impl_->sys->spawn(registry, std::move(rc));
  impl_->backend = std::make_unique<actor_backend>(*impl_->sys, impl_->registry,
                                                   impl_->listings);
}

daemon_runtime::~daemon_runtime() {
  impl_->backend.reset();
  caf::anon_send_exit(impl_->registry, caf::exit_reason::user_shutdown);
  impl_->registry = nullptr;
  if (impl_->store) {
    caf::anon_send_exit(impl_->store, caf::exit_reason::user_shutdown);
    impl_->store = nullptr;
  }
  if (impl_->slurm) {
    caf::anon_send_exit(impl_->slurm, caf::exit_reason::user_shutdown);
    impl_->slurm = nullptr;
  }
  // Actors go first (they unwatch from the reactor), then the reactor.
  impl_->sys.reset();
  impl_->events.reset();
}

api_backend& daemon_runtime::backend() {
  return *impl_->backend;
}

void daemon_runtime::stop_all_runs() {
  caf::scoped_actor self{*impl_->sys};
  self->request(impl_->registry, caf::infinite, atom::shutdown::value)
      .receive([](ok_result&) {},
               [](caf::error& err) {
                 spdlog::error("registry did not confirm shutdown: {}",
                               caf::to_string(err));
               });
}

void daemon_runtime::save_all_runs() {
  caf::scoped_actor self{*impl_->sys};
  self->request(impl_->registry, caf::infinite, atom::flush::value)
      .receive(
          [](ok_result& r) {
            if (!r)
              spdlog::error("store: {}", r.error().message);
          },
          [](caf::error& err) {
            spdlog::error("registry did not confirm the save: {}",
                          caf::to_string(err));
          });
}

} // namespace corral
