#pragma once
/// Recorded trainer output (tests/fixtures/metrics/), for the tests of the
/// metric parsers and of the run output that feeds them.

#include <fstream>
#include <sstream>
#include <string>

#include <catch2/catch.hpp>

namespace corral::test {

/// The bytes of tests/fixtures/metrics/<name>.
inline std::string metrics_fixture(const std::string& name) {
  std::ifstream in{CORRAL_FIXTURES_DIR "/metrics/" + name, std::ios::binary};
  REQUIRE(in);
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

} // namespace corral::test
