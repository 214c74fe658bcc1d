#include "services/units.hpp"

#include <catch2/catch.hpp>

#include <chrono>

using namespace corral;
using namespace std::chrono_literals;

namespace {

millis duration(std::string_view text) {
  auto aut = parse_duration(text);
  INFO(text);
  REQUIRE(aut);
  return *aut;
}

std::string duration_error(std::string_view text) {
  auto aut = parse_duration(text);
  INFO(text);
  REQUIRE_FALSE(aut);
  CHECK(aut.error().code == ec::invalid_spec);
  return aut.error().message;
}

std::uint64_t size(std::string_view text) {
  auto aut = parse_size(text);
  INFO(text);
  REQUIRE(aut);
  return *aut;
}

std::string size_error(std::string_view text) {
  auto aut = parse_size(text);
  INFO(text);
  REQUIRE_FALSE(aut);
  CHECK(aut.error().code == ec::invalid_spec);
  return aut.error().message;
}

} // namespace

TEST_CASE("durations read with units, combined units and decimals") {
  CHECK(duration("500ms") == 500ms);
  CHECK(duration("0.2s") == 200ms);
  CHECK(duration("30s") == 30s);
  CHECK(duration("5m") == 5min);
  CHECK(duration("2h") == 2h);
  CHECK(duration("1h30m") == 90min);
  CHECK(duration("1h30m15s250ms") == 1h + 30min + 15s + 250ms);
  CHECK(duration("1m5s") == 65s);
  CHECK(duration("1.5h") == 90min);
  CHECK(duration("0s") == 0ms);
  CHECK(duration(" 10s ") == 10s);
}

TEST_CASE("a bare number is seconds, decimals allowed") {
  CHECK(duration("30") == 30s);
  CHECK(duration("0") == 0ms);
  CHECK(duration("2.5") == 2500ms);
  CHECK(duration(".5") == 500ms);
  CHECK(duration("0.0004") == 0ms); // rounds to the nearest millisecond
  CHECK(duration("0.0006") == 1ms);
}

TEST_CASE("malformed durations are refused with the accepted forms") {
  CHECK(duration_error("abc")
        == "invalid duration 'abc' (use 500ms, 30s, 5m, 1h30m or seconds)");
  for (auto text :
       {"", " ", "s", "10x", "1d", "30m1h", "1m1m", "5ms1s", "1h 30m", "1e3",
        "inf", "nan", "10 s", "1.2.3s", "+5s", "5S", "h"})
    CHECK_THAT(
        duration_error(text),
        Catch::StartsWith("invalid duration '" + std::string{text} + "' (use"));
}

TEST_CASE("negative durations are refused as negative") {
  CHECK(duration_error("-5s")
        == "invalid duration '-5s': must not be negative");
  CHECK(duration_error("-1") == "invalid duration '-1': must not be negative");
  CHECK_THAT(duration_error("-x"),
             Catch::StartsWith("invalid duration '-x' (use"));
}

TEST_CASE("absurdly long durations are refused") {
  CHECK(duration_error("99999999999h")
        == "duration '99999999999h' is too long");
}

TEST_CASE("formatted durations read back as the same duration") {
  CHECK(format_duration(0ms) == "0s");
  CHECK(format_duration(500ms) == "500ms");
  CHECK(format_duration(30s) == "30s");
  CHECK(format_duration(90min) == "1h30m");
  CHECK(format_duration(1min + 500ms) == "1m0.5s");
  CHECK(format_duration(1005ms) == "1.005s");
  CHECK(format_duration(2h + 5s) == "2h5s");
  CHECK(format_duration(-2s) == "-2s");
  for (auto d : {1ms, 999ms, 1000ms, 61001ms, 3600000ms, 86400123ms})
    CHECK(duration(format_duration(d)) == d);
}

TEST_CASE("sizes read as bytes or with 1024-based suffixes") {
  CHECK(size("0") == 0);
  CHECK(size("1048576") == 1048576);
  CHECK(size("512K") == 512 * 1024);
  CHECK(size("100M") == 100ull << 20);
  CHECK(size("8G") == 8ull << 30);
  CHECK(size("2T") == 2ull << 40);
  CHECK(size("8g") == 8ull << 30);
  CHECK(size("8Gi") == 8ull << 30);
  CHECK(size("8GiB") == 8ull << 30);
  CHECK(size("8GB") == 8ull << 30);
  CHECK(size("8 G") == 8ull << 30);
  CHECK(size("100B") == 100);
  CHECK(size("1.5G") == 3ull << 29);
  CHECK(size("0.5K") == 512);
  CHECK(size("18446744073709551615") == 18446744073709551615ull);
}

TEST_CASE("malformed, negative and oversized sizes are refused") {
  CHECK(size_error("8X")
        == "invalid size '8X' (use bytes or a K, M, G or T suffix: 512K, "
           "100M, 8G)");
  for (auto text : {"", "G", "1.5", "8GG", "8Gb2", "1e9", "8 GiBs", "0x10"})
    CHECK_THAT(
        size_error(text),
        Catch::StartsWith("invalid size '" + std::string{text} + "' (use"));
  CHECK(size_error("-1G") == "invalid size '-1G': must not be negative");
  CHECK(size_error("18446744073709551616")
        == "size '18446744073709551616' is too large");
  CHECK(size_error("16777216T") == "size '16777216T' is too large");
}
