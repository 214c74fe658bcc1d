#pragma once
/// Small I/O helpers the shim's parts share.

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <ctime>
#include <string>
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

/// Writes path atomically: path.tmp, fsync, rename. A reader (the daemon,
/// maybe on another machine of a shared file system) sees no file, the
/// old one or the whole new text, never a part. False on an error (errno
/// says which); the tmp file is removed then.
inline bool write_file_atomically(const std::string& path,
                                  std::string_view text) {
  auto tmp = path + ".tmp";
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0)
    return false;
  int err = 0;
  if (!write_all(fd, text) || ::fsync(fd) != 0)
    err = errno;
  if (::close(fd) != 0 && err == 0)
    err = errno;
  if (err == 0 && ::rename(tmp.c_str(), path.c_str()) == 0)
    return true;
  if (err == 0)
    err = errno;
  (void)::unlink(tmp.c_str());
  errno = err;
  return false;
}

/// Wall-clock time in ms since the Unix epoch.
inline std::int64_t unix_time_ms() {
  timespec ts{};
  ::clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<std::int64_t>(ts.tv_sec) * 1000 + ts.tv_nsec / 1000000;
}

} // namespace corral::shim
