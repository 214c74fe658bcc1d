// How soon a printed line reaches a `logs?follow=1` client, and how fast a
// follower keeps up with a burst. The trainer prints its own clock in each
// line; the follower notes when each line arrives. The line's `t` (when
// the shim read it from the pipe) splits the latency into print → shim and
// shim → follower.
//
// Usage: bench_logs [lines=500] [burst=200000]

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <fstream>
#include <string>
#include <vector>

#include "tests/integration/harness.hpp"

using namespace corral::test;

namespace {

double unix_ms_now() {
  return std::chrono::duration<double, std::milli>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// "2026-11-28T18:29:40.239Z" → Unix ms.
double parse_t(const std::string& t) {
  std::tm tm{};
  int ms = 0;
  std::sscanf(t.c_str(), "%d-%d-%dT%d:%d:%d.%dZ", &tm.tm_year, &tm.tm_mon,
              &tm.tm_mday, &tm.tm_hour, &tm.tm_min, &tm.tm_sec, &ms);
  tm.tm_year -= 1900;
  tm.tm_mon -= 1;
  return static_cast<double>(timegm(&tm)) * 1000 + ms;
}

void report(const char* what, std::vector<double> v) {
  std::sort(v.begin(), v.end());
  std::printf("%-34s median %7.2f ms  p99 %7.2f ms  max %7.2f ms  (n=%zu)\n",
              what, v[v.size() / 2],
              v[std::min(v.size() - 1, v.size() * 99 / 100)], v.back(),
              v.size());
}

} // namespace

int main(int argc, char** argv) {
  int lines = argc > 1 ? std::stoi(argv[1]) : 500;
  int burst = argc > 2 ? std::stoi(argv[2]) : 200000;
  test_daemon d;
  temp_dir dir;
  auto go = dir / "go";
  // Paced lines first, then (once the go file exists) a burst.
  std::string code
      = "import os, sys, time\n"
        "for i in range("
        + std::to_string(lines)
        + "):\n"
          "    print('t=%.3f' % (time.time() * 1000), flush=True)\n"
          "    time.sleep(0.02)\n"
          "while not os.path.exists('"
        + go
        + "'): time.sleep(0.01)\n"
          "w = sys.stdout.write\n"
          "t0 = time.time()\n"
          "for i in range("
        + std::to_string(burst)
        + "): w('burst %d\\n' % i)\n"
          "sys.stdout.flush()\n"
          "print('burst-written %.3f' % ((time.time() - t0) * 1000), "
          "flush=True)\n";
  nlohmann::json cmd = {"python3", "-c", code};
  auto r = d.submit("experiments:\n  - name: logs\n    command: " + cmd.dump()
                    + "\n");
  if (r.status != 201) {
    std::fprintf(stderr, "submit failed: %s\n", r.raw.c_str());
    return 1;
  }
  std::vector<double> total, to_shim, to_follower;
  std::size_t burst_seen = 0;
  double burst_start = 0, burst_end = 0, burst_written = 0;
  sse_follower f(d, "/api/v1/runs/logs/logs?follow=1&tail=0",
                 [&](const std::vector<received_event>& es) {
                   // Called for each event as it arrives: measure here.
                   auto& e = es.back();
                   if (e.event != "line")
                     return false;
                   auto now = unix_ms_now();
                   auto text = e.data["text"].get<std::string>();
                   if (text.starts_with("t=")) {
                     auto printed = std::stod(text.substr(2));
                     auto shim = parse_t(e.data["t"].get<std::string>());
                     total.push_back(now - printed);
                     to_shim.push_back(std::max(0.0, shim - printed));
                     to_follower.push_back(std::max(0.0, now - shim));
                     if (static_cast<int>(total.size()) == lines)
                       std::ofstream{go} << "go";
                   } else if (text.starts_with("burst-written")) {
                     burst_written = std::stod(text.substr(14));
                     burst_end = now;
                   } else if (text.starts_with("burst ")) {
                     if (burst_seen++ == 0)
                       burst_start = now;
                   }
                   return false;
                 });
  f.wait_done(std::chrono::minutes{10});
  report("print → follower", total);
  report("print → shim (index time)", to_shim);
  report("shim → follower", to_follower);
  std::printf("burst: %zu of %d lines arrived; written in %.0f ms, "
              "followed in %.0f ms (%.0f lines/s through SSE)\n",
              burst_seen, burst, burst_written, burst_end - burst_start,
              burst_seen / ((burst_end - burst_start) / 1000.0));
  return burst_seen == static_cast<std::size_t>(burst) ? 0 : 1;
}
