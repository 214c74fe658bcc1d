#include "shim/rotating_log.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "shim/io.hpp"

namespace corral::shim {

result<rotating_log> rotating_log::open(std::string run_dir, log_stream stream,
                                        limits lim) {
  rotating_log log{std::move(run_dir), stream, lim};
  if (auto opened = log.open_current(0); !opened)
    return opened.error();
  struct stat st {};
  if (::fstat(log.file_.get(), &st) != 0)
    return make_error(ec::internal, "cannot stat " + log.path(0) + ": "
                                        + std::strerror(errno));
  log.size_ = static_cast<std::uint64_t>(st.st_size);
  auto base = current_log_base(log.dir_, stream);
  if (!base)
    return base.error();
  log.base_ = *base;
  return log;
}

std::string rotating_log::path(int generation) const {
  return dir_ + "/" + log_file_name(stream_, generation);
}

std::string rotating_log::index_path(int generation) const {
  return dir_ + "/" + log_index_name(stream_, generation);
}

status rotating_log::open_current(int extra_flags) {
  int flags = O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | extra_flags;
  unique_fd file{::open(path(0).c_str(), flags, 0644)};
  if (!file)
    return make_error(ec::internal,
                      "cannot open " + path(0) + ": " + std::strerror(errno));
  unique_fd index{::open(index_path(0).c_str(), flags, 0644)};
  if (!index)
    return make_error(ec::internal, "cannot open " + index_path(0) + ": "
                                        + std::strerror(errno));
  file_ = std::move(file);
  index_ = std::move(index);
  last_ms_ = -1;
  return ok;
}

void rotating_log::write(std::string_view batch, std::int64_t read_ms,
                         logger& log) {
  while (!batch.empty()) {
    auto room = limits_.max_bytes - std::min(size_, limits_.max_bytes);
    if (batch.size() <= room || rotation_failed_) {
      append(batch, read_ms, log);
      return;
    }
    auto head = bytes_before_rotation(batch.substr(0, room));
    append(batch.substr(0, head), read_ms, log);
    batch.remove_prefix(head);
    if (!rotate(log))
      rotation_failed_ = true; // keep relaying into the big file
  }
}

/// Of the bytes that still fit, those up to the last newline: a line is
/// not split across files where the batch allows it. A line longer than
/// a whole file is split.
std::size_t rotating_log::bytes_before_rotation(std::string_view fits) const {
  auto nl = fits.rfind('\n');
  if (nl != std::string_view::npos)
    return nl + 1;
  return size_ == 0 ? fits.size() : 0;
}

void rotating_log::append(std::string_view piece, std::int64_t read_ms,
                          logger& log) {
  if (piece.empty())
    return;
  // The record goes first: a reader that sees a byte finds its record.
  if (read_ms != last_ms_) {
    auto record = format_log_index_record({end(), read_ms});
    if (write_all(index_.get(), record)) {
      last_ms_ = read_ms;
    } else if (!index_failed_) {
      index_failed_ = true;
      log.warn("cannot write %s: %s; times of its lines will be off",
               log_index_name(stream_, 0).c_str(), std::strerror(errno));
    }
  }
  if (write_all(file_.get(), piece)) {
    size_ += piece.size();
    return;
  }
  if (!data_failed_) {
    data_failed_ = true;
    log.warn("cannot write %s: %s; its output is being lost",
             log_file_name(stream_, 0).c_str(), std::strerror(errno));
  }
  // Offsets count what is in the files: take what a partial write left.
  struct stat st {};
  if (::fstat(file_.get(), &st) == 0)
    size_ = static_cast<std::uint64_t>(st.st_size);
}

/// current → .1 → .2 … → .keep, dropping what was .keep. Stops at the
/// first rename that fails, so no file is renamed over one still kept.
bool rotating_log::rotate(logger& log) {
  auto fail = [&](const std::string& what) {
    log.warn("cannot rotate %s (%s: %s); it grows past %llu bytes from now",
             log_file_name(stream_, 0).c_str(), what.c_str(),
             std::strerror(errno),
             static_cast<unsigned long long>(limits_.max_bytes));
    return false;
  };
  // From .keep up: older files too, left by a larger keep of an earlier
  // attempt.
  for (int g = limits_.keep, misses = 0; misses < 2; ++g) {
    bool missing = ::unlink(path(g).c_str()) != 0;
    (void)::unlink(index_path(g).c_str());
    misses = missing ? misses + 1 : 0;
  }
  auto move = [&](int from, int to) {
    for (auto [a, b] : {std::pair{path(from), path(to)},
                        std::pair{index_path(from), index_path(to)}})
      if (::rename(a.c_str(), b.c_str()) != 0 && errno != ENOENT)
        return fail("rename " + a);
    return true;
  };
  for (int g = limits_.keep - 1; g >= 0; --g)
    if (!move(g, g + 1))
      return false;
  auto end_before = end();
  if (auto opened = open_current(O_TRUNC); !opened) {
    // The old descriptors stay: output goes on into what is now .1.
    log.warn("%s; output goes on into %s", opened.error().message.c_str(),
             log_file_name(stream_, 1).c_str());
    return false;
  }
  base_ = end_before;
  size_ = 0;
  return true;
}

} // namespace corral::shim
