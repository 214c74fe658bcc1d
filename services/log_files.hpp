#pragma once
/// A run's output as the shim leaves it in the run directory, read back for
/// the API and the daemon's tailer (DESIGN.md, "GET .../logs").
///
/// On disk, per stream (stdout, stderr): `<stream>.log` (current) and
/// `<stream>.log.1` … `.N` (rotated, .1 newest), each with an index file
/// (`<file>.idx`) the shim appends to with every write: the global offset
/// of the batch and when it was read (services/log_index.hpp; written
/// before the batch, so every byte on disk has its record). A stream's
/// global offset counts every byte it ever produced, across rotations and
/// restart attempts, so a cursor stays valid however the files turn over.

#include "services/result.hpp"

#include <chrono>
#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace corral {

enum class log_stream : std::uint8_t { out, err };

/// "stdout" or "stderr".
std::string_view to_string(log_stream s);

/// One line of output as the API shows it.
struct log_line {
  log_stream stream = log_stream::out;
  /// When the shim read the line's last byte.
  std::chrono::system_clock::time_point t{};
  /// Valid UTF-8 without the line end. A `\r` redraw (tqdm) keeps only the
  /// text after the last `\r`; a line longer than max_line_bytes is cut
  /// into pieces of that size; invalid UTF-8 becomes U+FFFD.
  std::string text;
  /// Global offset of the line's first byte in its stream (for a piece of
  /// a cut line, of the piece's first byte).
  std::uint64_t begin = 0;
  /// Global offset just past this line (its newline included) in its
  /// stream: the cursor that resumes after it.
  std::uint64_t end = 0;
};

/// Longest text of one log_line, in bytes of the file.
inline constexpr std::size_t max_line_bytes = 64 * 1024;

/// A position in both streams.
struct log_cursor {
  std::uint64_t out = 0;
  std::uint64_t err = 0;
  bool operator==(const log_cursor&) const = default;
};

/// "<out>-<err>", decimal; what the API hands out and takes back.
std::string format_cursor(log_cursor c);
std::optional<log_cursor> parse_cursor(std::string_view s);

/// Which streams a query reads.
struct log_selection {
  bool out = true;
  bool err = true;
};

/// Lines of a query, in the order they were read by the shim (the two
/// streams merged by time; stdout first on a tie), and the cursor after
/// the last of them (unchanged for a stream that gave no line).
struct log_page {
  std::vector<log_line> lines;
  log_cursor cursor;
  /// More complete lines are on disk beyond `cursor` (the limit was hit).
  bool more = false;
};

/// Lines after `since`, at most `limit`. A position older than the oldest
/// rotated file starts at the oldest line still on disk. With `final`
/// (the run has ended), an unterminated last line counts as complete.
/// A missing run directory or log file reads as empty.
result<log_page> read_logs(const std::string& run_dir, log_selection sel,
                           log_cursor since, std::size_t limit,
                           bool final = false);

/// The last `n` lines (rotated files included), and the cursor at the end.
result<log_page> tail_logs(const std::string& run_dir, log_selection sel,
                           std::size_t n, bool final = false);

/// Follows both streams of one run as the shim writes them, for the run
/// actor: poll() after each change notification returns the new complete
/// lines. Keeps descriptors open and notices rotation, so a poll costs a
/// read of what is new, not a rescan.
class log_tailer {
public:
  /// Starts at `from` (the end of the logs, for a daemon that restarts:
  /// tail_logs(...).cursor; zero for a new run). Keeps the last `keep`
  /// lines in memory.
  log_tailer(std::string run_dir, log_cursor from, std::size_t keep);
  ~log_tailer();
  log_tailer(const log_tailer&) = delete;
  log_tailer& operator=(const log_tailer&) = delete;

  /// New complete lines since the last poll (at most `limit`; call again
  /// while the result is full). With `final`, an unterminated last line
  /// counts as complete.
  std::vector<log_line> poll(std::size_t limit = 10000, bool final = false);

  /// Where the next poll starts.
  log_cursor cursor() const;

  /// The last lines seen, oldest first (at most `keep`).
  const std::deque<log_line>& recent() const;

private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

} // namespace corral
