#pragma once
/// Assertions integration tests share (Catch stays out of the harness,
/// which the benchmarks use too).

#include <catch2/catch.hpp>

#include "tests/integration/harness.hpp"

namespace corral::test {

/// No process of the fixture's tree is alive; whatever is (a failure) is
/// killed so it cannot outlive the test.
inline void check_tree_gone(const trainer_dir& t) {
  for (auto pid : t.pids())
    CHECK_FALSE(alive(pid));
  t.kill_leftovers();
}

} // namespace corral::test
