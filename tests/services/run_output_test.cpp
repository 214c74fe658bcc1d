// The run actor's view of a run's output and artifacts, on real files.

#include "services/artifact_watch.hpp"
#include "services/event_log.hpp"
#include "services/run_output.hpp"

#include "tests/services/metrics_fixture.hpp"
#include "tests/temp_dir.hpp"

#include <sys/stat.h>

#include <filesystem>
#include <fstream>

#include <catch2/catch.hpp>

using namespace corral;
using corral::test::append;
using corral::test::sb3_table;
using corral::test::temp_dir;

TEST_CASE("run output feeds each stream's lines to its own parser",
          "[run_output]") {
  temp_dir dir;
  progress_spec p;
  p.format = "sb3";
  p.counter = "time/total_timesteps";
  p.total = 1000;
  auto out = run_output::make(dir.path(), p, dir.path());
  REQUIRE(out);
  auto& aut = **out;
  aut.follow();
  CHECK(aut.poll(0) == 0); // no files yet: nothing, no error

  // A table on stdout with a stderr warning in the middle of it: the
  // streams are parsed apart, so the table stays whole.
  append(dir / "stdout.log", "-----------------------------\n"
                             "| time/              |      |\n");
  append(dir / "stderr.log", "UserWarning: something\n");
  append(dir / "stdout.log", "|    total_timesteps | 100  |\n"
                             "-----------------------------\n");
  CHECK(aut.poll(10) == 5);
  CHECK(aut.latest_metrics()["time/total_timesteps"] == 100);
  append(dir / "stdout.log", sb3_table(300));
  CHECK(aut.poll(20) == 4);
  auto est = aut.estimate(20);
  REQUIRE(est.fraction);
  CHECK(*est.fraction == Approx(0.3));
  // 200 steps in 10 active seconds: 700 left take 35 s.
  REQUIRE(est.eta_s);
  CHECK(*est.eta_s == Approx(35).margin(0.01));
  auto m = aut.metrics_json();
  CHECK(m["series"]["time/total_timesteps"].size() == 2);
}

TEST_CASE("run output reads a flood in slices of its budget", "[run_output]") {
  temp_dir dir;
  auto out = run_output::make(dir.path(), progress_spec{}, dir.path());
  REQUIRE(out);
  auto& aut = **out;
  aut.follow();
  std::string text;
  for (int i = 0; i < 25000; ++i)
    text += "l" + std::to_string(i) + "\n";
  append(dir / "stdout.log", text);
  // Whole batches until the budget is reached, then the rest later.
  CHECK(aut.poll(0, false, 15000) == 20000);
  CHECK(aut.poll(0, false, 15000) == 5000);
  CHECK(aut.poll(0, false, 15000) == 0);
}

TEST_CASE("run output answers tails from memory and pages from files",
          "[run_output]") {
  temp_dir dir;
  auto out = run_output::make(dir.path(), progress_spec{}, dir.path());
  REQUIRE(out);
  auto& aut = **out;
  std::string text;
  for (int i = 0; i < 50; ++i)
    text += "line " + std::to_string(i) + "\n";
  append(dir / "stdout.log", text);
  append(dir / "stderr.log", "oops\n");

  // Before following (a queued run): the files still answer.
  log_query q;
  q.tail = 3;
  auto tail = aut.query(q, false);
  REQUIRE(tail);
  REQUIRE(tail->lines.size() == 3);
  // Merged by time: stderr was written last.
  CHECK(tail->lines[1].text == "line 49");
  CHECK(tail->lines[2].text == "oops");

  aut.follow();
  aut.poll(0);
  tail = aut.query(q, false);
  REQUIRE(tail);
  REQUIRE(tail->lines.size() == 3);
  CHECK(tail->lines[0].stream == log_stream::out);
  CHECK(tail->lines[1].text == "line 49");
  CHECK(tail->lines[2].stream == log_stream::err);
  CHECK(tail->cursor.out == text.size());
  CHECK(tail->cursor.err == 5);
  CHECK_FALSE(tail->ended);

  q.streams = {false, true};
  tail = aut.query(q, true);
  REQUIRE(tail);
  REQUIRE(tail->lines.size() == 1);
  CHECK(tail->lines[0].text == "oops");
  CHECK(tail->ended);

  // Pages from a cursor: limit, then the rest, then nothing and ended.
  log_query page;
  page.streams = {true, false};
  page.since = log_cursor{};
  page.limit = 20;
  auto p1 = aut.query(page, true);
  REQUIRE(p1);
  CHECK(p1->lines.size() == 20);
  CHECK_FALSE(p1->ended);
  page.since = p1->cursor;
  page.limit = 1000;
  auto p2 = aut.query(page, true);
  REQUIRE(p2);
  CHECK(p2->lines.size() == 30);
  CHECK(p2->lines.back().text == "line 49");
  CHECK(p2->ended);

  // has_news tells a waiting follower whether to look.
  CHECK(aut.has_news(page)); // still at p1's cursor
  page.since = p2->cursor;
  CHECK_FALSE(aut.has_news(page));
  append(dir / "stdout.log", "more\n");
  aut.poll(0);
  CHECK(aut.has_news(page));
  page.streams = {false, true};
  page.since = log_cursor{0, 5};
  CHECK_FALSE(aut.has_news(page)); // news on stdout only
}

TEST_CASE("artifact watch names the directories to watch and reports news",
          "[run_output][artifacts]") {
  temp_dir dir;
  artifacts_spec spec;
  spec.checkpoints = "ckpt/run-1/*.pt";
  spec.videos = "videos/**/*.mp4";
  artifact_watch aut(dir.path(), spec);
  CHECK(aut.enabled());
  CHECK_FALSE(artifact_watch(dir.path(), artifacts_spec{}).enabled());

  // Nothing exists yet: watch the cwd, to see the directories appear.
  CHECK(aut.directories() == std::vector<std::string>{dir.path()});
  std::filesystem::create_directories(dir / "ckpt/run-1");
  std::filesystem::create_directories(dir / "videos");
  auto dirs = aut.directories();
  CHECK(dirs == std::vector<std::string>{dir / "ckpt/run-1", dir / "videos"});

  append(dir / "ckpt/run-1/old.pt", "x");
  CHECK(aut.rescan().empty()); // the first scan is the baseline
  CHECK(aut.current().size() == 1);

  append(dir / "ckpt/run-1/new.pt", "y");
  std::filesystem::create_directories(dir / "videos/ep/1");
  append(dir / "videos/ep/1/a.mp4", "v");
  auto news = aut.rescan();
  REQUIRE(news.size() == 2);
  CHECK(news[0].file.name == "ckpt/run-1/new.pt");
  CHECK(news[0].is_new);
  CHECK(news[1].file.name == "videos/ep/1/a.mp4");
  CHECK(aut.rescan().empty());

  // A checkpoint rewritten in place is news again.
  append(dir / "ckpt/run-1/old.pt", "more");
  news = aut.rescan();
  REQUIRE(news.size() == 1);
  CHECK(news[0].file.name == "ckpt/run-1/old.pt");
  CHECK(news[0].file.size == 5);
  CHECK_FALSE(news[0].is_new);
}

TEST_CASE("a seeded artifact watch reports what changed while no daemon ran",
          "[run_output][artifacts]") {
  temp_dir dir;
  artifacts_spec spec;
  spec.checkpoints = "ckpt/*.pt";
  std::filesystem::create_directories(dir / "ckpt");
  append(dir / "ckpt/a.pt", "x");
  append(dir / "ckpt/b.pt", "y");
  artifact_watch before(dir.path(), spec);
  before.rescan();
  auto known = before.current();

  // The daemon is gone; the trainer writes c.pt and rewrites b.pt.
  append(dir / "ckpt/c.pt", "z");
  append(dir / "ckpt/b.pt", "yy");
  artifact_watch aut(dir.path(), spec);
  aut.seed(known);
  auto news = aut.rescan();
  REQUIRE(news.size() == 2);
  CHECK(news[0].file.name == "ckpt/b.pt");
  CHECK_FALSE(news[0].is_new);
  CHECK(news[1].file.name == "ckpt/c.pt");
  CHECK(news[1].is_new);
  CHECK(aut.rescan().empty());
}

TEST_CASE("an event log numbers events and keeps the newest",
          "[run_output][events]") {
  event_log aut(3);
  CHECK(aut.last() == 0);
  CHECK(aut.after(std::nullopt).empty());
  for (int i = 0; i < 5; ++i) {
    run_event e;
    e.message = "e" + std::to_string(i);
    CHECK(aut.push(e).seq == static_cast<std::uint64_t>(i + 1));
  }
  CHECK(aut.last() == 5);
  auto all = aut.after(std::nullopt);
  REQUIRE(all.size() == 3); // the two oldest were dropped
  CHECK(all[0].seq == 3);
  CHECK(all[2].message == "e4");
  auto later = aut.after(4);
  REQUIRE(later.size() == 1);
  CHECK(later[0].seq == 5);
  CHECK(aut.after(5).empty());
}
