#pragma once
/// Progress metrics parsed from what a trainer prints (DESIGN.md,
/// `progress`): one parser per format, a bounded store of the values, and
/// the fraction/ETA estimate that ignores time spent paused.

#include "services/result.hpp"
#include "services/run_spec.hpp"

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

namespace corral {

/// Metric name → value, as one logging step of the trainer gave them.
using metric_record = std::map<std::string, double>;

/// Turns output lines into records. Stateful: an sb3 table spans lines.
class metrics_parser {
public:
  virtual ~metrics_parser() = default;
  /// Feeds one line (no line end; may hold \r redraws, ANSI colours,
  /// anything). Returns the records it completed, usually none or one.
  /// Lines that are not metrics are ignored, never an error.
  virtual std::vector<metric_record> feed(std::string_view line) = 0;
  /// True when no record is pending across lines (no sb3 table is open):
  /// a fresh parser fed the lines after this point gives the same records
  /// as this one, so a restarted daemon may resume reading here.
  virtual bool idle() const { return true; }
};

/// The parser for a line-based `progress.format` (sb3, jsonl, kv, regex);
/// nullptr for none and for csv (which reads a file: csv_follower).
/// Errors name the field (a regex that does not compile).
result<std::unique_ptr<metrics_parser>>
make_metrics_parser(const progress_spec& spec);

/// Follows a CSV file with a header row (SB3's progress.csv) as it grows:
/// each new complete row is a record; empty cells are skipped. A file that
/// does not exist yet, or was replaced/truncated, is handled.
class csv_follower {
public:
  explicit csv_follower(std::string path);
  ~csv_follower();
  csv_follower(const csv_follower&) = delete;
  csv_follower& operator=(const csv_follower&) = delete;
  /// Records of the rows added since the last poll.
  std::vector<metric_record> poll();

  /// Where the follower stands (file identity, byte offset after the last
  /// row consumed, header and row counts), for a daemon that restarts.
  nlohmann::json save() const;
  /// Continues from what save() gave, before the first poll: rows already
  /// consumed are not read again. Errors say which field is malformed.
  status restore(const nlohmann::json& saved);

private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

/// Fraction done and time left.
struct progress_estimate {
  std::optional<double> fraction; // 0..1
  std::optional<double> eta_s;    // seconds of running time left
};

/// Latest value per metric and a bounded, downsampled series per metric.
/// Time is given twice: wall time for the series, and the run's active
/// seconds (running time without pauses) for the rate, so a pause neither
/// slows the rate nor moves the ETA.
class metrics_store {
public:
  /// `counter` and `total` come from progress_spec; `max_points` bounds
  /// each series (older points are thinned, the newest always kept).
  metrics_store(std::string counter, std::optional<double> total,
                std::size_t max_points = 1000);

  void add(const metric_record& record, std::chrono::system_clock::time_point t,
           double active_s);

  /// {"time/fps": 1207, ...}; non-finite values are null.
  nlohmann::json latest_json() const;
  /// {"time/fps": [[t, step, value], ...]}: t in Unix seconds with ms,
  /// step the counter's value at that record (null without counter).
  nlohmann::json series_json() const;

  /// From the counter's latest value and its rate over recent samples
  /// (in active seconds). `active_now` is the run's active seconds now:
  /// the ETA counts down while running and stands still while paused.
  /// Unknown parts (no counter, no total, no rate yet) are nullopt.
  progress_estimate estimate(double active_now) const;

  bool empty() const;

  /// Everything the store holds, for a daemon that restarts: the latest
  /// values, each series with its thinning state, the counter and the
  /// samples of the rate. {"v": 1, ...}; numbers are exact (non-finite
  /// ones are the strings "nan", "inf" and "-inf").
  nlohmann::json save() const;
  /// A store as save() left it, which goes on as if it had never stopped.
  /// `counter`, `total` and `max_points` are the constructor's (they come
  /// from the spec, not the saved state; series longer than `max_points`
  /// are thinned). An unknown version or a malformed state is an error
  /// that names what is wrong.
  static result<std::unique_ptr<metrics_store>>
  restore(const nlohmann::json& saved, std::string counter,
          std::optional<double> total, std::size_t max_points = 1000);

private:
  struct impl;
  std::shared_ptr<impl> impl_;
};

} // namespace corral
