#include "services/artifacts.hpp"

#include "services/run_view.hpp"
#include "services/text.hpp"

#include <dirent.h>
#include <fnmatch.h>
#include <stdlib.h>
#include <sys/stat.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <filesystem>
#include <limits>
#include <map>
#include <memory>
#include <tuple>
#include <utility>

namespace corral {

namespace {

// Bounds of one pattern's walk. Every listing and every download rescans,
// and a run directory may hold a virtualenv or a dataset: without a bound
// `**` would read all of it each time.
constexpr int max_globstar_depth = 8;
constexpr std::size_t max_walk_entries = 10000;

using segments = std::vector<std::string>;

/// The segments of `text` between slashes, empty ones included.
std::vector<std::string_view> split_slashes(std::string_view text) {
  std::vector<std::string_view> out;
  std::size_t start = 0;
  while (true) {
    auto end = text.find('/', start);
    if (end == std::string_view::npos) {
      out.push_back(text.substr(start));
      return out;
    }
    out.push_back(text.substr(start, end - start));
    start = end + 1;
  }
}

bool has_dotdot_segment(std::string_view name) {
  auto segs = split_slashes(name);
  return std::find(segs.begin(), segs.end(), "..") != segs.end();
}

/// A pattern's segments; "." and empty ones ("./ckpt//*.pt") add nothing.
/// nullopt when the pattern can name no file we would serve: one with a
/// `..` segment (such names are refused) or one with no segment at all.
std::optional<segments> split_pattern(std::string_view pattern) {
  if (has_dotdot_segment(pattern))
    return std::nullopt;
  segments out;
  for (auto seg : split_slashes(pattern))
    if (!seg.empty() && seg != ".")
      out.emplace_back(seg);
  if (out.empty())
    return std::nullopt;
  // A trailing `**` means every file below, as in gitignore; alone it
  // would match only directories, which are never artifacts.
  if (out.back() == "**")
    out.emplace_back("*");
  return out;
}

/// A segment fnmatch would match only against itself, so it can be looked
/// up directly instead of reading the directory.
bool is_literal(std::string_view seg) {
  return seg.find_first_of("*?[\\") == std::string_view::npos;
}

std::string join(const std::string& dir, std::string_view name) {
  return dir == "/" ? "/" + std::string{name} : dir + "/" + std::string{name};
}

bool is_dir(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

/// A directory that is not a symlink to one.
bool is_real_dir(const std::string& path) {
  struct stat st {};
  return ::lstat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

struct dir_closer {
  void operator()(DIR* d) const { ::closedir(d); }
};

struct free_deleter {
  void operator()(char* p) const { ::free(p); }
};

/// Finds the paths one split pattern matches, reading at most
/// max_walk_entries directory entries.
class walker {
public:
  explicit walker(const segments& segs) : segs_(segs) {}

  std::vector<std::string> run(const std::string& base) {
    walk(base, 0, 0);
    return std::move(found_);
  }

private:
  void walk(const std::string& dir, std::size_t i, int depth) {
    const auto& seg = segs_[i];
    if (seg == "**")
      return walk_globstar(dir, i, depth);
    if (is_literal(seg))
      return visit(join(dir, seg), i, depth);
    for (const auto& name : list(dir))
      // FNM_PERIOD: a hidden file matches only a pattern that starts the
      // segment with a dot, as glob(3) does.
      if (::fnmatch(seg.c_str(), name.c_str(), FNM_PERIOD) == 0)
        visit(join(dir, name), i, depth);
  }

  void walk_globstar(const std::string& dir, std::size_t i, int depth) {
    walk(dir, i + 1, depth);
    if (depth >= max_globstar_depth)
      return;
    for (const auto& name : list(dir)) {
      auto sub = join(dir, name);
      // Hidden directories stay out as they do for `*`. Symlinked ones too:
      // a link to an ancestor would loop, a link elsewhere would widen the
      // walk beyond what the user can see in the tree.
      if (name.front() != '.' && is_real_dir(sub))
        walk(sub, i, depth + 1);
    }
  }

  void visit(const std::string& path, std::size_t i, int depth) {
    if (i + 1 == segs_.size())
      found_.push_back(path);
    else if (is_dir(path))
      walk(path, i + 1, depth);
  }

  /// Entry names in `dir` but . and .., sorted: subdirectories are walked
  /// in name order, so a walk the bound cuts short drops the later ones
  /// rather than whichever the file system hands out last.
  std::vector<std::string> list(const std::string& dir) {
    std::vector<std::string> names;
    std::unique_ptr<DIR, dir_closer> d{::opendir(dir.c_str())};
    if (!d)
      return names;
    while (entries_left_ > 0) {
      const auto* e = ::readdir(d.get());
      if (e == nullptr)
        break;
      std::string_view name = e->d_name;
      if (name == "." || name == "..")
        continue;
      --entries_left_;
      names.emplace_back(name);
    }
    std::sort(names.begin(), names.end());
    return names;
  }

  const segments& segs_;
  std::size_t entries_left_ = max_walk_entries;
  std::vector<std::string> found_;
};

/// The run's cwd twice: as written (names are relative to it) and with
/// symlinks resolved (what "inside" means).
struct run_dir {
  std::string path;
  std::string real; // empty when cwd does not exist
};

std::string real_path(const std::string& path) {
  std::unique_ptr<char, free_deleter> real{::realpath(path.c_str(), nullptr)};
  return real ? std::string{real.get()} : std::string{};
}

run_dir make_run_dir(const std::string& cwd) {
  std::error_code ignored;
  auto path = std::filesystem::absolute(cwd, ignored).lexically_normal();
  auto text = path.string();
  if (text.size() > 1 && text.back() == '/')
    text.pop_back();
  return run_dir{text, real_path(text)};
}

/// Whether `path` lies strictly below directory `dir` (both absolute and
/// normal).
bool is_under(std::string_view path, std::string_view dir) {
  if (dir == "/")
    return path.size() > 1 && path.front() == '/';
  return path.size() > dir.size() + 1 && path.starts_with(dir)
         && path[dir.size()] == '/';
}

std::string relative_to(const std::string& path, const std::string& dir) {
  return path.substr(dir == "/" ? 1 : dir.size() + 1);
}

bool real_inside(const run_dir& dir, const std::string& real) {
  return !dir.real.empty() && (real == dir.real || is_under(real, dir.real));
}

std::chrono::system_clock::time_point to_time_point(const timespec& ts) {
  using namespace std::chrono;
  return system_clock::time_point{duration_cast<system_clock::duration>(
      seconds{ts.tv_sec} + nanoseconds{ts.tv_nsec})};
}

/// The artifact at a matched path, or nullopt when it must not be listed.
std::optional<artifact> make_artifact(const run_dir& dir, const char* kind,
                                      const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0 || !S_ISREG(st.st_mode))
    return std::nullopt;
  auto real = real_path(path);
  if (real.empty())
    return std::nullopt;
  std::string name = path;
  if (is_under(path, dir.path)) {
    // A name inside cwd must really be inside: a symlink out would let
    // whoever writes to the run's directory publish any file the daemon
    // can read.
    if (!real_inside(dir, real))
      return std::nullopt;
    name = relative_to(path, dir.path);
  }
  // Outside cwd the path came from an absolute pattern: the user chose that
  // place, so its match is served wherever it leads.
  return artifact{kind, std::move(name), std::move(real),
                  static_cast<std::uint64_t>(st.st_size),
                  to_time_point(st.st_mtim)};
}

void scan_pattern(const run_dir& dir, const char* kind,
                  const std::string& pattern, std::vector<artifact>& out) {
  auto segs = split_pattern(pattern);
  if (!segs)
    return;
  auto base = pattern.starts_with('/') ? std::string{"/"} : dir.path;
  for (const auto& path : walker{*segs}.run(base))
    if (auto a = make_artifact(dir, kind, path))
      out.push_back(std::move(*a));
}

auto kind_and_name(const artifact& a) {
  return std::tie(a.kind, a.name);
}

/// The name in single quotes for a message; a NUL would cut the message
/// short in C APIs and logs.
std::string quoted(std::string_view name) {
  std::string out = "'";
  for (char c : name)
    out += c == '\0' ? std::string{"\\0"} : std::string(1, c);
  return out + "'";
}

/// Whether `name` under cwd exists and resolves to a place outside it.
bool leads_outside(const run_dir& dir, std::string_view name) {
  auto real = real_path(join(dir.path, name));
  return !real.empty() && !real_inside(dir, real);
}

result<std::optional<byte_range>> whole_file() {
  return std::optional<byte_range>{};
}

result<std::optional<byte_range>> part(std::uint64_t first,
                                       std::uint64_t last) {
  return std::optional<byte_range>{byte_range{first, last}};
}

error unsatisfiable(std::string_view header, std::uint64_t size) {
  return make_error(ec::range_not_satisfiable,
                    "range '" + std::string{header} + "' is beyond the "
                        + std::to_string(size) + " bytes of the file");
}

/// A byte position: digits only. Saturates, so a position past any file
/// is unsatisfiable rather than mistaken for broken syntax.
std::optional<std::uint64_t> parse_position(std::string_view text) {
  if (text.empty())
    return std::nullopt;
  constexpr auto max = std::numeric_limits<std::uint64_t>::max();
  std::uint64_t value = 0;
  for (char c : text) {
    if (c < '0' || c > '9')
      return std::nullopt;
    auto digit = static_cast<std::uint64_t>(c - '0');
    value = value > (max - digit) / 10 ? max : value * 10 + digit;
  }
  return value;
}

/// What follows "bytes=", or nullopt for another unit (compared without
/// case, RFC 9110 14.1).
std::optional<std::string_view> bytes_spec(std::string_view header) {
  constexpr std::string_view unit = "bytes=";
  if (header.size() < unit.size())
    return std::nullopt;
  for (std::size_t i = 0; i < unit.size(); ++i)
    if (std::tolower(static_cast<unsigned char>(header[i])) != unit[i])
      return std::nullopt;
  return trim(header.substr(unit.size()));
}

/// "-n": the last n bytes.
result<std::optional<byte_range>> suffix_range(std::string_view header,
                                               std::string_view count,
                                               std::uint64_t size) {
  auto n = parse_position(count);
  if (!n)
    return whole_file();
  if (*n == 0)
    return unsatisfiable(header, size);
  // RFC 9110 14.1.1: a non-zero suffix of an empty file is satisfiable,
  // yet no byte range can say so; the whole (empty) file is the answer.
  if (size == 0)
    return whole_file();
  return part(*n >= size ? 0 : size - *n, size - 1);
}

/// "a-b" or "a-".
result<std::optional<byte_range>> bounded_range(std::string_view header,
                                                std::string_view first_text,
                                                std::string_view last_text,
                                                std::uint64_t size) {
  auto first = parse_position(first_text);
  auto last = last_text.empty()
                  ? std::optional{std::numeric_limits<std::uint64_t>::max()}
                  : parse_position(last_text);
  if (!first || !last || *last < *first)
    return whole_file();
  if (*first >= size)
    return unsatisfiable(header, size);
  return part(*first, std::min(*last, size - 1));
}

struct mime_type {
  std::string_view extension;
  std::string_view type;
};

// Checkpoint formats (pt, pth, ckpt, npz, pkl) are opaque bytes and take
// the default; zip alone has a type of its own.
constexpr std::array<mime_type, 16> mime_types{{
    {"mp4", "video/mp4"},
    {"webm", "video/webm"},
    {"ogv", "video/ogg"},
    {"ogg", "video/ogg"},
    {"mkv", "video/x-matroska"},
    {"avi", "video/x-msvideo"},
    {"mov", "video/quicktime"},
    {"gif", "image/gif"},
    {"png", "image/png"},
    {"jpg", "image/jpeg"},
    {"jpeg", "image/jpeg"},
    {"json", "application/json"},
    {"txt", "text/plain; charset=utf-8"},
    {"log", "text/plain; charset=utf-8"},
    {"csv", "text/csv; charset=utf-8"},
    {"zip", "application/zip"},
}};

/// The lowercased extension of the last segment; none for dot files such
/// as ".mp4".
std::string extension_of(std::string_view name) {
  auto base = name.substr(name.rfind('/') + 1);
  auto dot = base.rfind('.');
  if (dot == std::string_view::npos || dot == 0)
    return {};
  std::string ext{base.substr(dot + 1)};
  for (auto& c : ext)
    c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return ext;
}

nlohmann::json to_json(const artifact& a) {
  return {{"name", a.name},
          {"path", a.path},
          {"size", a.size},
          {"mtime", format_time(a.mtime)}};
}

} // namespace

std::vector<artifact> scan_artifacts(const std::string& cwd,
                                     const artifacts_spec& spec) {
  auto dir = make_run_dir(cwd);
  std::vector<artifact> out;
  scan_pattern(dir, "checkpoint", spec.checkpoints, out);
  scan_pattern(dir, "video", spec.videos, out);
  auto less = [](const artifact& a, const artifact& b) {
    return kind_and_name(a) < kind_and_name(b);
  };
  auto same = [](const artifact& a, const artifact& b) {
    return kind_and_name(a) == kind_and_name(b);
  };
  // `a/**/**/x` reaches the same file along several routes.
  std::sort(out.begin(), out.end(), less);
  out.erase(std::unique(out.begin(), out.end(), same), out.end());
  return out;
}

std::optional<artifact> latest_checkpoint(const std::string& cwd,
                                          const artifacts_spec& spec) {
  auto list = scan_artifacts(cwd, artifacts_spec{spec.checkpoints, {}});
  auto newest = std::max_element(
      list.begin(), list.end(), [](const artifact& a, const artifact& b) {
        return std::tie(a.mtime, a.name) < std::tie(b.mtime, b.name);
      });
  if (newest == list.end())
    return std::nullopt;
  return *newest;
}

nlohmann::json artifacts_json(const std::vector<artifact>& list) {
  nlohmann::json out{{"checkpoints", nlohmann::json::array()},
                     {"videos", nlohmann::json::array()}};
  for (const auto& a : list) {
    if (a.kind == "checkpoint")
      out["checkpoints"].push_back(to_json(a));
    else if (a.kind == "video")
      out["videos"].push_back(to_json(a));
  }
  return out;
}

std::vector<artifact> changed_artifacts(const std::vector<artifact>& before,
                                        const std::vector<artifact>& after) {
  std::map<std::pair<std::string, std::string>, const artifact*> known;
  for (const auto& a : before)
    known.emplace(std::pair{a.kind, a.name}, &a);
  std::vector<artifact> out;
  for (const auto& a : after) {
    auto it = known.find(std::pair{a.kind, a.name});
    if (it == known.end() || it->second->size != a.size
        || it->second->mtime != a.mtime)
      out.push_back(a);
  }
  return out;
}

result<artifact> resolve_artifact(const std::string& cwd,
                                  const artifacts_spec& spec,
                                  std::string_view name) {
  if (name.find('\0') != std::string_view::npos)
    return make_error(ec::forbidden,
                      "artifact " + quoted(name) + " contains a NUL byte");
  if (has_dotdot_segment(name))
    return make_error(ec::forbidden,
                      "artifact " + quoted(name) + " contains a '..' segment");
  // Serving only what a scan lists now keeps listing and download in
  // agreement, and nothing a pattern does not match can slip through.
  for (auto& a : scan_artifacts(cwd, spec))
    if (a.name == name)
      return std::move(a);
  if (name.starts_with('/'))
    return make_error(ec::forbidden,
                      "artifact " + quoted(name)
                          + " is an absolute path no artifact pattern matches");
  if (leads_outside(make_run_dir(cwd), name))
    return make_error(ec::forbidden, "artifact " + quoted(name)
                                         + " leads outside the run's cwd");
  return make_error(ec::not_found,
                    "no artifact " + quoted(name)
                        + ": no file by that name matches the run's "
                          "checkpoint or video pattern");
}

result<std::optional<byte_range>> parse_range(std::string_view header,
                                              std::uint64_t size) {
  header = trim(header);
  // Several ranges ("0-1,5-6") fail the digit parse below, so they too
  // ask for the whole file.
  auto spec = bytes_spec(header);
  if (!spec)
    return whole_file();
  auto dash = spec->find('-');
  if (dash == std::string_view::npos)
    return whole_file();
  auto first = spec->substr(0, dash);
  auto last = spec->substr(dash + 1);
  if (first.empty())
    return suffix_range(header, last, size);
  return bounded_range(header, first, last, size);
}

std::string_view content_type_for(std::string_view name) {
  auto ext = extension_of(name);
  for (const auto& m : mime_types)
    if (m.extension == ext)
      return m.type;
  return "application/octet-stream";
}

} // namespace corral
