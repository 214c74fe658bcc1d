#include "services/log_index.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <thread>

namespace corral {

namespace {

/// A file whose name is taken this many generations in a row ends the
/// search: one name may be missing for a moment while the shim rotates.
constexpr int probe_misses = 2;
/// Views seen mid-rotation are retried this often before being used as
/// they are (a file deleted by hand leaves a gap that never closes).
constexpr int snapshot_tries = 8;

std::int64_t mtime_ms(const struct stat& st) {
  return static_cast<std::int64_t>(st.st_mtim.tv_sec) * 1000
         + st.st_mtim.tv_nsec / 1000000;
}

/// What one open attempt saw, and whether it is a view the shim could
/// have left between two rotations.
struct snapshot {
  std::vector<log_segment> segments; // newest first while building
  bool consistent = true;
};

/// The first record of an open index file, if it has one.
std::optional<log_index_record> first_record(int fd) {
  char buf[log_index_record_size];
  auto n = ::pread(fd, buf, sizeof buf, 0);
  if (n != static_cast<ssize_t>(sizeof buf))
    return std::nullopt;
  return parse_log_index_record({buf, sizeof buf});
}

/// Opens generation g of a stream; nullopt when it is not there.
result<std::optional<log_segment>>
open_segment(const std::string& dir, log_stream s, int g,
             std::optional<std::uint64_t>& base) {
  auto path = dir + "/" + log_file_name(s, g);
  unique_fd data{::open(path.c_str(), O_RDONLY | O_CLOEXEC)};
  if (!data) {
    if (errno == ENOENT || errno == ENOTDIR)
      return std::optional<log_segment>{};
    return make_error(ec::internal,
                      "cannot open " + path + ": " + std::strerror(errno));
  }
  struct stat st {};
  if (::fstat(data.get(), &st) != 0)
    return make_error(ec::internal,
                      "cannot stat " + path + ": " + std::strerror(errno));
  log_segment seg;
  seg.generation = g;
  seg.data = std::move(data);
  seg.size = static_cast<std::uint64_t>(st.st_size);
  seg.dev = st.st_dev;
  seg.ino = st.st_ino;
  seg.mtime_ms = mtime_ms(st);
  // Opened after the data: the shim writes a record before its batch, so
  // every byte we saw has its record in there.
  seg.index.reset(
      ::open((dir + "/" + log_index_name(s, g)).c_str(), O_RDONLY | O_CLOEXEC));
  base.reset();
  if (seg.index)
    if (auto r = first_record(seg.index.get()))
      base = r->offset;
  return std::optional<log_segment>{std::move(seg)};
}

/// Bases from the index files; files without one are placed next to
/// their neighbours (with no index at all, the oldest file starts at 0).
void derive_bases(std::vector<log_segment>& segs,
                  const std::vector<std::optional<std::uint64_t>>& known) {
  auto first = std::find_if(known.begin(), known.end(),
                            [](auto& b) { return b.has_value(); });
  auto k = static_cast<std::size_t>(first - known.begin());
  if (k == known.size())
    k = 0;
  else
    segs[k].base = **first;
  for (std::size_t i = k; i-- > 0;)
    segs[i].base = segs[i + 1].base - std::min(segs[i + 1].base, segs[i].size);
  for (std::size_t i = k + 1; i < segs.size(); ++i)
    segs[i].base = known[i] ? *known[i] : segs[i - 1].end();
}

/// Fixes the order where the view is unusable as it is: files opened
/// twice (renamed between two opens) and files out of order.
void tidy(std::vector<log_segment>& segs) {
  std::stable_sort(segs.begin(), segs.end(),
                   [](auto& a, auto& b) { return a.base < b.base; });
  auto dup = [](auto& a, auto& b) { return a.dev == b.dev && a.ino == b.ino; };
  for (std::size_t i = 0; i < segs.size(); ++i)
    for (std::size_t j = i + 1; j < segs.size();)
      if (dup(segs[i], segs[j]))
        segs.erase(segs.begin() + static_cast<std::ptrdiff_t>(j));
      else
        ++j;
}

bool same_file(const struct stat& a, const struct stat& b) {
  return a.st_dev == b.st_dev && a.st_ino == b.st_ino;
}

result<snapshot> take_snapshot(const std::string& dir, log_stream s) {
  snapshot snap;
  auto current = dir + "/" + log_file_name(s, 0);
  struct stat before {
  }, after{};
  bool had_current = ::stat(current.c_str(), &before) == 0;

  std::vector<std::optional<std::uint64_t>> known;
  int misses = 0;
  for (int g = 0; misses < probe_misses && g < 100000; ++g) {
    std::optional<std::uint64_t> base;
    auto seg = open_segment(dir, s, g, base);
    if (!seg)
      return seg.error();
    if (!*seg) {
      ++misses;
      continue;
    }
    // A rotated name missing between two present ones: mid-rotation.
    if (misses > 0 && g > 1)
      snap.consistent = false;
    misses = 0;
    snap.segments.push_back(std::move(**seg));
    known.push_back(base);
  }
  bool has_current = ::stat(current.c_str(), &after) == 0;
  if (had_current != has_current || (has_current && !same_file(before, after)))
    snap.consistent = false;

  std::reverse(snap.segments.begin(), snap.segments.end());
  std::reverse(known.begin(), known.end());
  derive_bases(snap.segments, known);
  for (std::size_t i = 0; i + 1 < snap.segments.size(); ++i) {
    auto& a = snap.segments[i];
    auto& b = snap.segments[i + 1];
    if (a.end() != b.base || (a.dev == b.dev && a.ino == b.ino))
      snap.consistent = false;
  }
  return snap;
}

} // namespace

std::string format_log_index_record(log_index_record r) {
  char buf[log_index_record_size + 1];
  auto ms = std::clamp<std::int64_t>(r.unix_ms, 0, 9999999999999);
  std::snprintf(buf, sizeof buf, "%020" PRIu64 " %013" PRId64 "\n", r.offset,
                ms);
  return {buf, log_index_record_size};
}

std::optional<log_index_record> parse_log_index_record(std::string_view text) {
  if (text.size() != log_index_record_size || text[20] != ' '
      || text.back() != '\n')
    return std::nullopt;
  log_index_record r;
  auto number = [](std::string_view digits, auto& out) {
    auto [ptr, err]
        = std::from_chars(digits.data(), digits.data() + digits.size(), out);
    return err == std::errc{} && ptr == digits.data() + digits.size();
  };
  if (!number(text.substr(0, 20), r.offset)
      || !number(text.substr(21, 13), r.unix_ms) || r.unix_ms < 0)
    return std::nullopt;
  return r;
}

std::string log_file_name(log_stream s, int generation) {
  auto name = std::string{to_string(s)} + ".log";
  return generation == 0 ? name : name + "." + std::to_string(generation);
}

std::string log_index_name(log_stream s, int generation) {
  return log_file_name(s, generation) + ".idx";
}

result<std::vector<log_segment>> open_log_segments(const std::string& run_dir,
                                                   log_stream s) {
  for (int attempt = 1;; ++attempt) {
    auto snap = take_snapshot(run_dir, s);
    if (!snap)
      return snap.error();
    if (snap->consistent)
      return std::move(snap->segments);
    if (attempt == snapshot_tries) {
      tidy(snap->segments);
      return std::move(snap->segments);
    }
    // A rotation is a handful of renames: it is over in a moment.
    std::this_thread::sleep_for(std::chrono::milliseconds{attempt});
  }
}

result<std::uint64_t> current_log_base(const std::string& run_dir,
                                       log_stream s) {
  auto segs = open_log_segments(run_dir, s);
  if (!segs)
    return segs.error();
  if (segs->empty())
    return std::uint64_t{0};
  auto& newest = segs->back();
  return newest.generation == 0 ? newest.base : newest.end();
}

} // namespace corral
