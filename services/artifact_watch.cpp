#include "services/artifact_watch.hpp"

#include <algorithm>
#include <filesystem>
#include <system_error>

namespace corral {

namespace {

namespace fs = std::filesystem;

bool has_wildcard(const std::string& segment) {
  return segment.find_first_of("*?[") != std::string::npos;
}

/// The directory a pattern's files land in, as far as it is literal.
fs::path literal_dir(const std::string& cwd, const std::string& pattern) {
  fs::path p
      = pattern.front() == '/' ? fs::path{pattern} : fs::path{cwd} / pattern;
  fs::path dir;
  for (auto& part : p.parent_path()) {
    if (has_wildcard(part.string()))
      break;
    dir /= part;
  }
  return dir;
}

} // namespace

artifact_watch::artifact_watch(std::string cwd, artifacts_spec spec)
    : cwd_(std::move(cwd)), spec_(std::move(spec)) {}

bool artifact_watch::enabled() const {
  return !spec_.checkpoints.empty() || !spec_.videos.empty();
}

std::vector<std::string> artifact_watch::directories() const {
  std::vector<std::string> out;
  for (auto* pattern : {&spec_.checkpoints, &spec_.videos}) {
    if (pattern->empty())
      continue;
    auto dir = literal_dir(cwd_, *pattern);
    std::error_code ec;
    while (!dir.empty() && !fs::is_directory(dir, ec)) {
      if (dir == dir.root_path())
        break;
      dir = dir.parent_path();
    }
    if (dir.empty() || !fs::is_directory(dir, ec))
      continue;
    auto s = dir.string();
    if (std::find(out.begin(), out.end(), s) == out.end())
      out.push_back(std::move(s));
  }
  return out;
}

std::vector<artifact_change> artifact_watch::rescan() {
  auto now = scan_artifacts(cwd_, spec_);
  std::vector<artifact_change> news;
  if (scanned_)
    for (auto& a : changed_artifacts(current_, now)) {
      bool seen = std::any_of(current_.begin(), current_.end(), [&](auto& b) {
        return b.kind == a.kind && b.name == a.name;
      });
      news.push_back({std::move(a), !seen});
    }
  current_ = std::move(now);
  scanned_ = true;
  return news;
}

} // namespace corral
