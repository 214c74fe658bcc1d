#pragma once
/// Trainer output for the tests of the metric parsers and of the run
/// output that feeds them: recorded (tests/fixtures/metrics/) or made up.

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

/// Appends `text` to the file at `path` (created if missing).
inline void append(const std::string& path, const std::string& text) {
  std::ofstream(path, std::ios::app | std::ios::binary) << text;
}

/// A minimal Stable-Baselines3 table with one counter.
inline std::string sb3_table(int steps) {
  return "-----------------------------\n"
         "| time/              |      |\n"
         "|    total_timesteps | "
         + std::to_string(steps)
         + " |\n"
           "-----------------------------\n";
}

} // namespace corral::test
