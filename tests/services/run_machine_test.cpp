#include <catch2/catch.hpp>

#include "services/run_machine.hpp"

using namespace corral;

namespace {

exit_facts facts(bool recorded, bool exec_error, bool signaled, int code,
                 std::string message) {
  exit_facts f;
  f.recorded = recorded;
  f.exec_error = exec_error;
  f.signaled = signaled;
  f.code = code;
  f.message = std::move(message);
  return f;
}

} // namespace

TEST_CASE("pause is legal only from running and names the state otherwise") {
  CHECK(check_pause("a", run_state::running));
  for (auto s : {run_state::queued, run_state::starting, run_state::paused,
                 run_state::stopping, run_state::stopped, run_state::finished,
                 run_state::failed}) {
    auto r = check_pause("ppo-3", s);
    REQUIRE_FALSE(r);
    CHECK(r.error().code == ec::invalid_transition);
    CHECK(r.error().message
          == "run ppo-3 is " + std::string{to_string(s)}
                 + "; only a running run can be paused");
  }
}

TEST_CASE("resume is legal only from paused") {
  CHECK(check_resume("a", run_state::paused));
  auto r = check_resume("a", run_state::running);
  REQUIRE_FALSE(r);
  CHECK(r.error().message
        == "run a is running; only a paused run can be resumed");
}

TEST_CASE("stop is legal until the run has ended, delete only after") {
  for (auto s : {run_state::queued, run_state::starting, run_state::running,
                 run_state::paused, run_state::stopping}) {
    CHECK(check_stop("a", s));
    CHECK_FALSE(check_remove("a", s));
  }
  for (auto s : {run_state::stopped, run_state::finished, run_state::failed}) {
    CHECK_FALSE(check_stop("a", s));
    CHECK(check_remove("a", s));
  }
}

TEST_CASE("exit 0 finishes, non-zero and signals fail, a stop is stopped") {
  auto ok0 = facts(true, false, false, 0, "");
  auto e = classify_ending(ok0, std::nullopt);
  CHECK(e.state == run_state::finished);
  CHECK(e.exit_code == 0);

  auto bad = facts(true, false, false, 3, "");
  e = classify_ending(bad, std::nullopt);
  CHECK(e.state == run_state::failed);
  CHECK(e.reason == "exit");
  CHECK(e.exit_code == 3);

  auto killed = facts(true, false, true, 9, "");
  e = classify_ending(killed, std::nullopt);
  CHECK(e.state == run_state::failed);
  CHECK(e.reason == "signal");
  CHECK(e.signal == "SIGKILL");
  CHECK_FALSE(e.exit_code);

  auto term = facts(true, false, true, 15, "");
  e = classify_ending(term, std::string{"user"});
  CHECK(e.state == run_state::stopped);
  CHECK(e.reason == "user");
  CHECK(e.signal == "SIGTERM");
}

TEST_CASE("an exec error fails with its message and no record means lost") {
  auto exec
      = facts(true, true, false, 127, "cannot start 'nope': No such file");
  auto e = classify_ending(exec, std::nullopt);
  CHECK(e.state == run_state::failed);
  CHECK(e.reason == "exec_error");
  CHECK(e.message == "cannot start 'nope': No such file");

  e = classify_ending(exit_facts{}, std::nullopt);
  CHECK(e.state == run_state::failed);
  CHECK(e.reason == "lost");
}

TEST_CASE("a run stopped for exceeding max_runtime fails with reason timeout") {
  auto term = facts(true, false, true, 15, "");
  auto e = classify_ending(term, std::string{"timeout"});
  CHECK(e.state == run_state::failed);
  CHECK(e.reason == "timeout");
  CHECK(e.signal == "SIGTERM");
  CHECK(e.message.find("max_runtime") != std::string::npos);
}

TEST_CASE("restart policies restart what they cover, up to max") {
  restart_spec on_failure{restart_policy::on_failure, 2,
                          std::chrono::seconds{10}};
  run_ending failed{run_state::failed, "exit", "", 1, std::nullopt};
  run_ending finished{run_state::finished, "exit", "", 0, std::nullopt};
  run_ending stopped{run_state::stopped, "user", "", 0, std::nullopt};
  run_ending exec{run_state::failed, "exec_error", "", 127, std::nullopt};
  CHECK(should_restart(on_failure, failed, 0));
  CHECK(should_restart(on_failure, failed, 1));
  CHECK_FALSE(should_restart(on_failure, failed, 2));
  CHECK_FALSE(should_restart(on_failure, finished, 0));
  CHECK_FALSE(should_restart(on_failure, stopped, 0));
  CHECK_FALSE(should_restart(on_failure, exec, 0));
  restart_spec always{restart_policy::always, 3, std::chrono::seconds{1}};
  CHECK(should_restart(always, finished, 0));
  CHECK(should_restart(always, failed, 2));
  CHECK_FALSE(should_restart(always, stopped, 0));
  CHECK_FALSE(should_restart(restart_spec{}, failed, 0));
}

TEST_CASE("the restart backoff doubles each time") {
  restart_spec r{restart_policy::on_failure, 5, std::chrono::seconds{10}};
  CHECK(restart_backoff(r, 0) == std::chrono::seconds{10});
  CHECK(restart_backoff(r, 1) == std::chrono::seconds{20});
  CHECK(restart_backoff(r, 3) == std::chrono::seconds{80});
  CHECK(restart_backoff(r, 100) == std::chrono::hours{24});
}
