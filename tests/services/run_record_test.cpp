#include "services/run_record.hpp"
#include "services/run_spec_json.hpp"

#include <catch2/catch.hpp>

using namespace corral;
using namespace std::chrono_literals;

namespace {

run_spec full_spec() {
  run_spec s;
  s.id_base = "ppo-lr0.1";
  s.experiment = "ppo";
  s.command = {"python3", "train.py", "--lr", "0.1"};
  s.cwd = "/work/rl";
  s.base_dir = "/work";
  s.env = {{"WANDB_MODE", "offline"}};
  s.base_env = {{"PATH", "/usr/bin"}, {"HOME", "/root"}};
  s.gpus = 2;
  s.cpus = 1.5;
  s.memory_bytes = 8ull << 30;
  s.priority = -3;
  s.max_concurrent = 4;
  s.stop.signal = SIGINT;
  s.stop.mode = stop_mode::tree;
  s.stop.grace = 45s;
  s.stop.checkpoint_signal = SIGUSR1;
  s.stop.checkpoint_timeout = 90s;
  s.progress = {"sb3", "time/total_timesteps", 1e6, "", ""};
  s.artifacts = {"ckpt/*.zip", "videos/**/*.mp4"};
  s.restart = {restart_policy::on_failure, 5, 2500ms};
  s.max_runtime = 3600s;
  s.executor = "slurm";
  s.slurm = {"gpu,gpu-long",
             "proj",
             "high",
             "1-00:00:00",
             {"--constraint=a100", "--exclusive"}};
  s.matrix = {{"lr", "0.1"}};
  return s;
}

} // namespace

TEST_CASE("a run spec survives the store unchanged", "[record]") {
  auto s = full_spec();
  auto back = spec_from_json(nlohmann::json::parse(spec_to_json(s).dump()));
  REQUIRE(back);
  CHECK(spec_to_json(*back) == spec_to_json(s));
  CHECK(back->stop.mode == stop_mode::tree);
  CHECK(back->stop.checkpoint_signal == SIGUSR1);
  CHECK(back->restart.policy == restart_policy::on_failure);
  CHECK(back->max_runtime == 3600s);
  CHECK(back->memory_bytes == 8ull << 30);
  CHECK(back->executor == "slurm");
  CHECK(back->slurm == s.slurm);

  run_spec bare; // every optional empty
  auto bare_back = spec_from_json(spec_to_json(bare));
  REQUIRE(bare_back);
  CHECK_FALSE(bare_back->cpus);
  CHECK_FALSE(bare_back->max_runtime);
  CHECK_FALSE(bare_back->stop.checkpoint_signal);
  CHECK(spec_to_json(*bare_back) == spec_to_json(bare));
}

TEST_CASE("a spec stored before Slurm support still loads", "[record]") {
  auto j = spec_to_json(full_spec());
  j.erase("slurm");
  j["executor"] = "local";
  auto back = spec_from_json(j);
  REQUIRE(back);
  CHECK(back->executor == "local");
  CHECK(back->slurm == slurm_spec{});
  // A run spec without executor leaves it to the daemon's default.
  auto bare = spec_from_json(spec_to_json(run_spec{}));
  REQUIRE(bare);
  CHECK(bare->executor.empty());
}

TEST_CASE("a damaged stored spec is an error naming the key", "[record]") {
  auto j = spec_to_json(full_spec());
  j.erase("command");
  auto r = spec_from_json(j);
  REQUIRE_FALSE(r);
  CHECK(r.error().message.find("command") != std::string::npos);
  j = spec_to_json(full_spec());
  j["gpus"] = "two";
  CHECK_FALSE(spec_from_json(j));
  j = spec_to_json(full_spec());
  j["slurm"].erase("time");
  r = spec_from_json(j);
  REQUIRE_FALSE(r);
  CHECK(r.error().message.find("time") != std::string::npos);
}

TEST_CASE("a run view and its events survive the store", "[record]") {
  run_view v;
  v.id = "ppo-1";
  v.experiment = "ppo";
  v.state = run_state::paused;
  v.reason = "";
  v.message = "every process frozen";
  v.pid = 4242;
  v.pause_mechanism = "cgroup-v2";
  v.gpus = {0, 3};
  v.attempt = 2;
  v.restart_of = "ppo";
  v.created_at = from_unix_ms(1795890578123);
  v.started_at = from_unix_ms(1795890579456);
  v.active_s = 12.5;
  v.cwd = "/w";
  v.command = {"python3", "t.py"};
  auto back = view_from_record(nlohmann::json::parse(view_to_record(v).dump()));
  REQUIRE(back);
  CHECK(view_to_record(*back) == view_to_record(v));
  CHECK(back->state == run_state::paused);
  CHECK(back->created_at == v.created_at);
  CHECK_FALSE(back->ended_at);
  CHECK(back->pid == 4242);

  auto bad = view_to_record(v);
  bad["state"] = "dozing";
  auto r = view_from_record(bad);
  REQUIRE_FALSE(r);
  CHECK(r.error().message.find("dozing") != std::string::npos);

  run_event e;
  e.seq = 17;
  e.run = "ppo-1";
  e.t = from_unix_ms(1795890580001);
  e.type = "state";
  e.cause = "user";
  e.message = "paused";
  e.data = {{"from", "running"}, {"to", "paused"}};
  auto eb = event_from_record(event_to_record(e));
  REQUIRE(eb);
  CHECK(to_json(*eb) == to_json(e));
  CHECK_FALSE(event_from_record(nlohmann::json{{"seq", 1}}));
}

TEST_CASE("an artifact list survives the store to the nanosecond", "[record]") {
  artifact a;
  a.kind = "checkpoint";
  a.name = "ckpt/model_100.zip";
  a.path = "/w/ckpt/model_100.zip";
  a.size = 123456789012;
  a.mtime = std::chrono::system_clock::time_point{
      std::chrono::duration_cast<std::chrono::system_clock::duration>(
          std::chrono::nanoseconds{1795890578123456789})};
  auto back = artifacts_from_record(
      nlohmann::json::parse(artifacts_to_record({a}).dump()));
  REQUIRE(back);
  REQUIRE(back->size() == 1);
  CHECK(back->front() == a);
  CHECK(artifacts_from_record(nlohmann::json::array())->empty());
  CHECK_FALSE(artifacts_from_record(nlohmann::json::parse(R"([{"kind": 1}])")));
}
