#pragma once
/// One output stream of a run as the shim writes it: the current log file
/// and its index, rotated by size (docs/design.md, "Log files"). The shim
/// owns the only write descriptors, so a rotation loses and duplicates
/// nothing.

#include "services/log_index.hpp"
#include "services/result.hpp"
#include "services/unique_fd.hpp"
#include "shim/log.hpp"

#include <cstdint>
#include <string>
#include <string_view>

namespace corral::shim {

class rotating_log {
public:
  struct limits {
    /// The current file is rotated before it would grow past this.
    std::uint64_t max_bytes = default_log_max_bytes;
    /// Rotated files kept (at least 1).
    int keep = default_log_keep;
  };

  /// Opens (appends to) the stream's current file in `run_dir`. A file
  /// left by an earlier attempt of the run is continued: its global
  /// offsets go on where the files on disk end.
  static result<rotating_log> open(std::string run_dir, log_stream stream,
                                   limits lim);

  /// Appends one batch the shim read at `read_ms`, rotating where the
  /// current file would grow too large. Problems (a full disk) are told
  /// to `log` once each; the batch, or what cannot be written of it, is
  /// dropped, and relaying goes on.
  void write(std::string_view batch, std::int64_t read_ms, logger& log);

  /// Global offset just past the last byte written.
  std::uint64_t end() const { return base_ + size_; }

private:
  rotating_log(std::string run_dir, log_stream stream, limits lim)
      : dir_(std::move(run_dir)), stream_(stream), limits_(lim) {}

  status open_current(int extra_flags);
  std::size_t bytes_before_rotation(std::string_view batch) const;
  void append(std::string_view piece, std::int64_t read_ms, logger& log);
  bool rotate(logger& log);
  std::string path(int generation) const;
  std::string index_path(int generation) const;

  std::string dir_;
  log_stream stream_;
  limits limits_;
  unique_fd file_;
  unique_fd index_;
  std::uint64_t base_ = 0; // global offset of the current file's first byte
  std::uint64_t size_ = 0; // bytes in the current file
  /// Time of the last index record in the current file; a batch read in
  /// the same millisecond needs none, which bounds the index of a fast
  /// writer to 1000 records a second.
  std::int64_t last_ms_ = -1;
  bool data_failed_ = false;
  bool index_failed_ = false;
  bool rotation_failed_ = false;
};

} // namespace corral::shim
