#pragma once
/// What a run prints, followed for the run actor: the log tailer, the
/// progress parsers fed by it, and the answers to log queries. Plain C++,
/// so the actor stays a thin layer of messages.

#include "services/api_backend.hpp"
#include "services/log_files.hpp"
#include "services/metrics.hpp"
#include "services/result.hpp"
#include "services/run_spec.hpp"

#include <cstdint>
#include <memory>
#include <string>

#include <nlohmann/json.hpp>

namespace corral {

class run_output {
  struct private_tag {};

public:
  /// Use make(); public only for make_unique.
  explicit run_output(private_tag) {}

  /// `run_dir` holds the shim's log files; `cwd` resolves a relative
  /// progress.file. Fails when the progress spec cannot be parsed (a regex
  /// that does not compile). With `resume` (what save() gave a daemon
  /// that has since been restarted), the metrics are restored and
  /// following continues where save() says; a malformed or unknown state
  /// is an error (the caller may then start afresh without it, reading
  /// the logs again from their beginning).
  static result<std::unique_ptr<run_output>>
  make(std::string run_dir, const progress_spec& progress,
       const std::string& cwd, const nlohmann::json* resume = nullptr);

  /// Starts following the log files from their beginning (the run's first
  /// attempt has just created them), or from the saved cursor when
  /// resuming; later calls keep the position.
  void follow();
  /// Reads the new complete lines (all of them with `final`: the run has
  /// ended) and feeds them to the progress parsers, at most about `budget`
  /// of them. `active_s` is the run's running time so far. Returns how many
  /// lines were read: `budget` or more means there may be more.
  std::size_t poll(double active_s, bool final = false,
                   std::size_t budget = SIZE_MAX);
  /// Reads new rows of a CSV progress file, if the format is csv.
  void poll_csv(double active_s);

  /// Answers a log query from memory when it can, from the files when it
  /// must. `final`: the run has ended for good.
  result<log_answer> query(const log_query& q, bool final) const;
  /// True when lines were read beyond `since` on a stream `q` selects, so
  /// a waiting follower has something to get (always for a tail query;
  /// never before following has started).
  bool has_news(const log_query& q) const;

  /// {"latest": {...}, "series": {...}}.
  nlohmann::json metrics_json() const;
  /// {"time/fps": 1207, ...}.
  nlohmann::json latest_metrics() const;
  progress_estimate estimate(double active_now) const;

  /// What a restarted daemon needs to continue exactly, for make():
  /// {"v": 1, "cursor": "<out>-<err>", "metrics": {...}, "csv": {...}}.
  /// The cursor is, per stream, the end of the last line after which the
  /// stream's parser held nothing pending (no sb3 table open). Lines of a
  /// table still open are therefore read again on resume, and their
  /// record is made once, from the whole table. "csv" only with a csv
  /// progress file.
  nlohmann::json save() const;

private:
  void feed(const log_line& l, double active_s);

  std::string run_dir_;
  std::unique_ptr<log_tailer> tailer_;
  std::unique_ptr<metrics_parser> out_parser_; // one per stream: a table
  std::unique_ptr<metrics_parser> err_parser_; // must not interleave
  std::unique_ptr<csv_follower> csv_;
  std::unique_ptr<metrics_store> store_;
  /// Where follow() starts the tailer: zero, or a resumed cursor.
  log_cursor start_;
  /// Per stream, the end of the last line fed after which its parser was
  /// idle: where a resumed reading starts (save()).
  log_cursor settled_;
  /// The tailer started at the first byte, so while it has dropped nothing
  /// its memory holds every line (not so when resumed past the start).
  bool memory_complete_ = true;
  /// Lines kept in memory for tails, the CLI's default; longer tails come
  /// from the files. At ~130 bytes a line that is 13 KiB a run, 13 MiB
  /// for a thousand runs.
  std::size_t keep_ = 100;
};

} // namespace corral
