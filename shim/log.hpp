#pragma once
/// The shim's own diagnostics: `<run-dir>/shim.log`, appended, one
/// timestamped line each. The shim has no terminal (its stdio is
/// /dev/null), so this file is the only place its story is told.

#include "services/unique_fd.hpp"

#include <cstdarg>
#include <string>

namespace corral::shim {

class logger {
public:
  /// Opens (appends to) path; until then, and if that fails, lines go
  /// nowhere.
  bool open(const std::string& path);

  /// printf-style; the line gets a UTC timestamp and the level in front.
  [[gnu::format(printf, 2, 3)]] void info(const char* fmt, ...);
  [[gnu::format(printf, 2, 3)]] void warn(const char* fmt, ...);

private:
  void line(const char* level, const char* fmt, va_list args);

  unique_fd fd_;
};

} // namespace corral::shim
