#include "services/named_regex.hpp"

#include <catch2/catch.hpp>

using namespace corral;

TEST_CASE("named groups are stripped and their names kept in group order") {
  auto aut = strip_group_names(
      R"(step=(?<step>\d+) (x)(?:y) loss=(?<loss>[0-9.]+))");
  REQUIRE(aut);
  CHECK(aut->first == R"(step=(\d+) (x)(?:y) loss=([0-9.]+))");
  CHECK(aut->second == std::vector<std::string>{"step", "", "loss"});
}

TEST_CASE("escaped parentheses and classes open no group") {
  auto aut = strip_group_names(R"(\((?<a>x)[(?<b>)]\))");
  REQUIRE(aut);
  CHECK(aut->first == R"(\((x)[(?<b>)]\))");
  CHECK(aut->second == std::vector<std::string>{"a"});
}

TEST_CASE("a named backreference becomes a numbered one") {
  auto aut = compile_named_regex(R"((?<q>['"])(?<text>.*?)\k<q>)");
  REQUIRE(aut);
  std::smatch m;
  std::string s = R"(say "hi" now)";
  REQUIRE(std::regex_search(s, m, aut->re));
  CHECK(m[2] == "hi");
  CHECK(aut->group_names == std::vector<std::string>{"q", "text"});
}

TEST_CASE("a compiled named regex matches with its groups by index") {
  auto aut = compile_named_regex(R"(step=(?<step>\d+) fps=(?<fps>\d+))");
  REQUIRE(aut);
  std::smatch m;
  std::string line = "| step=1200 fps=311 |";
  REQUIRE(std::regex_search(line, m, aut->re));
  CHECK(m[1] == "1200");
  CHECK(m[2] == "311");
}

TEST_CASE("malformed group names and bad regexes are refused") {
  CHECK_FALSE(strip_group_names("(?<1a>x)"));
  CHECK_FALSE(strip_group_names("(?<a-b>x)"));
  CHECK_FALSE(strip_group_names("(?<a>x)(?<a>y)"));
  CHECK_FALSE(strip_group_names(R"(\k<nope>)"));
  auto aut = compile_named_regex("(?<a>x");
  REQUIRE_FALSE(aut);
  CHECK(aut.error().code == ec::invalid_spec);
  CHECK_THAT(aut.error().message, Catch::StartsWith("invalid regex: "));
}
