// Pause and resume latency of a 64-process tree: the API round trip
// (request sent → answer received, the kernel having confirmed every
// process frozen) against a bare cgroup freeze of the same tree in the same
// run, since these machines are noisy.
//
// Usage: bench_pause [cycles=200] [signals]
//   "signals" runs the daemon with --cgroup off (the SIGSTOP fallback).

#include <fcntl.h>
#include <poll.h>
#include <sys/inotify.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <iostream>
#include <string>
#include <vector>

#include "services/cgroup.hpp"
#include "services/proc.hpp"
#include "tests/integration/harness.hpp"

using namespace corral;
using namespace corral::test;
using clock_type = std::chrono::steady_clock;

namespace {

struct stats {
  double median_ms = 0;
  double p99_ms = 0;
};

stats summarize(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return {v[v.size() / 2], v[std::min(v.size() - 1, v.size() * 99 / 100)]};
}

double ms_since(clock_type::time_point t) {
  return std::chrono::duration<double, std::milli>(clock_type::now() - t)
      .count();
}

// The bare reference: one write, then wait on cgroup.events for frozen 1.
double bare_freeze(const cgroup& cg, bool freeze) {
  int in = inotify_init1(IN_CLOEXEC);
  inotify_add_watch(in, cg.events_path().c_str(), IN_MODIFY);
  auto t0 = clock_type::now();
  (void)(freeze ? cg.freeze() : cg.thaw());
  while (true) {
    auto ev = cg.events();
    if (ev && ev->frozen == freeze)
      break;
    pollfd p{in, POLLIN, 0};
    poll(&p, 1, 1000);
    char buf[4096];
    [[maybe_unused]] auto n = read(in, buf, sizeof buf);
  }
  auto took = ms_since(t0);
  close(in);
  return took;
}

} // namespace

int main(int argc, char** argv) {
  int cycles = argc > 1 ? std::stoi(argv[1]) : 200;
  bool signals = argc > 2 && std::string{argv[2]} == "signals";
  test_daemon d{signals ? std::vector<std::string>{"--cgroup", "off"}
                        : std::vector<std::string>{}};
  auto r
      = d.submit("experiments:\n  - name: tree64\n    command: [/bin/sh, "
                 "-c, \"for i in $(seq 63); do sleep 3600 & done; wait\"]\n");
  if (r.status != 201) {
    std::cerr << "submit failed: " << r.raw << "\n";
    return 1;
  }
  std::string id = r.body["runs"][0]["id"];
  if (!wait_until([&] {
        return d.call("GET", "/api/v1/runs/" + id).body["processes"].size()
               == 64;
      })) {
    std::cerr << "the tree did not reach 64 processes\n";
    return 1;
  }
  auto run = d.call("GET", "/api/v1/runs/" + id).body;
  std::string mechanism = run["pause_mechanism"];

  std::vector<double> api_pause, api_resume, bare_pause, bare_resume;
  for (int i = 0; i < cycles; ++i) {
    auto t0 = clock_type::now();
    auto p = d.call("POST", "/api/v1/runs/" + id + "/pause");
    api_pause.push_back(ms_since(t0));
    t0 = clock_type::now();
    auto q = d.call("POST", "/api/v1/runs/" + id + "/resume");
    api_resume.push_back(ms_since(t0));
    if (p.status != 200 || q.status != 200) {
      std::cerr << "pause/resume failed: " << p.raw << q.raw << "\n";
      return 1;
    }
  }
  if (mechanism == "cgroup-v2") {
    auto pid = run["pid"].get<int>();
    auto mount = find_cgroup2_mount();
    auto rel = proc_cgroup2_path(pid);
    cgroup cg{*mount + *rel};
    for (int i = 0; i < cycles; ++i) {
      bare_pause.push_back(bare_freeze(cg, true));
      bare_resume.push_back(bare_freeze(cg, false));
    }
  }
  d.call("POST", "/api/v1/runs/" + id + "/stop",
         R"({"force": true, "wait": true})");

  auto ap = summarize(api_pause), ar = summarize(api_resume);
  std::printf("pause latency, 64-process tree, %d cycles, mechanism %s\n",
              cycles, mechanism.c_str());
  std::printf("| measure | median ms | p99 ms |\n|---|---|---|\n");
  std::printf("| API pause (HTTP round trip) | %.3f | %.3f |\n", ap.median_ms,
              ap.p99_ms);
  std::printf("| API resume (HTTP round trip) | %.3f | %.3f |\n", ar.median_ms,
              ar.p99_ms);
  if (!bare_pause.empty()) {
    auto bp = summarize(bare_pause), br = summarize(bare_resume);
    std::printf("| bare cgroup freeze | %.3f | %.3f |\n", bp.median_ms,
                bp.p99_ms);
    std::printf("| bare cgroup thaw | %.3f | %.3f |\n", br.median_ms,
                br.p99_ms);
    std::printf("ratio API pause / bare freeze (median): %.2f\n",
                ap.median_ms / bp.median_ms);
  }
  return 0;
}
