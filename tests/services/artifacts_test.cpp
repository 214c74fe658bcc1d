#include "services/artifacts.hpp"
#include "tests/temp_dir.hpp"

#include <catch2/catch.hpp>

#include <fcntl.h>
#include <sys/stat.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <string>
#include <utility>
#include <vector>

using namespace corral;
using corral::test::temp_dir;
namespace fs = std::filesystem;

namespace {

/// Writes `bytes` bytes to `name` under `dir`, making its directories.
void make_file(const temp_dir& dir, const std::string& name,
               std::size_t bytes = 1) {
  fs::create_directories(fs::path{dir / name}.parent_path());
  std::ofstream{dir / name} << std::string(bytes, 'x');
}

void make_link(const std::string& target, const temp_dir& dir,
               const std::string& name) {
  fs::create_directories(fs::path{dir / name}.parent_path());
  fs::create_symlink(target, dir / name);
}

void set_mtime(const std::string& path, std::int64_t sec, long nsec = 0) {
  timespec times[2] = {{sec, nsec}, {sec, nsec}};
  REQUIRE(::utimensat(AT_FDCWD, path.c_str(), times, 0) == 0);
}

std::chrono::system_clock::time_point at(std::int64_t sec, long nsec = 0) {
  using namespace std::chrono;
  return system_clock::time_point{
      duration_cast<system_clock::duration>(seconds{sec} + nanoseconds{nsec})};
}

std::string real(const std::string& path) {
  return fs::canonical(path).string();
}

/// "kind:name" of everything listed, in order.
std::vector<std::string> listed(const std::string& cwd,
                                const artifacts_spec& spec) {
  std::vector<std::string> out;
  for (const auto& a : scan_artifacts(cwd, spec))
    out.push_back(a.kind + ":" + a.name);
  return out;
}

std::vector<std::string> checkpoints(const temp_dir& dir,
                                     const std::string& pattern) {
  return listed(dir.path(), artifacts_spec{pattern, ""});
}

using strings = std::vector<std::string>;

artifact resolved(const std::string& cwd, const artifacts_spec& spec,
                  std::string_view name) {
  auto aut = resolve_artifact(cwd, spec, name);
  INFO(std::string{name});
  REQUIRE(aut);
  return *aut;
}

/// The refusal of `name`; its message must name the name.
error refusal(const std::string& cwd, const artifacts_spec& spec,
              std::string_view name) {
  auto aut = resolve_artifact(cwd, spec, name);
  INFO(std::string{name});
  REQUIRE_FALSE(aut);
  CHECK(aut.error().message.find(std::string{name}) != std::string::npos);
  return aut.error();
}

using span = std::pair<std::uint64_t, std::uint64_t>;

/// The range parse_range picks, or nullopt for the whole file.
std::optional<span> range(std::string_view header, std::uint64_t size) {
  auto aut = parse_range(header, size);
  INFO(std::string{header} << " of " << size);
  REQUIRE(aut);
  if (!aut->has_value())
    return std::nullopt;
  return span{(*aut)->first, (*aut)->last};
}

error range_error(std::string_view header, std::uint64_t size) {
  auto aut = parse_range(header, size);
  INFO(std::string{header} << " of " << size);
  REQUIRE_FALSE(aut);
  return aut.error();
}

artifact make_artifact(std::string kind, std::string name, std::uint64_t size,
                       std::int64_t mtime) {
  return artifact{std::move(kind), name, "/runs/r/" + name, size, at(mtime)};
}

} // namespace

TEST_CASE("artifacts lists checkpoints and videos by kind then name",
          "[artifacts]") {
  temp_dir dir;
  make_file(dir, "ckpt/b.pt", 3);
  make_file(dir, "ckpt/a.pt", 1);
  make_file(dir, "ckpt/a.txt");
  make_file(dir, "videos/ep2.mp4", 2);
  make_file(dir, "videos/ep10.mp4", 10);
  make_file(dir, "train.py");
  auto aut = scan_artifacts(dir.path(), {"ckpt/*.pt", "videos/*.mp4"});

  REQUIRE(aut.size() == 4);
  CHECK(listed(dir.path(), {"ckpt/*.pt", "videos/*.mp4"})
        == strings{"checkpoint:ckpt/a.pt", "checkpoint:ckpt/b.pt",
                   "video:videos/ep10.mp4", "video:videos/ep2.mp4"});
  CHECK(aut[0].size == 1);
  CHECK(aut[1].size == 3);
  CHECK(aut[2].size == 10);
  CHECK(aut[3].size == 2);
  CHECK(aut[2].path == real(dir / "videos/ep10.mp4"));
}

TEST_CASE("artifact mtimes are the files' own to the nanosecond",
          "[artifacts]") {
  temp_dir dir;
  make_file(dir, "ckpt/a.pt");
  set_mtime(dir / "ckpt/a.pt", 1700000000, 123456789);

  auto aut = scan_artifacts(dir.path(), {"ckpt/*.pt", ""});

  REQUIRE(aut.size() == 1);
  CHECK(aut[0].mtime == at(1700000000, 123456789));
}

TEST_CASE("latest checkpoint is the one with the newest mtime", "[artifacts]") {
  temp_dir dir;
  for (auto name : {"ckpt/a.pt", "ckpt/b.pt", "ckpt/c.pt", "videos/v.mp4"})
    make_file(dir, name);
  set_mtime(dir / "ckpt/a.pt", 300);
  set_mtime(dir / "ckpt/b.pt", 100);
  set_mtime(dir / "ckpt/c.pt", 200);
  set_mtime(dir / "videos/v.mp4", 900);

  auto aut = latest_checkpoint(dir.path(), {"ckpt/*.pt", "videos/*.mp4"});

  REQUIRE(aut);
  CHECK(aut->kind == "checkpoint");
  CHECK(aut->name == "ckpt/a.pt");
  CHECK(aut->mtime == at(300));
}

TEST_CASE("latest checkpoint breaks an mtime tie by the greater name",
          "[artifacts]") {
  temp_dir dir;
  for (auto name : {"ckpt/b.pt", "ckpt/c.pt", "ckpt/a.pt"}) {
    make_file(dir, name);
    set_mtime(dir / name, 100);
  }
  auto aut = latest_checkpoint(dir.path(), {"ckpt/*.pt", ""});
  REQUIRE(aut);
  CHECK(aut->name == "ckpt/c.pt");

  set_mtime(dir / "ckpt/a.pt", 100, 1);
  aut = latest_checkpoint(dir.path(), {"ckpt/*.pt", ""});
  REQUIRE(aut);
  CHECK(aut->name == "ckpt/a.pt");
}

TEST_CASE("latest checkpoint is nullopt without a matching file",
          "[artifacts]") {
  temp_dir dir;
  make_file(dir, "videos/v.mp4");
  CHECK_FALSE(latest_checkpoint(dir.path(), {"", "videos/*.mp4"}));
  CHECK_FALSE(latest_checkpoint(dir.path(), {"ckpt/*.pt", "videos/*.mp4"}));
}

TEST_CASE("double star spans zero or more directories", "[artifacts]") {
  temp_dir dir;
  for (auto name :
       {"checkpoints/a.zip", "checkpoints/x/b.zip", "checkpoints/x/y/z/c.zip",
        "checkpoints/x/d.txt", "other/e.zip", "checkpoints/.hidden/f.zip",
        "checkpoints/x/.g.zip"})
    make_file(dir, name);

  CHECK(checkpoints(dir, "checkpoints/**/*.zip")
        == strings{"checkpoint:checkpoints/a.zip",
                   "checkpoint:checkpoints/x/b.zip",
                   "checkpoint:checkpoints/x/y/z/c.zip"});
  CHECK(checkpoints(dir, "checkpoints/.hidden/**/*.zip")
        == strings{"checkpoint:checkpoints/.hidden/f.zip"});
}

TEST_CASE("double star spans at most eight directories", "[artifacts]") {
  temp_dir dir;
  make_file(dir, "1/2/3/4/5/6/7/8/in.zip");
  make_file(dir, "1/2/3/4/5/6/7/8/9/out.zip");

  CHECK(checkpoints(dir, "**/*.zip")
        == strings{"checkpoint:1/2/3/4/5/6/7/8/in.zip"});
  CHECK(checkpoints(dir, "1/**/*.zip")
        == strings{"checkpoint:1/2/3/4/5/6/7/8/9/out.zip",
                   "checkpoint:1/2/3/4/5/6/7/8/in.zip"});
}

TEST_CASE("double star does not enter symlinked directories", "[artifacts]") {
  temp_dir dir;
  make_file(dir, "real/x.zip");
  make_link(dir / "real", dir, "link");

  CHECK(checkpoints(dir, "**/*.zip") == strings{"checkpoint:real/x.zip"});
  // A named step through a link inside cwd is followed, as glob(3) does.
  CHECK(checkpoints(dir, "link/*.zip") == strings{"checkpoint:link/x.zip"});
}

TEST_CASE("a trailing double star lists every file below", "[artifacts]") {
  temp_dir dir;
  make_file(dir, "ckpt/a.pt");
  make_file(dir, "ckpt/sub/b.pt");
  make_file(dir, "top.pt");

  CHECK(checkpoints(dir, "ckpt/**")
        == strings{"checkpoint:ckpt/a.pt", "checkpoint:ckpt/sub/b.pt"});
}

TEST_CASE("a double star inside a segment is a single star", "[artifacts]") {
  temp_dir dir;
  make_file(dir, "ckpt/ab.pt");
  make_file(dir, "ckpt/a/b.pt");

  CHECK(checkpoints(dir, "ckpt/a**.pt") == strings{"checkpoint:ckpt/ab.pt"});
}

TEST_CASE("a file reached by several double star routes is listed once",
          "[artifacts]") {
  temp_dir dir;
  make_file(dir, "a/b/c.pt");

  CHECK(checkpoints(dir, "**/**/*.pt") == strings{"checkpoint:a/b/c.pt"});
}

TEST_CASE("a pattern reads at most ten thousand directory entries",
          "[artifacts]") {
  temp_dir dir;
  fs::create_directory(dir / "many");
  for (int i = 0; i < 10050; ++i)
    std::ofstream{dir / ("many/" + std::to_string(i) + ".pt")};

  CHECK(scan_artifacts(dir.path(), {"many/*.pt", ""}).size() == 10000);
}

TEST_CASE("dot and empty segments in a pattern are ignored", "[artifacts]") {
  temp_dir dir;
  make_file(dir, "ckpt/a.pt");

  CHECK(checkpoints(dir, "./ckpt//*.pt") == strings{"checkpoint:ckpt/a.pt"});
}

TEST_CASE("a pattern with a dot-dot segment matches nothing", "[artifacts]") {
  temp_dir dir;
  make_file(dir, "shared/a.pt");
  make_file(dir, "run/ckpt/b.pt");

  CHECK(listed(dir / "run", {"../shared/*.pt", ""}).empty());
  CHECK(listed(dir / "run", {"ckpt/../ckpt/*.pt", ""}).empty());
}

TEST_CASE("an empty pattern matches nothing", "[artifacts]") {
  temp_dir dir;
  make_file(dir, "a.pt");
  make_file(dir, "v.mp4");

  CHECK(listed(dir.path(), {"", ""}).empty());
  CHECK(listed(dir.path(), {"", "*.mp4"}) == strings{"video:v.mp4"});
}

TEST_CASE("a file both patterns match is listed under each kind",
          "[artifacts]") {
  temp_dir dir;
  make_file(dir, "out/a.mp4");

  CHECK(listed(dir.path(), {"out/*", "out/*.mp4"})
        == strings{"checkpoint:out/a.mp4", "video:out/a.mp4"});
}

TEST_CASE("hidden files match only a pattern that names the dot",
          "[artifacts]") {
  temp_dir dir;
  make_file(dir, "ckpt/a.pt");
  make_file(dir, "ckpt/.tmp.pt");
  make_file(dir, ".cache/c.pt");

  CHECK(checkpoints(dir, "ckpt/*.pt") == strings{"checkpoint:ckpt/a.pt"});
  CHECK(checkpoints(dir, "ckpt/.*.pt") == strings{"checkpoint:ckpt/.tmp.pt"});
  CHECK(checkpoints(dir, "*/c.pt").empty());
  CHECK(checkpoints(dir, ".*/c.pt") == strings{"checkpoint:.cache/c.pt"});
}

TEST_CASE("an absolute pattern outside cwd names its files absolutely",
          "[artifacts]") {
  temp_dir run;
  temp_dir elsewhere;
  make_file(elsewhere, "v.mp4", 4);
  make_file(elsewhere, "notes.txt");
  artifacts_spec spec{"", elsewhere.path() + "/*.mp4"};

  auto name = elsewhere / "v.mp4";
  CHECK(listed(run.path(), spec) == strings{"video:" + name});
  auto aut = resolved(run.path(), spec, name);
  CHECK(aut.path == real(name));
  CHECK(aut.size == 4);
  CHECK(refusal(run.path(), spec, elsewhere / "notes.txt").code
        == ec::forbidden);
}

TEST_CASE("an absolute pattern inside cwd names its files relative to cwd",
          "[artifacts]") {
  temp_dir dir;
  make_file(dir, "ckpt/a.pt");
  artifacts_spec spec{dir.path() + "/ckpt/*.pt", ""};

  CHECK(listed(dir.path(), spec) == strings{"checkpoint:ckpt/a.pt"});
  CHECK(resolved(dir.path(), spec, "ckpt/a.pt").path
        == real(dir / "ckpt/a.pt"));
  // Downloads take the names the listing gives, nothing else.
  CHECK(refusal(dir.path(), spec, dir / "ckpt/a.pt").code == ec::forbidden);
}

TEST_CASE("a cwd reached through a symlink still lists its files",
          "[artifacts]") {
  temp_dir dir;
  make_file(dir, "real/ckpt/a.pt");
  make_link(dir / "real", dir, "run");

  CHECK(listed(dir / "run", {"ckpt/*.pt", ""})
        == strings{"checkpoint:ckpt/a.pt"});
  CHECK(resolved(dir / "run", {"ckpt/*.pt", ""}, "ckpt/a.pt").path
        == real(dir / "real/ckpt/a.pt"));
}

TEST_CASE("a symlink out of cwd is neither listed nor served", "[artifacts]") {
  temp_dir dir;
  temp_dir outside;
  make_file(outside, "secret.pt");
  make_file(dir, "ckpt/ok.pt");
  make_link(outside / "secret.pt", dir, "ckpt/evil.pt");
  make_link(outside.path(), dir, "out");
  artifacts_spec spec{"ckpt/*.pt", "out/*.pt"};

  CHECK(listed(dir.path(), spec) == strings{"checkpoint:ckpt/ok.pt"});
  CHECK(refusal(dir.path(), spec, "ckpt/evil.pt").code == ec::forbidden);
  CHECK(refusal(dir.path(), spec, "out/secret.pt").code == ec::forbidden);
}

TEST_CASE("a symlink inside cwd is listed and served as its target",
          "[artifacts]") {
  temp_dir dir;
  make_file(dir, "data/real.pt", 5);
  make_link("../data/real.pt", dir, "ckpt/link.pt");
  make_link("missing.pt", dir, "ckpt/dangling.pt");
  artifacts_spec spec{"ckpt/*.pt", ""};

  CHECK(listed(dir.path(), spec) == strings{"checkpoint:ckpt/link.pt"});
  auto aut = resolved(dir.path(), spec, "ckpt/link.pt");
  CHECK(aut.path == real(dir / "data/real.pt"));
  CHECK(aut.size == 5);
  CHECK(refusal(dir.path(), spec, "ckpt/dangling.pt").code == ec::not_found);
}

TEST_CASE("a name with a dot-dot segment is refused with 403", "[artifacts]") {
  temp_dir dir;
  make_file(dir, "run/ckpt/a.pt");
  make_file(dir, "b.pt");
  artifacts_spec spec{"ckpt/*.pt", ""};

  for (auto name : {"../b.pt", "ckpt/../ckpt/a.pt", "..", "ckpt/.."})
    CHECK(refusal(dir / "run", spec, name).code == ec::forbidden);
  // `..` inside a segment is an ordinary name.
  CHECK(refusal(dir / "run", spec, "ckpt/..a.pt").code == ec::not_found);
}

TEST_CASE("an absolute name no pattern matches is refused with 403",
          "[artifacts]") {
  temp_dir dir;
  make_file(dir, "ckpt/a.pt");
  artifacts_spec spec{"ckpt/*.pt", ""};

  CHECK(refusal(dir.path(), spec, "/etc/passwd").code == ec::forbidden);
  CHECK(refusal(dir.path(), spec, "/ckpt/a.pt").code == ec::forbidden);
}

TEST_CASE("a name with a NUL byte is refused with 403", "[artifacts]") {
  temp_dir dir;
  make_file(dir, "ckpt/a.pt");
  std::string name{"ckpt/a.pt\0.mp4", 14};

  auto aut = resolve_artifact(dir.path(), {"ckpt/*.pt", ""}, name);

  REQUIRE_FALSE(aut);
  CHECK(aut.error().code == ec::forbidden);
  CHECK(aut.error().message.find("'ckpt/a.pt\\0.mp4'") != std::string::npos);
}

TEST_CASE("a file no pattern matches is not found", "[artifacts]") {
  temp_dir dir;
  make_file(dir, "ckpt/a.pt");
  make_file(dir, "ckpt/a.txt");
  make_file(dir, "train.py");
  artifacts_spec spec{"ckpt/*.pt", "videos/*.mp4"};

  CHECK(refusal(dir.path(), spec, "train.py").code == ec::not_found);
  CHECK(refusal(dir.path(), spec, "ckpt/a.txt").code == ec::not_found);
  CHECK(refusal(dir.path(), {"", ""}, "ckpt/a.pt").code == ec::not_found);
  CHECK(resolved(dir.path(), spec, "ckpt/a.pt").kind == "checkpoint");
}

TEST_CASE("a missing file is not found", "[artifacts]") {
  temp_dir dir;
  make_file(dir, "ckpt/a.pt");
  artifacts_spec spec{"ckpt/*.pt", ""};

  CHECK(refusal(dir.path(), spec, "ckpt/b.pt").code == ec::not_found);
  fs::remove(dir / "ckpt/a.pt");
  CHECK(refusal(dir.path(), spec, "ckpt/a.pt").code == ec::not_found);
  CHECK(refusal(dir.path(), spec, "").code == ec::not_found);
}

TEST_CASE("a directory is not found even when the pattern matches it",
          "[artifacts]") {
  temp_dir dir;
  fs::create_directories(dir / "ckpt/sub.pt");
  make_file(dir, "ckpt/a.pt");
  artifacts_spec spec{"ckpt/*", ""};

  CHECK(listed(dir.path(), spec) == strings{"checkpoint:ckpt/a.pt"});
  CHECK(refusal(dir.path(), spec, "ckpt/sub.pt").code == ec::not_found);
  CHECK(refusal(dir.path(), spec, "ckpt").code == ec::not_found);
}

TEST_CASE("range first-last is clamped to the file", "[artifacts]") {
  CHECK(range("bytes=0-99", 1000) == span{0, 99});
  CHECK(range("bytes=100-199", 1000) == span{100, 199});
  CHECK(range("bytes=5-5", 1000) == span{5, 5});
  CHECK(range("bytes=900-5000", 1000) == span{900, 999});
  CHECK(range("bytes=0-99999999999999999999999", 1000) == span{0, 999});
  CHECK(range("Bytes=0-1", 1000) == span{0, 1});
  CHECK(range(" bytes= 0-1 ", 1000) == span{0, 1});
}

TEST_CASE("range first- runs to the end", "[artifacts]") {
  CHECK(range("bytes=100-", 1000) == span{100, 999});
  CHECK(range("bytes=0-", 1) == span{0, 0});
  CHECK(range("bytes=999-", 1000) == span{999, 999});
}

TEST_CASE("range -n is the last n bytes or the whole file", "[artifacts]") {
  CHECK(range("bytes=-500", 1000) == span{500, 999});
  CHECK(range("bytes=-1", 1000) == span{999, 999});
  CHECK(range("bytes=-1000", 1000) == span{0, 999});
  CHECK(range("bytes=-5000", 1000) == span{0, 999});
  CHECK(range("bytes=-99999999999999999999999", 1000) == span{0, 999});
  CHECK(range("bytes=-5", 0) == std::nullopt);
}

TEST_CASE("a range beyond the file is not satisfiable", "[artifacts]") {
  for (auto [header, size] : {std::pair{"bytes=1000-", 1000},
                              {"bytes=1000-1001", 1000},
                              {"bytes=5000-6000", 1000},
                              {"bytes=99999999999999999999999-", 1000},
                              {"bytes=-0", 1000},
                              {"bytes=0-", 0},
                              {"bytes=0-0", 0},
                              {"bytes=-0", 0}}) {
    auto err = range_error(header, static_cast<std::uint64_t>(size));
    CHECK(err.code == ec::range_not_satisfiable);
    CHECK(err.message.find(header) != std::string::npos);
    CHECK(err.message.find(std::to_string(size) + " bytes")
          != std::string::npos);
  }
  CHECK(http_status(ec::range_not_satisfiable) == 416);
  CHECK(code_name(ec::range_not_satisfiable) == "range_not_satisfiable");
}

TEST_CASE("a range header we do not serve asks for the whole file",
          "[artifacts]") {
  for (auto header :
       {"", "bytes=", "bytes=-", "bytes=a-b", "bytes=5-2", "bytes=1-2-3",
        "bytes=+1-2", "bytes=0x10-", "bytes=1 - 2", "bytes 0-1", "items=0-1",
        "bytes=0-1,5-6", "bytes=0-1, 5-6", "bytes=0-1,"})
    CHECK(range(header, 1000) == std::nullopt);
}

TEST_CASE("changed artifacts are the new and the modified ones",
          "[artifacts]") {
  std::vector<artifact> before{make_artifact("checkpoint", "a.pt", 1, 100),
                               make_artifact("checkpoint", "b.pt", 1, 100),
                               make_artifact("checkpoint", "c.pt", 1, 100),
                               make_artifact("checkpoint", "gone.pt", 1, 100)};
  std::vector<artifact> after{make_artifact("checkpoint", "a.pt", 1, 100),
                              make_artifact("checkpoint", "b.pt", 2, 100),
                              make_artifact("checkpoint", "c.pt", 1, 101),
                              make_artifact("checkpoint", "d.pt", 1, 100),
                              make_artifact("video", "a.pt", 1, 100)};

  auto aut = changed_artifacts(before, after);

  REQUIRE(aut.size() == 4);
  CHECK(aut[0] == after[1]);
  CHECK(aut[1] == after[2]);
  CHECK(aut[2] == after[3]);
  CHECK(aut[3] == after[4]);
  CHECK(changed_artifacts(after, after).empty());
  CHECK(changed_artifacts({}, after) == after);
}

TEST_CASE("artifacts json groups by kind with every field", "[artifacts]") {
  std::vector<artifact> list{
      artifact{"checkpoint", "ckpt/a.pt", "/r/ckpt/a.pt", 7,
               at(1700000000, 123456789)},
      artifact{"video", "videos/v.mp4", "/r/videos/v.mp4", 0, at(0)}};

  CHECK(artifacts_json(list) == nlohmann::json::parse(R"({
    "checkpoints": [{"name": "ckpt/a.pt", "path": "/r/ckpt/a.pt",
                     "size": 7, "mtime": "2023-11-14T22:13:20.123Z"}],
    "videos": [{"name": "videos/v.mp4", "path": "/r/videos/v.mp4",
                "size": 0, "mtime": "1970-01-01T00:00:00.000Z"}]})"));
  CHECK(artifacts_json({}) == nlohmann::json::parse(R"({
    "checkpoints": [], "videos": []})"));
}

TEST_CASE("content type follows the extension", "[artifacts]") {
  for (auto [name, type] : {std::pair{"v/ep.mp4", "video/mp4"},
                            {"EP.MP4", "video/mp4"},
                            {"a.webm", "video/webm"},
                            {"a.ogv", "video/ogg"},
                            {"a.ogg", "video/ogg"},
                            {"a.mkv", "video/x-matroska"},
                            {"a.avi", "video/x-msvideo"},
                            {"a.mov", "video/quicktime"},
                            {"a.gif", "image/gif"},
                            {"a.png", "image/png"},
                            {"a.jpg", "image/jpeg"},
                            {"a.Jpeg", "image/jpeg"},
                            {"m.json", "application/json"},
                            {"a.txt", "text/plain; charset=utf-8"},
                            {"train.log", "text/plain; charset=utf-8"},
                            {"progress.csv", "text/csv; charset=utf-8"},
                            {"c.zip", "application/zip"},
                            {"c.pt", "application/octet-stream"},
                            {"c.pth", "application/octet-stream"},
                            {"c.ckpt", "application/octet-stream"},
                            {"c.npz", "application/octet-stream"},
                            {"c.pkl", "application/octet-stream"},
                            {"model", "application/octet-stream"},
                            {"v.mp4/model", "application/octet-stream"},
                            {".mp4", "application/octet-stream"},
                            {"a.mp4.bak", "application/octet-stream"}}) {
    INFO(name);
    CHECK(content_type_for(name) == type);
  }
}
