#pragma once
/// The on-disk layout of a run's logs (docs/design.md, "Log files"): file
/// names, index records and the set of files of one stream. Shared by the
/// shim, which writes them, and services/log_files.cpp, which reads them.

#include "services/log_files.hpp"
#include "services/result.hpp"
#include "services/unique_fd.hpp"

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace corral {

/// Size at which the shim rotates a stream's current file: large enough
/// that rotation is rare, small enough that a file opens in an editor.
inline constexpr std::uint64_t default_log_max_bytes = 100 * 1024 * 1024;
/// Rotated files kept per stream: with the current one, 400 MiB of a
/// chatty trainer's history per stream by default.
inline constexpr int default_log_keep = 3;
/// A rotation renames every kept file: more than this many is a typo.
inline constexpr int max_log_keep = 1000;

/// One record of an index file: a write batch's first byte, as a global
/// offset of its stream, and when the shim read the batch (unix ms).
/// The batch lasts until the next record's offset.
struct log_index_record {
  std::uint64_t offset = 0;
  std::int64_t unix_ms = 0;
  bool operator==(const log_index_record&) const = default;
};

/// Records are text of fixed width ("%020u %013d\n"): readable with cat,
/// and a reader finds record k at byte 35 k, so it can binary-search.
inline constexpr std::size_t log_index_record_size = 35;

std::string format_log_index_record(log_index_record r);
/// nullopt unless `text` is exactly one well-formed record.
std::optional<log_index_record> parse_log_index_record(std::string_view text);

/// "stdout.log" for generation 0 (the current file), "stdout.log.2" for 2.
std::string log_file_name(log_stream s, int generation);
/// The index of that file: log_file_name(...) + ".idx".
std::string log_index_name(log_stream s, int generation);

/// One file of a stream, opened for reading.
struct log_segment {
  int generation = 0; // 0: current, 1: newest rotated, ...
  unique_fd data;
  unique_fd index; // not open when the file has no index
  /// Global offset of the file's first byte.
  std::uint64_t base = 0;
  /// Bytes in the file when it was opened.
  std::uint64_t size = 0;
  std::uint64_t dev = 0;
  std::uint64_t ino = 0;
  /// The file's mtime, for bytes no index record covers.
  std::int64_t mtime_ms = 0;

  std::uint64_t end() const { return base + size; }
};

/// Opens every file of a stream that is on disk, oldest first, bases
/// derived and checked to follow each other. The files are opened one by
/// one while the shim may rotate them; an inconsistent view is retried.
/// A missing directory or stream is an empty list.
result<std::vector<log_segment>> open_log_segments(const std::string& run_dir,
                                                   log_stream s);

/// The global offset at which the current file of `s` begins (where the
/// newest rotated file ends when the current one is empty or missing): a
/// new shim for the same run continues there.
result<std::uint64_t> current_log_base(const std::string& run_dir,
                                       log_stream s);

} // namespace corral
