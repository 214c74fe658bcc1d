// What the benchmarks run as a trainer, so the numbers measure Corral and
// not Python.
//
//   bench_writer lines SECONDS [BYTES=100] [LINGER=0]
//     Writes BYTES-long `step=<n> loss=<x> ...` lines to stdout flat out,
//     one write(2) per line (the unbuffered writer of the issue), for
//     SECONDS; then one line `done=<lines>` and, on stderr, `start_ns=...
//     end_ns=... lines=...` (CLOCK_REALTIME), so a reader knows what to
//     expect and when it was written. Then it sleeps LINGER seconds (so
//     whoever captures its output can still be measured).
//   bench_writer tables
//     Prints a Stable-Baselines3-style table once a second, forever.

#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

namespace {

std::int64_t now_ns(clockid_t clock) {
  timespec ts{};
  ::clock_gettime(clock, &ts);
  return static_cast<std::int64_t>(ts.tv_sec) * 1000000000 + ts.tv_nsec;
}

bool write_all(int fd, const char* p, std::size_t n) {
  while (n > 0) {
    auto w = ::write(fd, p, n);
    if (w < 0 && errno == EINTR)
      continue;
    if (w <= 0)
      return false;
    p += w;
    n -= static_cast<std::size_t>(w);
  }
  return true;
}

int lines(double seconds, std::size_t bytes, double linger) {
  if (bytes < 40 || bytes > 4096) {
    std::fprintf(stderr, "line length must be 40..4096 bytes\n");
    return 2;
  }
  std::string line(bytes, 'x');
  auto start_wall = now_ns(CLOCK_REALTIME);
  auto start = now_ns(CLOCK_MONOTONIC);
  auto limit = start + static_cast<std::int64_t>(seconds * 1e9);
  std::uint64_t n = 0;
  for (;; ++n) {
    // The clock every 1024 lines: a read per line would cost as much as
    // the write.
    if ((n & 1023) == 0 && now_ns(CLOCK_MONOTONIC) >= limit)
      break;
    int head = std::snprintf(line.data(), bytes, "step=%llu loss=%.4f ",
                             static_cast<unsigned long long>(n),
                             1.0 / static_cast<double>(n % 1000 + 1));
    line[static_cast<std::size_t>(head)] = 'x'; // snprintf's NUL
    line[bytes - 1] = '\n';
    if (!write_all(1, line.data(), bytes))
      return 1;
  }
  auto end_wall = now_ns(CLOCK_REALTIME);
  auto done = "done=" + std::to_string(n) + "\n";
  if (!write_all(1, done.data(), done.size()))
    return 1;
  std::fprintf(stderr, "start_ns=%lld end_ns=%lld lines=%llu\n",
               static_cast<long long>(start_wall),
               static_cast<long long>(end_wall),
               static_cast<unsigned long long>(n));
  std::fflush(stderr);
  ::usleep(static_cast<useconds_t>(linger * 1e6));
  return 0;
}

int tables() {
  for (long it = 1;; ++it) {
    std::printf("-----------------------------------------\n"
                "| rollout/                |             |\n"
                "|    ep_len_mean          | %-11ld |\n"
                "|    ep_rew_mean          | %-11.1f |\n"
                "| time/                   |             |\n"
                "|    fps                  | 2048        |\n"
                "|    iterations           | %-11ld |\n"
                "|    total_timesteps      | %-11ld |\n"
                "| train/                  |             |\n"
                "|    loss                 | %-11.4f |\n"
                "-----------------------------------------\n",
                it % 500, static_cast<double>(it % 500), it, it * 2048,
                1.0 / static_cast<double>(it));
    std::fflush(stdout);
    ::sleep(1);
  }
}

} // namespace

int main(int argc, char** argv) {
  std::string mode = argc > 1 ? argv[1] : "";
  if (mode == "lines" && argc >= 3)
    return lines(std::atof(argv[2]),
                 argc > 3 ? static_cast<std::size_t>(std::atoi(argv[3])) : 100,
                 argc > 4 ? std::atof(argv[4]) : 0);
  if (mode == "tables")
    return tables();
  std::fprintf(stderr,
               "usage: bench_writer lines SECONDS [BYTES] [LINGER] | tables\n");
  return 2;
}
