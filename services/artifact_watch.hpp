#pragma once
/// Notices the checkpoints and videos a run writes: which directories to
/// watch with inotify, and what a rescan found new. Plain C++ for the run
/// actor.

#include "services/artifacts.hpp"
#include "services/run_spec.hpp"

#include <string>
#include <vector>

namespace corral {

/// A file a rescan found new, or rewritten (other size or mtime).
struct artifact_change {
  artifact file;
  bool is_new = true;
};

class artifact_watch {
public:
  artifact_watch(std::string cwd, artifacts_spec spec);

  /// False when the experiment declares no pattern.
  bool enabled() const;
  /// The existing directories where a pattern's files would appear: each
  /// pattern's directory part up to its first wildcard, or its nearest
  /// existing parent (to notice the directory being created). Deeper
  /// directories (`**`) are found by periodic rescans.
  std::vector<std::string> directories() const;
  /// Scans again; returns the files that are new or changed since the
  /// previous scan. The first scan only sets the baseline: files from
  /// before the run started are not news.
  std::vector<artifact_change> rescan();
  const std::vector<artifact>& current() const { return current_; }
  /// Takes `known` (what a previous daemon saw, from the store) as the
  /// baseline: the next rescan reports what changed since, such as a
  /// checkpoint written while no daemon ran.
  void seed(std::vector<artifact> known) {
    current_ = std::move(known);
    scanned_ = true;
  }

private:
  std::string cwd_;
  artifacts_spec spec_;
  std::vector<artifact> current_;
  bool scanned_ = false;
};

} // namespace corral
