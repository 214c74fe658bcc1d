#include <catch2/catch.hpp>

#include <filesystem>
#include <thread>

#include "actors/registry.hpp"
#include "services/reactor.hpp"
#include "tests/temp_dir.hpp"

using namespace corral;
using namespace std::chrono_literals;

namespace {

run_spec spec_of(const std::string& name, std::vector<std::string> cmd) {
  run_spec s;
  s.id_base = name;
  s.experiment = name;
  s.command = std::move(cmd);
  s.base_dir = "/tmp";
  s.base_env = {{"PATH", "/usr/bin:/bin"}};
  return s;
}

struct fixture {
  // The reactor outlives the actor system: run actors unwatch their paths
  // when they are destroyed, as in daemon_runtime.
  reactor events;
  caf::actor_system_config cfg;
  caf::actor_system sys{cfg};
  registry_actor aut;
  caf::scoped_actor self{sys};
  test::temp_dir runs_dir;

  fixture() {
    registry_config rc;
    rc.exec.shim_path = CORRAL_SHIM_BINARY;
    rc.exec.runs_dir = runs_dir.path();
    rc.events = &events;
    aut = sys.spawn(registry, rc);
  }
  ~fixture() { self->send_exit(aut, caf::exit_reason::user_shutdown); }

  template <class R, class... Ts>
  R ask(Ts... xs) {
    std::optional<R> out;
    self->request(aut, caf::infinite, xs...)
        .receive([&](R& r) { out = std::move(r); },
                 [&](caf::error& e) { FAIL(caf::to_string(e)); });
    return std::move(*out);
  }
};

} // namespace

TEST_CASE("a taken id gets the first free numbered suffix") {
  CHECK(unique_run_id("ppo", {}) == "ppo");
  CHECK(unique_run_id("ppo", {"ppo"}) == "ppo-2");
  CHECK(unique_run_id("ppo", {"ppo", "ppo-2", "ppo-3"}) == "ppo-4");
}

TEST_CASE("a dry run names runs and placeholders without creating any") {
  fixture f;
  std::vector<run_spec> specs{spec_of("a", {"echo", "{run}", "{experiment}"}),
                              spec_of("a", {"echo"})};
  auto r = f.ask<views_result>(atom::submit::value, specs, true);
  REQUIRE(r);
  REQUIRE(r->size() == 2);
  CHECK((*r)[0].id == "a");
  CHECK((*r)[0].command == std::vector<std::string>{"echo", "a", "a"});
  CHECK((*r)[1].id == "a-2");
  CHECK((*r)[0].state == run_state::queued);
  auto list = f.ask<views_result>(atom::list::value, run_filter{});
  REQUIRE(list);
  CHECK(list->empty());
}

TEST_CASE("unknown runs are 404s, unsupported specs 422s", "[integration]") {
  fixture f;
  auto r = f.ask<view_result>(atom::pause::value, std::string{"nope"});
  REQUIRE_FALSE(r);
  CHECK(r.error().code == ec::not_found);
  auto d = f.ask<ok_result>(atom::remove::value, std::string{"nope"});
  REQUIRE_FALSE(d);
  CHECK(d.error().code == ec::not_found);
  auto gpu = spec_of("g", {"true"});
  gpu.gpus = 1;
  auto s = f.ask<views_result>(atom::submit::value, std::vector{gpu}, false);
  REQUIRE_FALSE(s);
  CHECK(s.error().code == ec::invalid_spec);
}

TEST_CASE("a run started through the registry ends and can be forgotten",
          "[integration]") {
  fixture f;
  auto r = f.ask<views_result>(atom::submit::value,
                               std::vector{spec_of("t", {"/bin/true"})}, false);
  REQUIRE(r);
  REQUIRE(r->size() == 1);
  run_view v;
  auto end = std::chrono::steady_clock::now() + 10s;
  do {
    std::this_thread::sleep_for(10ms);
    v = *f.ask<view_result>(atom::get::value, std::string{"t"}, true);
  } while (v.state != run_state::finished
           && std::chrono::steady_clock::now() < end);
  CHECK(v.state == run_state::finished);
  CHECK(v.exit_code == 0);
  CHECK(v.processes->empty());
  auto d = f.ask<ok_result>(atom::remove::value, std::string{"t"});
  CHECK(d);
  auto gone = f.ask<view_result>(atom::get::value, std::string{"t"}, false);
  CHECK_FALSE(gone);
}

TEST_CASE("shutdown stops every active run and answers when all ended",
          "[integration]") {
  fixture f;
  auto r
      = f.ask<views_result>(atom::submit::value,
                            std::vector{spec_of("s1", {"/bin/sleep", "600"}),
                                        spec_of("s2", {"/bin/sleep", "600"})},
                            false);
  REQUIRE(r);
  auto end = std::chrono::steady_clock::now() + 10s;
  while (std::chrono::steady_clock::now() < end) {
    auto v = f.ask<view_result>(atom::get::value, std::string{"s2"}, false);
    if (v->state == run_state::running)
      break;
    std::this_thread::sleep_for(10ms);
  }
  auto ok = f.ask<ok_result>(atom::shutdown::value);
  CHECK(ok);
  for (auto id : {"s1", "s2"}) {
    auto v = f.ask<view_result>(atom::get::value, std::string{id}, false);
    CHECK(v->state == run_state::stopped);
    CHECK(v->reason == "daemon_exit");
    CHECK(v->signal == "SIGTERM");
  }
}
