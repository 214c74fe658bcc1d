// The log-ingestion reference: the least a tail can do. Follows FILE from
// its start with inotify, reads it in 64 KiB chunks and cuts lines (no
// parsing, no copies) until a line starting with `done=` arrives, then
// prints `lines=<n> bytes=<b> end_ns=<realtime> cpu_s=<user+sys>`.
//
//   bench_tail FILE

#include <fcntl.h>
#include <poll.h>
#include <sys/inotify.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

namespace {

double cpu_seconds() {
  rusage ru{};
  ::getrusage(RUSAGE_SELF, &ru);
  return static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec)
         + static_cast<double>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

} // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: bench_tail FILE\n");
    return 2;
  }
  int in = ::inotify_init1(IN_CLOEXEC);
  int fd = -1;
  while ((fd = ::open(argv[1], O_RDONLY | O_CLOEXEC)) < 0)
    ::usleep(1000); // the writer has not created it yet
  if (in < 0 || ::inotify_add_watch(in, argv[1], IN_MODIFY) < 0) {
    std::perror("inotify");
    return 1;
  }
  std::vector<char> buf(64 * 1024);
  std::uint64_t lines = 0, bytes = 0;
  bool collecting = true, done = false;
  std::string head; // the first bytes of the current line, up to 5
  while (!done) {
    auto n = ::read(fd, buf.data(), buf.size());
    if (n < 0) {
      std::perror("read");
      return 1;
    }
    if (n == 0) {
      pollfd p{in, POLLIN, 0};
      ::poll(&p, 1, 1000);
      char ev[4096];
      [[maybe_unused]] auto m = ::read(in, ev, sizeof ev);
      continue;
    }
    bytes += static_cast<std::uint64_t>(n);
    const char* p = buf.data();
    const char* end = p + n;
    while (p < end) {
      if (collecting) {
        auto take = std::min<std::size_t>(5 - head.size(),
                                          static_cast<std::size_t>(end - p));
        head.append(p, take);
        collecting = head.size() < 5;
        if (head == "done=")
          done = true;
      }
      auto* nl = static_cast<const char*>(
          std::memchr(p, '\n', static_cast<std::size_t>(end - p)));
      if (nl == nullptr)
        break;
      ++lines;
      head.clear();
      collecting = true;
      p = nl + 1;
    }
  }
  timespec ts{};
  ::clock_gettime(CLOCK_REALTIME, &ts);
  std::printf("lines=%llu bytes=%llu end_ns=%lld cpu_s=%.3f\n",
              static_cast<unsigned long long>(lines),
              static_cast<unsigned long long>(bytes),
              static_cast<long long>(ts.tv_sec) * 1000000000 + ts.tv_nsec,
              cpu_seconds());
  return 0;
}
