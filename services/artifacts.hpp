#pragma once
/// Checkpoints and videos a run writes (DESIGN.md, `artifacts`): found by
/// the experiment's glob patterns under the run's cwd, listed, and served
/// only when a requested name is one of them.
///
/// Patterns are matched segment by segment with fnmatch(3) as glob(3)
/// would (`*`, `?`, `[...]`, backslash escapes; a hidden file or directory
/// matches only a segment that starts with a dot), plus `**`: a whole
/// segment `**` spans any number of directories, including none
/// (`checkpoints/**/*.zip` finds `checkpoints/a.zip` and
/// `checkpoints/x/y/b.zip`), and a trailing `**` means every file below.
/// `**` inside a segment (`a**.pt`) is just `*`. A `**` walk skips hidden
/// directories, never enters a symlinked directory, and spans at most 8
/// directories; each pattern reads at most 10000 directory entries, files
/// beyond that are not found. "." and empty segments are ignored; a pattern
/// with a `..` segment matches nothing (write an absolute pattern for files
/// elsewhere).
///
/// Symlinks: a matched symlink to a regular file counts when its target is
/// inside the real cwd (a file named relative to cwd is always really
/// inside it); a link out is neither listed nor served. Files an absolute
/// pattern matches outside cwd are the user's explicit choice and count
/// wherever they lead.

#include "services/result.hpp"
#include "services/run_spec.hpp"

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

namespace corral {

struct artifact {
  std::string kind; // "checkpoint" or "video"
  std::string name; // path relative to the run's cwd, absolute outside it
  std::string path; // absolute, symlinks resolved
  std::uint64_t size = 0;
  std::chrono::system_clock::time_point mtime{};
  bool operator==(const artifact&) const = default;
};

/// Every regular file the patterns match (relative patterns under `cwd`),
/// sorted by kind then name. A pattern may be absolute; matching files are
/// named by their path relative to cwd when inside it, else absolute.
/// `path` is the real path (symlinks resolved): the file a download opens.
/// An empty pattern matches nothing.
std::vector<artifact> scan_artifacts(const std::string& cwd,
                                     const artifacts_spec& spec);

/// The newest checkpoint by mtime (ties: the greater name), or nullopt.
std::optional<artifact> latest_checkpoint(const std::string& cwd,
                                          const artifacts_spec& spec);

/// {"checkpoints": [{"name","path","size","mtime"}], "videos": [...]},
/// mtime in RFC 3339 UTC with ms.
nlohmann::json artifacts_json(const std::vector<artifact>& list);

/// What changed between two scans: files that are new or whose size or
/// mtime changed, in `after`'s order.
std::vector<artifact> changed_artifacts(const std::vector<artifact>& before,
                                        const std::vector<artifact>& after);

/// The file a download of `name` may serve: it must be one the patterns
/// match right now, a regular file, and its real path (symlinks resolved)
/// must stay inside the real cwd, or be an absolute pattern's own match.
/// `..` segments, absolute names that no pattern names, NUL bytes and
/// anything else are refused: 403 for a path outside, 404 for no such
/// artifact (not matched, missing, a directory). The message names the
/// name. Names are compared exactly as listed: `./ckpt/a.pt` is not
/// `ckpt/a.pt`.
result<artifact> resolve_artifact(const std::string& cwd,
                                  const artifacts_spec& spec,
                                  std::string_view name);

/// One byte range of a file of `size` bytes, inclusive bounds.
struct byte_range {
  std::uint64_t first = 0;
  std::uint64_t last = 0;
};

/// Parses an HTTP Range header ("bytes=0-99", "bytes=100-", "bytes=-500")
/// for a file of `size` bytes. nullopt: serve the whole file (no header,
/// or a form we do not support such as several ranges, which RFC 9110
/// allows a server to ignore). An unsatisfiable range is an error
/// (the caller answers 416 with Content-Range: bytes */size).
///
/// The last position is clamped to size - 1; a suffix longer than the file
/// is the whole file as a range. Unsatisfiable (ec::range_not_satisfiable):
/// a first position at or past the end (so any "a-b" or "a-" of an empty
/// file) and the suffix "-0". Ignored, so nullopt: other units, anything
/// with a comma, broken syntax ("bytes=", "bytes=x-1", "bytes=5-2"), and a
/// non-zero suffix of an empty file, which RFC 9110 14.1.1 counts as
/// satisfiable though no byte range can express it.
result<std::optional<byte_range>> parse_range(std::string_view header,
                                              std::uint64_t size);

/// A Content-Type for a file name: video/mp4, video/webm, image/gif,
/// application/octet-stream, ... Chosen by the extension, ignoring case;
/// checkpoints and anything unknown are application/octet-stream.
std::string_view content_type_for(std::string_view name);

} // namespace corral
