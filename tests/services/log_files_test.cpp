// A run's log files read back: line rules on crafted files, and the real
// shim writing, rotating and restarting while readers follow.

#include <catch2/catch.hpp>

#include <fcntl.h>
#include <poll.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "services/log_files.hpp"
#include "services/log_index.hpp"
#include "services/pidfd.hpp"
#include "services/proc.hpp"
#include "services/unique_fd.hpp"
#include "tests/services/shim_process.hpp"
#include "tests/temp_dir.hpp"

using namespace corral;
using namespace std::chrono_literals;
using namespace std::string_literals;
using corral::test::shim_process;
using corral::test::temp_dir;

namespace {

/// Every wait on a process is bounded by this.
constexpr auto patience = 60s;
const std::string fffd = "\xEF\xBF\xBD";

// ------------------------------------------------------------ crafted files

/// Writes a stream's current file and, unless `records` is empty, its
/// index.
void write_stream(const temp_dir& dir, log_stream s, const std::string& text,
                  const std::vector<log_index_record>& records = {},
                  int generation = 0) {
  dir.write(log_file_name(s, generation), text);
  if (records.empty())
    return;
  std::string idx;
  for (auto& r : records)
    idx += format_log_index_record(r);
  dir.write(log_index_name(s, generation), idx);
}

std::vector<std::string> texts(const std::vector<log_line>& lines) {
  std::vector<std::string> out;
  for (auto& l : lines)
    out.push_back(l.text);
  return out;
}

std::int64_t unix_ms(const log_line& l) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             l.t.time_since_epoch())
      .count();
}

/// Every line from cursor 0 on, read in pages of `page`.
std::vector<log_line> read_all(const std::string& dir, log_selection sel,
                               std::size_t page, bool final = false,
                               log_cursor* end = nullptr) {
  std::vector<log_line> all;
  log_cursor at;
  for (;;) {
    auto p = read_logs(dir, sel, at, page, final);
    REQUIRE(p);
    REQUIRE(p->lines.size() <= page);
    all.insert(all.end(), p->lines.begin(), p->lines.end());
    bool moved = p->cursor.out + p->cursor.err > at.out + at.err;
    at = p->cursor;
    if (!p->more)
      break;
    // A full page must move the cursor, or this never ends.
    REQUIRE(moved);
  }
  if (end)
    *end = at;
  return all;
}

log_selection only(log_stream s) {
  return {s == log_stream::out, s == log_stream::err};
}

// ------------------------------------------------------------ real shim

/// Starts the shim as the daemon does on `command`, with the log flags
/// given.
shim_process spawn_shim(const std::string& run_dir,
                        const std::vector<std::string>& log_flags,
                        const std::vector<std::string>& command) {
  std::vector<std::string> args{"--run-dir",     run_dir, "--cwd",      run_dir,
                                "--stop-signal", "15",    "--grace-ms", "1000"};
  args.insert(args.end(), log_flags.begin(), log_flags.end());
  args.push_back("--");
  args.insert(args.end(), command.begin(), command.end());
  return corral::test::spawn_shim(args, {"PATH=/usr/local/bin:/usr/bin:/bin"});
}

/// The shim's first status line ("started ..." or "exec_error ...").
std::string status_line(shim_process& shim) {
  std::string line;
  char c = 0;
  pollfd p{shim.status.get(), POLLIN, 0};
  while (::poll(&p, 1, 60000) == 1 && ::read(shim.status.get(), &c, 1) == 1
         && c != '\n')
    line += c;
  return line;
}

std::vector<std::string> writer(int count, int rate,
                                const std::string& prefix = "line") {
  return {"python3", CORRAL_FIXTURES_DIR "/log_writer.py",
          std::to_string(count), std::to_string(rate), prefix};
}

/// Runs the writer under a shim to the end.
void run_writer(const std::string& dir, const std::vector<std::string>& flags,
                int count, const std::string& prefix = "line") {
  auto shim = spawn_shim(dir, flags, writer(count, 0, prefix));
  REQUIRE(status_line(shim).rfind("started ", 0) == 0);
  REQUIRE(shim.wait_exit(patience));
  CHECK(shim.exit_code() == 0);
}

/// Checks that `lines` are the writer's stdout lines first..first+n-1,
/// each once, in order; says where the first mismatch is.
void check_sequence(const std::vector<log_line>& lines, int first, int n,
                    const std::string& prefix = "line") {
  REQUIRE(lines.size() == static_cast<std::size_t>(n));
  char expect[96];
  for (int i = 0; i < n; ++i) {
    std::snprintf(expect, sizeof expect,
                  "%s %08d abcdefghijklmnopqrstuvwxyz0123456789",
                  prefix.c_str(), first + i);
    if (lines[static_cast<std::size_t>(i)].text != expect) {
      INFO("line " << i << " of " << n);
      REQUIRE(lines[static_cast<std::size_t>(i)].text == expect);
    }
  }
}

/// The writer's stderr lines for seq first..first+count-1.
std::vector<std::string> expected_err(int first, int count,
                                      const std::string& prefix = "line") {
  std::vector<std::string> out;
  char line[64];
  for (int i = first; i < first + count; ++i)
    if (i % 1000 == 0) {
      std::snprintf(line, sizeof line, "%s err %08d", prefix.c_str(), i);
      out.push_back(line);
    }
  return out;
}

std::vector<log_line> of_stream(const std::vector<log_line>& lines,
                                log_stream s) {
  std::vector<log_line> out;
  for (auto& l : lines)
    if (l.stream == s)
      out.push_back(l);
  return out;
}

/// Bytes of every file of the stream on disk.
std::uint64_t bytes_on_disk(const std::string& dir, log_stream s) {
  std::uint64_t total = 0;
  for (int g = 0; std::filesystem::exists(dir + "/" + log_file_name(s, g)); ++g)
    total += std::filesystem::file_size(dir + "/" + log_file_name(s, g));
  return total;
}

int rotated_files(const std::string& dir, log_stream s) {
  int n = 0;
  while (std::filesystem::exists(dir + "/" + log_file_name(s, n + 1)))
    ++n;
  return n;
}

} // namespace

// ================================================================ rules

TEST_CASE("log lines drop their line ends and show the last redraw",
          "[log_files]") {
  temp_dir dir;
  std::string text = "plain\nwindows\r\n10%\r20%\r30%\ntrailing redraw\r\r\n"
                     "\r\n\n  tabs\tand \x1b[31mansi\x1b[0m\n";
  write_stream(dir, log_stream::out, text, {{0, 1000}});
  auto page = read_logs(dir.path(), {}, {}, 100);
  REQUIRE(page);
  CHECK(texts(page->lines)
        == std::vector<std::string>{"plain", "windows", "30%",
                                    "trailing redraw", "", "",
                                    "  tabs\tand \x1b[31mansi\x1b[0m"});
  CHECK(page->lines[0].begin == 0);
  CHECK(page->lines[0].end == 6);
  CHECK(page->lines[1].begin == 6);
  CHECK(page->lines[1].end == 15);
  CHECK(page->lines[0].stream == log_stream::out);
  CHECK_FALSE(page->more);
  CHECK(page->cursor.out == text.size());
  CHECK(page->cursor.err == 0);
}

TEST_CASE("lines longer than the limit are cut into pieces", "[log_files]") {
  temp_dir dir;
  const auto max = max_line_bytes;
  std::string text;
  SECTION("at the limit, with the rest of the line as the last piece") {
    text = std::string(2 * max + 10, 'a') + "\n" + std::string(max, 'b')
           + "\r\nend\n";
    write_stream(dir, log_stream::out, text, {{0, 5}});
    auto page = read_logs(dir.path(), {}, {}, 100);
    REQUIRE(page);
    REQUIRE(page->lines.size() == 5);
    CHECK(page->lines[0].text == std::string(max, 'a'));
    CHECK(page->lines[0].end == max);
    CHECK(page->lines[1].begin == max);
    CHECK(page->lines[1].end == 2 * max);
    CHECK(page->lines[2].text == std::string(10, 'a'));
    CHECK(page->lines[2].begin == 2 * max);
    CHECK(page->lines[2].end == 2 * max + 11);
    // Exactly max bytes before a \r\n: one line.
    CHECK(page->lines[3].text == std::string(max, 'b'));
    CHECK(page->lines[4].text == "end");

    SECTION("resuming at a piece's end cuts the same pieces") {
      auto rest = read_logs(dir.path(), {}, {max, 0}, 100);
      REQUIRE(rest);
      REQUIRE(rest->lines.size() == 4);
      CHECK(rest->lines[0].end == 2 * max);
      CHECK(rest->lines[1].text == std::string(10, 'a'));
    }
  }
  SECTION("not inside a UTF-8 character") {
    text = std::string(max - 1, 'a') + "\xC3\xA9" + "b\n";
    write_stream(dir, log_stream::out, text);
    auto page = read_logs(dir.path(), {}, {}, 100);
    REQUIRE(page);
    REQUIRE(page->lines.size() == 2);
    CHECK(page->lines[0].text == std::string(max - 1, 'a'));
    CHECK(page->lines[1].text
          == "\xC3\xA9"
             "b");
  }
  SECTION("after a redraw, so a piece shows a whole progress bar") {
    // tqdm on a pipe: no newline for a long time.
    std::string bars;
    for (int i = 0; bars.size() < 3 * max; ++i)
      bars += "progress " + std::to_string(i) + "/999999\r";
    bars += "done\n";
    write_stream(dir, log_stream::out, bars);
    auto page = read_logs(dir.path(), {}, {}, 100);
    REQUIRE(page);
    REQUIRE(page->lines.size() >= 4);
    for (std::size_t i = 0; i + 1 < page->lines.size(); ++i) {
      INFO("piece " << i << ": " << page->lines[i].text);
      CHECK(page->lines[i].text.rfind("progress ", 0) == 0);
      CHECK(page->lines[i].text.back() == '9');
      CHECK(bars[page->lines[i].end - 1] == '\r');
    }
    CHECK(page->lines.back().text == "done");
    CHECK(page->lines.back().end == bars.size());
  }
}

TEST_CASE("invalid UTF-8 becomes U+FFFD and binary garbage stays readable",
          "[log_files]") {
  temp_dir dir;
  write_stream(dir, log_stream::out,
               "ok \xFF\xFE end\n"        // invalid bytes
               "cut \xE2\x82\n"           // a truncated euro sign
               "overlong \xC0\xAF\n"      // an overlong '/'
               "surrogate \xED\xA0\x80\n" // UTF-16 surrogate
               "valid \xE2\x82\xAC \xF0\x9F\x98\x80\n"
               "nul \x00 bell \x07\n"s);
  auto page = read_logs(dir.path(), {}, {}, 100);
  REQUIRE(page);
  CHECK(texts(page->lines)
        == std::vector<std::string>{
            "ok " + fffd + fffd + " end", "cut " + fffd,
            "overlong " + fffd + fffd, "surrogate " + fffd + fffd + fffd,
            "valid \xE2\x82\xAC \xF0\x9F\x98\x80", "nul \x00 bell \x07"s});

  SECTION("random bytes give lines JSON can carry") {
    temp_dir garbage;
    std::string bytes;
    std::uint32_t x = 12345;
    for (int i = 0; i < 300000; ++i) {
      x = x * 1664525 + 1013904223;
      bytes += static_cast<char>(x >> 24);
    }
    write_stream(garbage, log_stream::err, bytes);
    auto all = read_all(garbage.path(), {}, 500, true);
    REQUIRE(!all.empty());
    std::uint64_t at = 0;
    for (auto& l : all) {
      CHECK(l.stream == log_stream::err);
      CHECK(l.begin == at);
      CHECK(l.end > at);
      at = l.end;
      CHECK_NOTHROW(nlohmann::json(l.text).dump());
    }
    CHECK(at == bytes.size());
  }
}

TEST_CASE("an unterminated last line waits for its newline or the end of "
          "the run",
          "[log_files]") {
  temp_dir dir;
  write_stream(dir, log_stream::out, "one\ntwo\npart", {{0, 7}});
  auto page = read_logs(dir.path(), {}, {}, 100);
  REQUIRE(page);
  CHECK(texts(page->lines) == std::vector<std::string>{"one", "two"});
  CHECK(page->cursor.out == 8);
  CHECK_FALSE(page->more);
  auto tail = tail_logs(dir.path(), {}, 10);
  REQUIRE(tail);
  CHECK(texts(tail->lines) == std::vector<std::string>{"one", "two"});
  CHECK(tail->cursor.out == 8);

  auto ended = read_logs(dir.path(), {}, page->cursor, 100, true);
  REQUIRE(ended);
  CHECK(texts(ended->lines) == std::vector<std::string>{"part"});
  CHECK(ended->cursor.out == 12);
  auto ended_tail = tail_logs(dir.path(), {}, 1, true);
  REQUIRE(ended_tail);
  CHECK(texts(ended_tail->lines) == std::vector<std::string>{"part"});
  CHECK(ended_tail->cursor.out == 12);

  SECTION("a redraw without a newline shows its last state at the end") {
    write_stream(dir, log_stream::err, "50%\r100%\r");
    auto err = read_logs(dir.path(), only(log_stream::err), {}, 10, true);
    REQUIRE(err);
    CHECK(texts(err->lines) == std::vector<std::string>{"100%"});
  }
}

TEST_CASE("a line's time is when the shim read its last byte", "[log_files]") {
  temp_dir dir;
  // Batches at offsets 0 ("a\nb"), 3 ("b\nc\n") and 7 ("d\n"): the
  // index says when each was read.
  write_stream(dir, log_stream::out, "a\nbb\nc\nd\n",
               {{0, 1000}, {3, 2000}, {7, 3000}});
  write_stream(dir, log_stream::err, "e1\ne2\n", {{0, 2000}, {3, 2500}});
  auto page = read_logs(dir.path(), {}, {}, 100);
  REQUIRE(page);
  std::vector<std::pair<std::string, std::int64_t>> got;
  for (auto& l : page->lines)
    got.emplace_back(l.text, unix_ms(l));
  // Merged by time; stdout first on a tie.
  CHECK(got
        == std::vector<std::pair<std::string, std::int64_t>>{{"a", 1000},
                                                             {"bb", 2000},
                                                             {"c", 2000},
                                                             {"e1", 2000},
                                                             {"e2", 2500},
                                                             {"d", 3000}});
  CHECK(page->cursor == log_cursor{9, 6});

  SECTION("pages stop at the limit and say there is more") {
    auto first = read_logs(dir.path(), {}, {}, 3);
    REQUIRE(first);
    CHECK(texts(first->lines) == std::vector<std::string>{"a", "bb", "c"});
    CHECK(first->more);
    CHECK(first->cursor == log_cursor{7, 0});
    auto second = read_logs(dir.path(), {}, first->cursor, 3);
    REQUIRE(second);
    CHECK(texts(second->lines) == std::vector<std::string>{"e1", "e2", "d"});
    CHECK_FALSE(second->more);
  }
  SECTION("a file without an index takes the file's mtime") {
    temp_dir bare;
    write_stream(bare, log_stream::out, "x\n");
    struct stat st {};
    REQUIRE(::stat((bare / "stdout.log").c_str(), &st) == 0);
    auto lines = read_logs(bare.path(), {}, {}, 10);
    REQUIRE(lines);
    REQUIRE(lines->lines.size() == 1);
    CHECK(unix_ms(lines->lines[0])
          == st.st_mtim.tv_sec * 1000 + st.st_mtim.tv_nsec / 1000000);
  }
  SECTION("a missing run directory reads as empty") {
    auto none = read_logs(dir / "nope", {}, {}, 10);
    REQUIRE(none);
    CHECK(none->lines.empty());
    auto tail = tail_logs(dir / "nope", {}, 10);
    REQUIRE(tail);
    CHECK(tail->lines.empty());
    CHECK(tail->cursor == log_cursor{});
  }
}

TEST_CASE("cursors survive a round trip through their text and garbage is "
          "refused",
          "[log_files]") {
  for (auto c : {log_cursor{}, log_cursor{12, 0}, log_cursor{0, 7},
                 log_cursor{18446744073709551615ull, 42}}) {
    auto text = format_cursor(c);
    INFO(text);
    CHECK(parse_cursor(text) == c);
  }
  CHECK(format_cursor({5, 9}) == "5-9");
  for (auto bad : {"", "-", "1-", "-1", "1", "a-b", "1-2-3", "1 -2", "+1-2",
                   "1-0x2", "18446744073709551616-0", "1--2", " 1-2"}) {
    INFO(bad);
    CHECK_FALSE(parse_cursor(bad));
  }
}

TEST_CASE("index records are fixed-width text", "[log_files]") {
  log_index_record r{123456789, 1700000000123};
  auto text = format_log_index_record(r);
  CHECK(text == "00000000000123456789 1700000000123\n");
  CHECK(text.size() == log_index_record_size);
  CHECK(parse_log_index_record(text) == r);
  CHECK_FALSE(parse_log_index_record(text.substr(1)));
  CHECK_FALSE(parse_log_index_record("0000000000012345678x 1700000000123\n"));
  CHECK(log_file_name(log_stream::err, 0) == "stderr.log");
  CHECK(log_index_name(log_stream::out, 2) == "stdout.log.2.idx");
}

TEST_CASE("rotated files are read as one stream, also when a line is split "
          "across two",
          "[log_files]") {
  temp_dir dir;
  // Oldest first: .2 holds "first\nspl", .1 "it\nmiddle\n", current "last\n".
  write_stream(dir, log_stream::out, "first\nspl", {{100, 1}}, 2);
  write_stream(dir, log_stream::out, "it\nmiddle\n", {{109, 2}}, 1);
  write_stream(dir, log_stream::out, "last\n", {{119, 3}}, 0);
  auto all = read_all(dir.path(), {}, 1);
  CHECK(texts(all)
        == std::vector<std::string>{"first", "split", "middle", "last"});
  CHECK(all[1].end == 112);
  CHECK(unix_ms(all[1]) == 2);
  CHECK(all.back().end == 124);

  SECTION("a cursor older than the oldest file starts at the oldest line") {
    auto page = read_logs(dir.path(), {}, {3, 0}, 1);
    REQUIRE(page);
    CHECK(texts(page->lines) == std::vector<std::string>{"first"});
  }
  SECTION("the tail reaches back across files") {
    auto tail = tail_logs(dir.path(), {}, 3);
    REQUIRE(tail);
    CHECK(texts(tail->lines)
          == std::vector<std::string>{"split", "middle", "last"});
    CHECK(tail->cursor.out == 124);
  }
  SECTION("a follower reads them all and keeps the last few") {
    log_tailer aut{dir.path(), {}, 2};
    auto lines = aut.poll();
    CHECK(texts(lines)
          == std::vector<std::string>{"first", "split", "middle", "last"});
    CHECK(aut.cursor().out == 124);
    CHECK(texts({aut.recent().begin(), aut.recent().end()})
          == std::vector<std::string>{"middle", "last"});
    CHECK(aut.poll().empty());
  }
}

// ================================================================ shim

TEST_CASE("the shim refuses log flags it cannot honour", "[log_files][shim]") {
  temp_dir dir;
  for (auto flags : {std::vector<std::string>{"--log-keep", "0"},
                     std::vector<std::string>{"--log-keep", "x"},
                     std::vector<std::string>{"--log-max-bytes", "0"},
                     std::vector<std::string>{"--log-max-bytes", "1M"}}) {
    INFO(flags[0] << " " << flags[1]);
    auto shim = spawn_shim(dir.path(), flags, {"true"});
    auto line = status_line(shim);
    CHECK(line.rfind("exec_error ", 0) == 0);
    CHECK(line.find(flags[0]) != std::string::npos);
    CHECK(line.find("'" + flags[1] + "'") != std::string::npos);
    REQUIRE(shim.wait_exit(patience));
    CHECK(shim.exit_code() == 2);
  }
}

TEST_CASE("lines written fast through the shim with rotation arrive once and "
          "in order",
          "[log_files][shim][integration]") {
  temp_dir dir;
  const int count = 400000, rate = 200000;
  auto started = std::chrono::steady_clock::now();
  auto shim = spawn_shim(dir.path(),
                         {"--log-max-bytes", "1048576", "--log-keep", "50"},
                         writer(count, rate));
  REQUIRE(status_line(shim).rfind("started ", 0) == 0);

  // A follower polled while the shim writes and rotates under it.
  log_tailer follower{dir.path(), {}, 100};
  std::vector<log_line> followed;
  int polls = 0;
  while (!shim.wait_exit(0ms)) {
    auto lines = follower.poll(5000);
    followed.insert(followed.end(), lines.begin(), lines.end());
    ++polls;
    REQUIRE(std::chrono::steady_clock::now() - started < patience);
    if (lines.empty())
      std::this_thread::sleep_for(2ms);
  }
  auto seconds = std::chrono::duration<double>(std::chrono::steady_clock::now()
                                               - started)
                     .count();
  for (;;) {
    auto lines = follower.poll(5000, true);
    if (lines.empty())
      break;
    followed.insert(followed.end(), lines.begin(), lines.end());
  }
  WARN("the shim relayed " << count << " lines in " << seconds << " s ("
                           << static_cast<long>(count / seconds)
                           << " lines/s) through "
                           << rotated_files(dir.path(), log_stream::out)
                           << " rotations; the follower polled " << polls
                           << " times");

  CHECK(shim.exit_code() == 0);

  // The writer produced ~20 MB: 1 MiB files, none dropped.
  auto rotations = rotated_files(dir.path(), log_stream::out);
  REQUIRE(rotations >= 15);
  REQUIRE(rotations < 50);
  for (int g = 1; g <= rotations; ++g) {
    auto path = dir / log_file_name(log_stream::out, g);
    INFO(path);
    CHECK(std::filesystem::file_size(path) <= 1048576);
  }
  auto total = bytes_on_disk(dir.path(), log_stream::out);
  auto total_err = bytes_on_disk(dir.path(), log_stream::err);

  // Followed while written.
  check_sequence(of_stream(followed, log_stream::out), 0, count);
  CHECK(texts(of_stream(followed, log_stream::err)) == expected_err(0, count));
  CHECK(follower.cursor() == log_cursor{total, total_err});
  REQUIRE(follower.recent().size() == 100);
  CHECK(follower.recent().back().end == followed.back().end);

  // Read back in pages.
  log_cursor end;
  auto all = read_all(dir.path(), {}, 7000, true, &end);
  check_sequence(of_stream(all, log_stream::out), 0, count);
  CHECK(texts(of_stream(all, log_stream::err)) == expected_err(0, count));
  CHECK(end == log_cursor{total, total_err});
  for (std::size_t i = 1; i < all.size(); ++i)
    if (all[i].t < all[i - 1].t)
      FAIL("line " << i << " is older than the one before it");

  // Tailed across a rotation boundary: 30000 lines of 51 bytes span
  // more than one 1 MiB file.
  auto tail = tail_logs(dir.path(), only(log_stream::out), 30000);
  REQUIRE(tail);
  check_sequence(tail->lines, count - 30000, 30000);
  CHECK(tail->lines.front().end
        < total - std::filesystem::file_size(dir / "stdout.log"));
  // The stream not asked for is at its end too.
  CHECK(tail->cursor == log_cursor{total, total_err});
}

TEST_CASE("the shim rotates at a line boundary when the batch has one",
          "[log_files][shim][integration]") {
  temp_dir dir;
  // One write per line: every batch ends at a newline, so only a cut
  // inside a batch could end a file mid-line.
  auto shim = spawn_shim(
      dir.path(), {"--log-max-bytes", "1000", "--log-keep", "1000"},
      {"python3", "-c",
       "import os\nfor i in range(20000): os.write(1, b'line %d\\n' % i)"});
  REQUIRE(status_line(shim).rfind("started ", 0) == 0);
  REQUIRE(shim.wait_exit(patience));
  auto rotations = rotated_files(dir.path(), log_stream::out);
  REQUIRE(rotations > 100);
  for (int g = 1; g <= rotations; ++g) {
    auto text = read_small_file(dir / log_file_name(log_stream::out, g));
    REQUIRE(text);
    INFO("generation " << g);
    CHECK(text->size() <= 1000);
    REQUIRE(!text->empty());
    CHECK(text->back() == '\n');
  }
  auto all = read_all(dir.path(), {}, 5000);
  REQUIRE(all.size() == 20000);
  CHECK(all[12345].text == "line 12345");
}

TEST_CASE("a restarted run's logs go on where the last attempt left them",
          "[log_files][shim][integration]") {
  temp_dir dir;
  std::vector<std::string> flags{"--log-max-bytes", "65536", "--log-keep",
                                 "100"};
  run_writer(dir.path(), flags, 5000, "one");
  auto end_one = bytes_on_disk(dir.path(), log_stream::out);
  auto files_one = rotated_files(dir.path(), log_stream::out);
  REQUIRE(files_one >= 2);
  run_writer(dir.path(), flags, 5000, "two");
  REQUIRE(rotated_files(dir.path(), log_stream::out) > files_one);

  auto all = of_stream(read_all(dir.path(), {}, 999), log_stream::out);
  REQUIRE(all.size() == 10000);
  check_sequence({all.begin(), all.begin() + 5000}, 0, 5000, "one");
  check_sequence({all.begin() + 5000, all.end()}, 0, 5000, "two");
  CHECK(all[4999].end == end_one);
  CHECK(all.back().end == bytes_on_disk(dir.path(), log_stream::out));

  // Every index record's offset lies in its own file, files follow each
  // other, offsets never go back.
  std::uint64_t base = 0, last = 0;
  for (int g = rotated_files(dir.path(), log_stream::out); g >= 0; --g) {
    auto idx = read_small_file(dir / log_index_name(log_stream::out, g));
    REQUIRE(idx);
    REQUIRE(idx->size() % log_index_record_size == 0);
    auto size
        = std::filesystem::file_size(dir / log_file_name(log_stream::out, g));
    for (std::size_t k = 0; k < idx->size(); k += log_index_record_size) {
      auto r = parse_log_index_record(idx->substr(k, log_index_record_size));
      REQUIRE(r);
      if (k == 0)
        CHECK(r->offset == base);
      CHECK(r->offset >= last);
      CHECK(r->offset < base + size);
      last = r->offset;
    }
    base += size;
  }
  auto cont = current_log_base(dir.path(), log_stream::out);
  REQUIRE(cont);
  CHECK(*cont + std::filesystem::file_size(dir / "stdout.log") == base);
}

TEST_CASE("with few files kept, readers start at the oldest line on disk",
          "[log_files][shim][integration]") {
  temp_dir dir;
  run_writer(dir.path(), {"--log-max-bytes", "65536", "--log-keep", "2"},
             20000);
  CHECK(rotated_files(dir.path(), log_stream::out) == 2);
  CHECK_FALSE(std::filesystem::exists(dir / "stdout.log.3"));
  CHECK_FALSE(std::filesystem::exists(dir / "stdout.log.3.idx"));
  auto out = of_stream(read_all(dir.path(), {}, 1000), log_stream::out);
  auto tail = tail_logs(dir.path(), only(log_stream::out), 1000000);
  REQUIRE(tail);
  CHECK(texts(tail->lines) == texts(out));

  // The oldest file may begin inside a line: its rest is a line of its own.
  REQUIRE(out.size() > 1);
  if (out.front().text.size() != 50)
    out.erase(out.begin());
  int first = std::stoi(out.front().text.substr(5, 8));
  CHECK(first > 0);
  check_sequence(out, first, 20000 - first);
}
