#pragma once
/// Assertions integration tests share (Catch stays out of the harness,
/// which the benchmarks use too).

#include <catch2/catch.hpp>

#include <map>
#include <set>
#include <string>

#include "tests/integration/harness.hpp"

namespace corral::test {

/// No process of the fixture's tree is alive; whatever is (a failure) is
/// killed so it cannot outlive the test.
inline void check_tree_gone(const trainer_dir& t) {
  for (auto pid : t.pids())
    CHECK_FALSE(alive(pid));
  t.kill_leftovers();
}

/// Submits a YAML document; the id of its first run.
inline std::string submit_one(test_daemon& d, const std::string& yaml,
                              const std::string& base = "/tmp") {
  auto r = d.submit(yaml, base);
  INFO(r.raw);
  REQUIRE(r.status == 201);
  return r.body["runs"][0]["id"].get<std::string>();
}

/// Waits until the run is in one of `states`; its object then.
inline nlohmann::json wait_state(test_daemon& d, const std::string& id,
                                 const std::set<std::string>& states,
                                 std::chrono::milliseconds limit = 60s) {
  nlohmann::json run;
  bool ok = wait_until(
      [&] {
        run = d.run(id);
        return states.count(run["state"].get<std::string>()) > 0;
      },
      limit);
  INFO(run.dump(1));
  REQUIRE(ok);
  return run;
}

/// Every role's counter of the tree_trainer fixture goes on.
inline bool counters_advance(const trainer_dir& t,
                             std::chrono::milliseconds limit = 20s) {
  std::map<std::string, long> before;
  for (auto& r : trainer_dir::roles)
    before[r] = t.count(r);
  return wait_until(
      [&] {
        for (auto& r : trainer_dir::roles)
          if (t.count(r) <= before[r])
            return false;
        return true;
      },
      limit);
}

} // namespace corral::test
