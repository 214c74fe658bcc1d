#include <catch2/catch.hpp>

#include "services/daemon_config.hpp"

using namespace corral;

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

  r = apply_config_file(aut, "executor: slurm\n", "c.yaml");
  REQUIRE_FALSE(r);
  CHECK(r.error().message.find("not supported") != std::string::npos);

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
    auto r = apply_config_file(aut, yaml, "c.yaml");
    INFO(yaml);
    REQUIRE_FALSE(r);
    CHECK(r.error().code == ec::invalid_spec);
    CHECK(r.error().message.find(start) == 0);
    CHECK(r.error().message.find(part) != std::string::npos);
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
