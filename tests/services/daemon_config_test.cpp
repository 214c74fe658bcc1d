#include <catch2/catch.hpp>

#include "services/daemon_config.hpp"

using namespace corral;

namespace {

// A config file the daemon refuses, with a message that starts with
// `start` (file, key, line, column) and says `part`.
void check_refused(daemon_config& cfg, const std::string& yaml,
                   const std::string& start, const std::string& part) {
  auto r = apply_config_file(cfg, yaml, "c.yaml");
  INFO(yaml);
  REQUIRE_FALSE(r);
  CHECK(r.error().code == ec::invalid_spec);
  CHECK(r.error().message.find(start) == 0);
  CHECK(r.error().message.find(part) != std::string::npos);
}

} // namespace

TEST_CASE("a config file lays its keys over the defaults") {
  auto aut = default_daemon_config();
  CHECK(aut.listen == "127.0.0.1:8700");
  CHECK(aut.pause_timeout == std::chrono::seconds{10});
  REQUIRE(apply_config_file(aut,
                            "listen: 127.0.0.1:9000\npause_timeout: 2s\n"
                            "no_auth: true\ncgroup: off\nstate_dir: /srv/c\n",
                            "corral.yaml"));
  CHECK(aut.listen == "127.0.0.1:9000");
  CHECK(aut.pause_timeout == std::chrono::seconds{2});
  CHECK(aut.no_auth);
  CHECK(aut.cgroup == "off");
  CHECK(aut.state_dir == "/srv/c");
  CHECK_FALSE(aut.gpus);
  CHECK(aut.starvation_timeout == std::chrono::minutes{10});
  REQUIRE(apply_config_file(aut,
                            "gpus: [0, 2, 3]\nmax_concurrent: 5\n"
                            "starvation_timeout: 30s\n",
                            "corral.yaml"));
  CHECK(aut.gpus == std::vector<int>{0, 2, 3});
  CHECK(aut.max_concurrent == 5);
  CHECK(aut.starvation_timeout == std::chrono::seconds{30});
  REQUIRE(apply_config_file(aut, "gpus: 2\n", "corral.yaml"));
  CHECK(aut.gpus == std::vector<int>{0, 1});
  // A list names devices, even a list of one.
  REQUIRE(apply_config_file(aut, "gpus: [3]\n", "corral.yaml"));
  CHECK(aut.gpus == std::vector<int>{3});
  REQUIRE(apply_config_file(aut, "gpus: []\n", "corral.yaml"));
  CHECK(aut.gpus == std::vector<int>{});
}

TEST_CASE("config errors name the file, key, line and column") {
  auto aut = default_daemon_config();
  auto r = apply_config_file(aut, "listen: 127.0.0.1:1\nlisen: x\n", "c.yaml");
  REQUIRE_FALSE(r);
  CHECK(r.error().code == ec::invalid_spec);
  CHECK(r.error().message
        == "c.yaml: lisen (line 2, column 8): unknown key 'lisen'");

  r = apply_config_file(aut, "pause_timeout: soon\n", "c.yaml");
  REQUIRE_FALSE(r);
  CHECK(r.error().message.find("c.yaml: pause_timeout (line 1, column 16)")
        == 0);

  r = apply_config_file(aut, "listen: [a\n", "c.yaml");
  REQUIRE_FALSE(r);
  CHECK(r.error().code == ec::bad_request);
  CHECK(r.error().message.find("c.yaml: YAML syntax error at line") == 0);

  r = apply_config_file(aut, "gpus: [0, x]\n", "c.yaml");
  REQUIRE_FALSE(r);
  CHECK(r.error().message.find("c.yaml: gpus (line 1, column 7)") == 0);
  r = apply_config_file(aut, "max_concurrent: 0\n", "c.yaml");
  REQUIRE_FALSE(r);

  r = apply_config_file(aut, "stop_runs_on_exit: maybe\n", "c.yaml");
  REQUIRE_FALSE(r);
  r = apply_config_file(aut, "cgroup: maybe\n", "c.yaml");
  REQUIRE_FALSE(r);
  CHECK(r.error().message.find("expected auto or off") != std::string::npos);
}

TEST_CASE("listen addresses split into host and port") {
  auto a = parse_listen("127.0.0.1:0");
  REQUIRE(a);
  CHECK(a->first == "127.0.0.1");
  CHECK(a->second == 0);
  auto b = parse_listen("[::1]:8700");
  REQUIRE(b);
  CHECK(b->first == "::1");
  CHECK_FALSE(parse_listen("localhost"));
  CHECK_FALSE(parse_listen("h:70000"));
  CHECK_FALSE(parse_listen(":80"));
  CHECK(is_loopback("127.0.0.1"));
  CHECK(is_loopback("::1"));
  CHECK(is_loopback("localhost"));
  CHECK_FALSE(is_loopback("0.0.0.0"));
}

TEST_CASE("log_rotate sets the size and count of a run's log files") {
  auto aut = default_daemon_config();
  CHECK(aut.log_max_bytes == 100 * 1024 * 1024);
  CHECK(aut.log_keep == 3);
  REQUIRE(
      apply_config_file(aut, "log_rotate: {size: 10M, count: 5}\n", "c.yaml"));
  CHECK(aut.log_max_bytes == 10 * 1024 * 1024);
  CHECK(aut.log_keep == 5);
  // Either key alone keeps the other.
  REQUIRE(apply_config_file(aut, "log_rotate:\n  count: 1\n", "c.yaml"));
  CHECK(aut.log_max_bytes == 10 * 1024 * 1024);
  CHECK(aut.log_keep == 1);
  REQUIRE(apply_config_file(aut, "log_rotate: {size: 1.5G}\n", "c.yaml"));
  CHECK(aut.log_max_bytes == 1536ull * 1024 * 1024);

  auto fails = [&](const std::string& yaml, const std::string& start,
                   const std::string& part) {
    auto before = aut;
    check_refused(aut, yaml, start, part);
    // Nothing of a refused setting is applied.
    CHECK(aut.log_max_bytes == before.log_max_bytes);
    CHECK(aut.log_keep == before.log_keep);
  };
  fails("log_rotate: 100M\n", "c.yaml: log_rotate (line 1, column 13)",
        "expected a map");
  fails("log_rotate: {size: 1M, count: 0}\n",
        "c.yaml: log_rotate.count (line 1, column 31)", "from 1 to 1000");
  fails("log_rotate: {count: many}\n", "c.yaml: log_rotate.count", "from 1");
  fails("log_rotate: {count: 2.5}\n", "c.yaml: log_rotate.count", "from 1");
  fails("log_rotate: {size: 1M, count: 3, compress: true}\n",
        "c.yaml: log_rotate.compress (line 1, column 44)",
        "unknown key 'compress'");
  fails("log_rotate:\n  size: lots\n",
        "c.yaml: log_rotate.size (line 2, column 9)", "invalid size");
  fails("log_rotate: {size: [1M]}\n", "c.yaml: log_rotate.size",
        "expected a size");
  fails("log_rotate: {size: 1000}\n", "c.yaml: log_rotate.size",
        "too small; use at least 64K");
}

TEST_CASE("stop_runs_on_exit is off unless configured") {
  auto aut = default_daemon_config();
  CHECK_FALSE(aut.stop_runs_on_exit);
  REQUIRE(apply_config_file(aut, "stop_runs_on_exit: true\n", "c.yaml"));
  CHECK(aut.stop_runs_on_exit);
  REQUIRE(apply_config_file(aut, "stop_runs_on_exit: false\n", "c.yaml"));
  CHECK_FALSE(aut.stop_runs_on_exit);
}

TEST_CASE("executor sets the default executor of experiments", "[slurm]") {
  auto aut = default_daemon_config();
  CHECK(aut.executor == "local");
  REQUIRE(apply_config_file(aut, "executor: slurm\n", "c.yaml"));
  CHECK(aut.executor == "slurm");
  REQUIRE(apply_config_file(aut, "executor: local\n", "c.yaml"));
  CHECK(aut.executor == "local");

  auto r = apply_config_file(aut, "executor: pbs\n", "c.yaml");
  REQUIRE_FALSE(r);
  CHECK(r.error().code == ec::invalid_spec);
  CHECK(r.error().message
        == "c.yaml: executor (line 1, column 11): expected local or slurm, "
           "got 'pbs'");
  r = apply_config_file(aut, "executor: [slurm]\n", "c.yaml");
  REQUIRE_FALSE(r);
  CHECK(r.error().message
        == "c.yaml: executor (line 1, column 11): expected a single value");
  CHECK(aut.executor == "local");
}

TEST_CASE("slurm sets where and how Slurm jobs are followed", "[slurm]") {
  auto aut = default_daemon_config();
  CHECK(aut.slurm.log_dir.empty()); // <state_dir>/slurm, set at start
  CHECK(aut.slurm.poll == std::chrono::seconds{2});
  CHECK(aut.slurm.log_watch == "auto");
  CHECK(aut.slurm.shim.empty());
  REQUIRE(apply_config_file(aut,
                            "executor: slurm\n"
                            "slurm:\n"
                            "  log_dir: /shared/corral/\n"
                            "  poll: 500ms\n"
                            "  log_watch: poll\n"
                            "  shim: /shared/bin/../bin/corral-shim\n",
                            "c.yaml"));
  CHECK(aut.executor == "slurm");
  CHECK(aut.slurm.log_dir == "/shared/corral");
  CHECK(aut.slurm.poll == std::chrono::milliseconds{500});
  CHECK(aut.slurm.log_watch == "poll");
  CHECK(aut.slurm.shim == "/shared/bin/corral-shim");
  // Keys left out keep their value.
  REQUIRE(apply_config_file(aut, "slurm: {log_watch: inotify, poll: 10m}\n",
                            "c.yaml"));
  CHECK(aut.slurm.log_dir == "/shared/corral");
  CHECK(aut.slurm.log_watch == "inotify");
  CHECK(aut.slurm.poll == std::chrono::minutes{10});
  REQUIRE(apply_config_file(aut, "slurm: {log_watch: auto, poll: 100ms}\n",
                            "c.yaml"));
  CHECK(aut.slurm.log_watch == "auto");
  CHECK(aut.slurm.poll == std::chrono::milliseconds{100});
  REQUIRE(apply_config_file(aut, "slurm: {}\n", "c.yaml"));
  CHECK(aut.slurm.poll == std::chrono::milliseconds{100});

  auto fails = [&](const std::string& yaml, const std::string& start,
                   const std::string& part) {
    auto before = aut;
    check_refused(aut, yaml, start, part);
    // Nothing of a refused setting is applied.
    CHECK(aut.slurm.log_dir == before.slurm.log_dir);
    CHECK(aut.slurm.poll == before.slurm.poll);
    CHECK(aut.slurm.log_watch == before.slurm.log_watch);
    CHECK(aut.slurm.shim == before.slurm.shim);
  };
  fails("slurm: /shared\n", "c.yaml: slurm (line 1, column 8)",
        "expected a map");
  fails("slurm:\n  log_dir: /x\n  partition: gpu\n",
        "c.yaml: slurm.partition (line 3, column 14)",
        "unknown key 'partition' (slurm takes log_dir, poll, log_watch and "
        "shim)");
  fails("slurm: {poll: 1s, log_dir: shared/corral}\n",
        "c.yaml: slurm.log_dir (line 1, column 28)",
        "expected an absolute path, got 'shared/corral'");
  fails("slurm: {log_dir: \"\"}\n", "c.yaml: slurm.log_dir",
        "expected an absolute path");
  fails("slurm: {log_dir: [/x]}\n", "c.yaml: slurm.log_dir",
        "expected an absolute path");
  fails("slurm: {shim: ./corral-shim}\n",
        "c.yaml: slurm.shim (line 1, column 15)",
        "expected an absolute path, got './corral-shim'");
  fails("slurm: {poll: often}\n", "c.yaml: slurm.poll (line 1, column 15)",
        "often");
  fails("slurm: {poll: 50ms}\n", "c.yaml: slurm.poll",
        "50ms is out of range; use 100ms to 10m");
  fails("slurm: {poll: 11m}\n", "c.yaml: slurm.poll", "use 100ms to 10m");
  fails("slurm: {poll: [1s]}\n", "c.yaml: slurm.poll", "expected a duration");
  fails("slurm: {log_watch: fanotify}\n",
        "c.yaml: slurm.log_watch (line 1, column 20)",
        "expected auto, inotify or poll, got 'fanotify'");
  fails("slurm: {log_watch: [poll]}\n", "c.yaml: slurm.log_watch",
        "expected auto, inotify or poll");
  // One bad key refuses the whole map.
  fails("slurm: {log_watch: poll, poll: 1ms}\n", "c.yaml: slurm.poll",
        "out of range");
}
