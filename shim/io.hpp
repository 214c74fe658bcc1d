#pragma once
/// Small I/O helpers the shim's parts share.

#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <ctime>
#include <string_view>

namespace corral::shim {

/// Writes all of data, across partial writes and EINTR; false on an error
/// (errno says which).
inline bool write_all(int fd, std::string_view data) {
  while (!data.empty()) {
    auto n = ::write(fd, data.data(), data.size());
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0)
      return false;
    data.remove_prefix(static_cast<std::size_t>(n));
  }
  return true;
}

/// Wall-clock time in ms since the Unix epoch.
inline std::int64_t unix_time_ms() {
  timespec ts{};
  ::clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<std::int64_t>(ts.tv_sec) * 1000 + ts.tv_nsec / 1000000;
}

} // namespace corral::shim
