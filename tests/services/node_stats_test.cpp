// The machine's load as GET /api/v1/node shows it.

#include "services/node_stats.hpp"

#include <unistd.h>

#include <catch2/catch.hpp>

using namespace corral;

TEST_CASE("proc stat, meminfo and loadavg parse, garbage does not", "[node]") {
  auto cpu = parse_proc_stat_cpu("cpu  100 5 50 800 45 0 0 0 0 0\n"
                                 "cpu0 50 2 25 400 20 0 0 0 0 0\n");
  REQUIRE(cpu);
  CHECK(cpu->total == 1000);
  CHECK(cpu->busy == 155); // idle and iowait are not busy
  CHECK_FALSE(parse_proc_stat_cpu("intr 1 2 3\n"));
  CHECK_FALSE(parse_proc_stat_cpu("cpu  1 2\n"));

  auto mem = parse_meminfo("MemTotal:       16384 kB\n"
                           "MemFree:         1024 kB\n"
                           "MemAvailable:    4096 kB\n");
  REQUIRE(mem);
  CHECK(mem->first == 16384ull * 1024);
  CHECK(mem->second == 12288ull * 1024);
  CHECK_FALSE(parse_meminfo("MemTotal: 10 kB\n"));
  CHECK_FALSE(parse_meminfo("MemTotal: 10 kB\nMemAvailable: 20 kB\n"));

  auto load = parse_loadavg("0.52 0.58 0.59 1/467 12345\n");
  REQUIRE(load);
  CHECK((*load)[0] == Approx(0.52));
  CHECK((*load)[2] == Approx(0.59));
  CHECK_FALSE(parse_loadavg("nonsense"));
}

TEST_CASE("the sampler reads this machine", "[node]") {
  node_sampler aut;
  auto first = aut.sample();
  REQUIRE(first);
  CHECK(first->cpus == ::sysconf(_SC_NPROCESSORS_ONLN));
  CHECK(first->memory_total > 0);
  CHECK(first->memory_used <= first->memory_total);
  CHECK(first->cpu_pct >= 0);
  CHECK(first->cpu_pct <= 100);
  // Burn some CPU: the next sample covers only the time since the first.
  volatile double x = 0;
  for (int i = 0; i < 20000000; ++i)
    x = x + i * 0.5;
  auto second = aut.sample();
  REQUIRE(second);
  CHECK(second->cpu_pct >= 0);
  CHECK(second->cpu_pct <= 100);
}
