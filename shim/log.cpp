#include "shim/log.hpp"

#include <fcntl.h>

#include <algorithm>
#include <cstdarg>
#include <cstdio>
#include <ctime>

#include "shim/io.hpp"

namespace corral::shim {

bool logger::open(const std::string& path) {
  fd_.reset(
      ::open(path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644));
  return static_cast<bool>(fd_);
}

void logger::info(const char* fmt, ...) {
  va_list args;
  va_start(args, fmt);
  line("INFO", fmt, args);
  va_end(args);
}

void logger::warn(const char* fmt, ...) {
  va_list args;
  va_start(args, fmt);
  line("WARN", fmt, args);
  va_end(args);
}

void logger::line(const char* level, const char* fmt, va_list args) {
  if (!fd_)
    return;
  auto ms = unix_time_ms();
  time_t secs = static_cast<time_t>(ms / 1000);
  tm utc{};
  ::gmtime_r(&secs, &utc);
  char buf[2048];
  auto n = std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &utc);
  n += static_cast<std::size_t>(
      std::snprintf(buf + n, sizeof buf - n, ".%03dZ %s shim ",
                    static_cast<int>(ms % 1000), level));
  auto body = std::vsnprintf(buf + n, sizeof buf - n - 1, fmt, args);
  // A long line is cut, not dropped; the newline always ends it.
  n = body < 0 ? n
               : std::min(sizeof buf - 2, n + static_cast<std::size_t>(body));
  buf[n++] = '\n';
  // One write per line: O_APPEND keeps lines whole even if two shims
  // ever shared the file.
  (void)write_all(fd_.get(), {buf, n});
}

} // namespace corral::shim
