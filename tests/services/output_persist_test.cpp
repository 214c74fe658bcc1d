// What a run's output knows, saved by one daemon and restored by the next:
// the metrics store, the log cursor, the csv follower.

#include "services/log_index.hpp"
#include "services/metrics.hpp"
#include "services/run_output.hpp"

#include "tests/services/metrics_fixture.hpp"
#include "tests/temp_dir.hpp"

#include <cmath>
#include <fstream>
#include <limits>
#include <sstream>

#include <catch2/catch.hpp>

using namespace corral;
using corral::test::append;
using corral::test::metrics_fixture;
using corral::test::sb3_table;
using corral::test::temp_dir;
using nlohmann::json;

namespace {

constexpr double nan_v = std::numeric_limits<double>::quiet_NaN();
constexpr double inf_v = std::numeric_limits<double>::infinity();

/// The lines of `text`, each with its newline.
std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in{text};
  for (std::string line; std::getline(in, line);)
    out.push_back(line + "\n");
  return out;
}

std::chrono::system_clock::time_point at_ms(std::int64_t ms) {
  return std::chrono::system_clock::time_point{std::chrono::milliseconds{ms}};
}

/// As the daemon would keep it: through text.
json through_text(const json& j) {
  return json::parse(j.dump());
}

/// Writes a run's logs as the shim does: the index record of each batch
/// first, then the batch; every batch a quarter second after the last, so
/// line times do not depend on when a test reads them.
struct shim_logs {
  std::string dir;
  std::uint64_t end[2] = {0, 0};
  std::int64_t ms = 1'700'000'000'000;

  void write(log_stream s, const std::string& text) {
    auto& at = end[static_cast<int>(s)];
    append(dir + "/" + log_index_name(s, 0), format_log_index_record({at, ms}));
    append(dir + "/" + log_file_name(s, 0), text);
    at += text.size();
    ms += 250;
  }
};

progress_spec sb3_spec() {
  progress_spec p;
  p.format = "sb3";
  p.counter = "time/total_timesteps";
  p.total = 10000;
  return p;
}

std::unique_ptr<run_output> make_output(const std::string& dir,
                                        const progress_spec& p,
                                        const json* resume = nullptr) {
  auto out = run_output::make(dir, p, dir, resume);
  REQUIRE(out);
  (*out)->follow();
  return std::move(*out);
}

/// Records with awkward numbers: non-finite values, subnormals, -0, the
/// largest double, keys that come and go.
void add_records(metrics_store& s, int from, int to) {
  for (int i = from; i < to; ++i) {
    metric_record r{{"step", 100.0 * i}, {"loss", 1.0 / (i + 3)}};
    if (i % 7 == 3)
      r["loss"] = nan_v;
    if (i % 11 == 5)
      r["reward"] = i % 2 != 0 ? inf_v : -inf_v;
    if (i % 5 == 0)
      r["tiny"] = 4.9e-324 * (i + 1);
    if (i == 4)
      r["edge"] = -0.0;
    if (i == 9)
      r["edge"] = std::numeric_limits<double>::max();
    // Uneven active time, with a long pause in the middle.
    s.add(r, at_ms(1'700'000'000'123 + i * 1037),
          0.37 * i + (i > 20 ? 13.1 : 0));
  }
}

void check_same_estimate(const metrics_store& a, const metrics_store& b,
                         double active_now) {
  INFO("active_now " << active_now);
  auto x = a.estimate(active_now);
  auto y = b.estimate(active_now);
  CHECK(x.fraction == y.fraction);
  CHECK(x.eta_s == y.eta_s);
}

std::unique_ptr<metrics_store> restored(const json& saved,
                                        std::size_t max_points) {
  auto out
      = metrics_store::restore(through_text(saved), "step", 1e5, max_points);
  REQUIRE(out);
  return std::move(*out);
}

std::string restore_error(const json& saved) {
  auto out = metrics_store::restore(saved, "step", 1e5);
  REQUIRE_FALSE(out);
  return out.error().message;
}

std::string resume_error(const json& saved, const progress_spec& p) {
  temp_dir dir;
  auto out = run_output::make(dir.path(), p, dir.path(), &saved);
  REQUIRE_FALSE(out);
  return out.error().message;
}

} // namespace

// --------------------------------------------------------------- store --

TEST_CASE("a restored store equals the saved one to the last bit",
          "[persist][metrics]") {
  metrics_store aut{"step", 1e5, 10};
  add_records(aut, 0, 57); // thinned: 57 records, 10 points
  auto saved = aut.save();
  CHECK(saved["v"] == 1);
  CHECK(saved["series"]["step"]["stride"].get<int>() > 1);
  auto copy = restored(saved, 10);

  CHECK(copy->save().dump() == saved.dump());
  CHECK(copy->latest_json() == aut.latest_json());
  CHECK(copy->series_json() == aut.series_json());
  for (double now : {0.0, 20.0, 34.2, 500.0})
    check_same_estimate(aut, *copy, now);
  REQUIRE(aut.estimate(40).eta_s); // the estimate is there to compare

  // What JSON's null would have lost is there.
  CHECK(saved["latest"]["edge"] == std::numeric_limits<double>::max());
  auto nans = 0;
  for (const auto& p : saved["series"]["loss"]["kept"])
    nans += p[2] == "nan";
  CHECK(nans > 0);
  auto edge = copy->save()["series"]["edge"]["kept"][0][2].get<double>();
  CHECK(edge == 0);
  CHECK(std::signbit(edge));

  // Both go on the same way, thinning included.
  add_records(aut, 57, 300);
  add_records(*copy, 57, 300);
  CHECK(copy->save().dump() == aut.save().dump());
  check_same_estimate(aut, *copy, 200);
}

TEST_CASE("an empty store and one without counter restore too",
          "[persist][metrics]") {
  metrics_store empty{"step", 1e5};
  auto copy = restored(empty.save(), 1000);
  CHECK(copy->empty());
  CHECK(copy->save() == empty.save());

  metrics_store no_counter{"", std::nullopt};
  no_counter.add({{"loss", 0.5}}, at_ms(1000), 1);
  auto saved = no_counter.save();
  auto back = metrics_store::restore(through_text(saved), "", std::nullopt);
  REQUIRE(back);
  CHECK((*back)->series_json() == no_counter.series_json());
  CHECK((*back)->save() == saved);
}

TEST_CASE("a store restored with fewer points thins as if built with them",
          "[persist][metrics]") {
  metrics_store big{"step", 1e5, 100};
  add_records(big, 0, 333);
  metrics_store small{"step", 1e5, 10};
  add_records(small, 0, 333);
  auto copy = restored(big.save(), 10);
  CHECK(copy->save().dump() == small.save().dump());
  add_records(*copy, 333, 400);
  add_records(small, 333, 400);
  CHECK(copy->save().dump() == small.save().dump());
}

TEST_CASE("a malformed or unknown store state is refused with its reason",
          "[persist][metrics]") {
  metrics_store aut{"step", 1e5, 10};
  add_records(aut, 0, 40);
  const auto good = through_text(aut.save());
  REQUIRE(metrics_store::restore(good, "step", 1e5));

  CHECK_THAT(restore_error(json::array()),
             Catch::Contains("metrics: expected an object"));
  CHECK_THAT(restore_error(json::object()), Catch::Contains("metrics.v"));
  auto j = good;
  j["v"] = 2;
  CHECK_THAT(restore_error(j), Catch::Contains("unknown version 2"));
  j["v"] = "1";
  CHECK_THAT(restore_error(j), Catch::Contains("unknown version \"1\""));

  j = good;
  j.erase("samples");
  CHECK_THAT(restore_error(j), Catch::Contains("metrics.samples: missing"));
  j = good;
  j["latest"]["loss"] = "lots";
  CHECK_THAT(restore_error(j),
             Catch::Contains("metrics.latest['loss']: expected a number"));
  j = good;
  j["latest"] = json::array();
  CHECK_THAT(restore_error(j), Catch::Contains("latest: expected an object"));
  j = good;
  j["series"]["step"]["stride"] = 0;
  CHECK_THAT(restore_error(j), Catch::Contains("series['step'].stride"));
  j["series"]["step"]["stride"] = 3;
  CHECK_THAT(restore_error(j), Catch::Contains("power of two"));
  j["series"]["step"]["stride"] = -4;
  CHECK_THAT(restore_error(j), Catch::Contains("non-negative integer"));
  j = good;
  j["series"]["step"]["seen"] = 1000;
  CHECK_THAT(restore_error(j), Catch::Contains("points kept"));
  j = good;
  j["series"]["step"]["kept"][1] = json::array({1, 2});
  CHECK_THAT(restore_error(j), Catch::Contains("kept[1]: expected [t, step"));
  j = good;
  REQUIRE(j["series"]["step"]["seen"] == 40); // 39 is off stride 8
  REQUIRE(j["series"]["step"]["stride"] == 8);
  j["series"]["step"]["newest"] = nullptr;
  CHECK_THAT(restore_error(j),
             Catch::Contains("series['step'].newest: missing"));
  j = good;
  REQUIRE(j["samples"].size() >= 2);
  std::swap(j["samples"][0], j["samples"][1]);
  CHECK_THAT(restore_error(j), Catch::Contains("samples[1]: not after"));
  j = good;
  j["samples"] = json::array();
  for (int i = 0; i < 21; ++i)
    j["samples"].push_back({i, i});
  CHECK_THAT(restore_error(j), Catch::Contains("samples: more than 20"));
  j = good;
  j["counter_now"] = json::object();
  CHECK_THAT(restore_error(j), Catch::Contains("counter_now"));
}

// ----------------------------------------------------------- run output --

TEST_CASE("a daemon restarted after every line reads an sb3 log as if it "
          "never stopped",
          "[persist][run_output]") {
  temp_dir dir;
  shim_logs logs{dir.path()};
  auto spec = sb3_spec();
  auto lines = lines_of(metrics_fixture("sb3_ppo_cartpole.txt"));
  auto ref = make_output(dir.path(), spec); // never stops
  auto aut = make_output(dir.path(), spec);
  bool saved_mid_table = false;
  for (std::size_t i = 0; i < lines.size(); ++i) {
    INFO("after line " << i + 1 << ": " << lines[i]);
    logs.write(log_stream::out, lines[i]);
    if (i % 9 == 4) // a warning while a table is printed
      logs.write(log_stream::err, "UserWarning: " + std::to_string(i) + "\n");
    auto active = static_cast<double>(i);
    CHECK(ref->poll(active) > 0);
    aut->poll(active);
    auto saved = through_text(aut->save());
    REQUIRE(saved == through_text(ref->save()));
    auto cursor = parse_cursor(saved["cursor"].get<std::string>());
    REQUIRE(cursor);
    CHECK(cursor->err == logs.end[1]); // stderr holds no table
    saved_mid_table = saved_mid_table || cursor->out < logs.end[0];
    aut = make_output(dir.path(), spec, &saved);
  }
  CHECK(saved_mid_table);
  aut->poll(100);
  ref->poll(100);
  CHECK(aut->save() == ref->save());
  CHECK(aut->save()["cursor"] == format_cursor({logs.end[0], logs.end[1]}));
  auto a = aut->estimate(100), b = ref->estimate(100);
  CHECK(a.fraction == b.fraction);
  CHECK(a.eta_s == b.eta_s);

  // Each table made one record, none twice: as read in one go.
  auto once = make_output(dir.path(), spec);
  once->poll(1);
  CHECK(aut->metrics_json() == once->metrics_json());
  auto steps = aut->metrics_json()["series"]["time/total_timesteps"];
  REQUIRE(steps.size() == 4);
  CHECK(steps[3][2] == 8192);
  CHECK(aut->metrics_json()["series"]["train/loss"].size() == 3);
}

TEST_CASE("a save in the middle of an sb3 table resumes at the table's start",
          "[persist][run_output]") {
  temp_dir dir;
  shim_logs logs{dir.path()};
  auto spec = sb3_spec();
  auto aut = make_output(dir.path(), spec);
  CHECK(aut->save()["cursor"] == "0-0");
  std::string before = "Using cpu device\n" + sb3_table(100);
  logs.write(log_stream::out, before);
  logs.write(log_stream::out, "-----------------------------\n"
                              "| time/              |      |\n");
  logs.write(log_stream::err, "warning\n");
  CHECK(aut->poll(10) == 8);
  auto saved = through_text(aut->save());
  CHECK(saved["cursor"] == format_cursor({before.size(), 8}));

  auto resumed = make_output(dir.path(), spec, &saved);
  CHECK(resumed->latest_metrics()["time/total_timesteps"] == 100);
  logs.write(log_stream::out, "|    total_timesteps | 200  |\n"
                              "-----------------------------\n");
  // The two lines of the open table again, and the two that close it.
  CHECK(resumed->poll(20) == 4);
  CHECK(resumed->latest_metrics()["time/total_timesteps"] == 200);
  CHECK(resumed->metrics_json()["series"]["time/total_timesteps"].size() == 2);
  auto est = resumed->estimate(20);
  REQUIRE(est.eta_s); // 100 steps in 10 s: 9800 left take 980 s
  CHECK(*est.eta_s == Approx(980));
  CHECK(resumed->save()["cursor"] == format_cursor({logs.end[0], logs.end[1]}));
}

TEST_CASE("a resumed run output answers what it has not read from the files",
          "[persist][run_output]") {
  temp_dir dir;
  shim_logs logs{dir.path()};
  std::string text;
  for (int i = 0; i < 50; ++i)
    text += "line " + std::to_string(i) + "\n";
  logs.write(log_stream::out, text);
  auto first = make_output(dir.path(), progress_spec{});
  CHECK(first->poll(0) == 50);
  auto saved = through_text(first->save());
  CHECK(saved["cursor"] == format_cursor({text.size(), 0}));
  CHECK_FALSE(saved.contains("csv"));

  auto aut = make_output(dir.path(), progress_spec{}, &saved);
  logs.write(log_stream::out, "more\n");
  CHECK(aut->poll(0) == 1);
  // Memory holds one line, fewer than its bound, but not every line.
  log_query q;
  q.tail = 3;
  auto tail = aut->query(q, false);
  REQUIRE(tail);
  REQUIRE(tail->lines.size() == 3);
  CHECK(tail->lines[0].text == "line 48");
  CHECK(tail->lines[2].text == "more");
  CHECK(tail->cursor.out == text.size() + 5);
  q.tail = 1;
  tail = aut->query(q, false);
  REQUIRE(tail);
  REQUIRE(tail->lines.size() == 1);
  CHECK(tail->lines[0].text == "more");

  log_query page;
  page.since = log_cursor{text.size(), 0};
  CHECK(aut->has_news(page));
  page.since = log_cursor{text.size() + 5, 0};
  CHECK_FALSE(aut->has_news(page));
}

TEST_CASE("a csv progress file resumes after the rows already read",
          "[persist][run_output]") {
  temp_dir dir;
  progress_spec spec;
  spec.format = "csv";
  spec.file = "progress.csv";
  spec.counter = "time/total_timesteps";
  spec.total = 10000;
  auto csv = lines_of(metrics_fixture("sb3_progress.csv"));
  REQUIRE(csv.size() == 4);
  auto ref = make_output(dir.path(), spec);
  auto aut = make_output(dir.path(), spec);

  // Not there yet: the state says so, and the file is read from the top.
  auto saved = through_text(aut->save());
  CHECK(saved["csv"] == json{{"opened", false}});
  aut = make_output(dir.path(), spec, &saved);

  auto path = dir / "progress.csv";
  append(path, csv[0] + csv[1] + csv[2].substr(0, 5)); // a partial row
  ref->poll_csv(10);
  aut->poll_csv(10);
  saved = through_text(aut->save());
  CHECK(saved["csv"]["offset"] == csv[0].size() + csv[1].size());
  CHECK(saved["csv"]["header"] == csv[0].substr(0, csv[0].size() - 1));
  aut = make_output(dir.path(), spec, &saved);
  CHECK(aut->latest_metrics()["time/total_timesteps"] == 2048);

  append(path, csv[2].substr(5) + csv[3]);
  ref->poll_csv(20);
  aut->poll_csv(20);
  // CSV rows are timed when read: compare all but the times.
  auto without_times = [](json series) {
    for (auto& points : series)
      for (auto& p : points)
        p[0] = nullptr;
    return series;
  };
  CHECK(aut->latest_metrics() == ref->latest_metrics());
  CHECK(without_times(aut->metrics_json()["series"])
        == without_times(ref->metrics_json()["series"]));
  CHECK(aut->metrics_json()["series"]["time/total_timesteps"].size() == 3);
  CHECK(aut->save()["metrics"]["samples"] == ref->save()["metrics"]["samples"]);
  CHECK(aut->save()["csv"] == ref->save()["csv"]);
  auto a = aut->estimate(25), b = ref->estimate(25);
  CHECK(a.fraction == b.fraction);
  CHECK(a.eta_s == b.eta_s);

  // While the daemon is down, SB3 widens the header in place: only the
  // new row is read.
  saved = through_text(aut->save());
  std::fstream{path, std::ios::in | std::ios::out | std::ios::binary}
      << "time/iterations,rollout/ep_rew_mean,time/fps,time/total_timesteps,"
         "train/loss,rollout/ep_len_mean,eval/mean_reward\n"
         "1,,1302,2048,,,\n2,,1284,4096,6.04,,\n3,22.4,1207,6144,12.6,22.4,\n"
         "4,31.6,1155,8192,20.1,31.6,127\n";
  aut = make_output(dir.path(), spec, &saved);
  aut->poll_csv(30);
  auto steps = aut->metrics_json()["series"]["time/total_timesteps"];
  REQUIRE(steps.size() == 4);
  CHECK(steps[3][2] == 8192);
  CHECK(aut->latest_metrics()["eval/mean_reward"] == 127);
}

TEST_CASE("a csv header that is not utf-8 survives the save",
          "[persist][metrics]") {
  temp_dir dir;
  auto path = dir / "p.csv";
  append(path, "a\xff,b\n1,2\n");
  csv_follower aut{path};
  CHECK(aut.poll().size() == 1);
  auto saved = through_text(aut.save());
  CHECK(saved["header_hex"] == "61ff2c62");
  csv_follower resumed{path};
  REQUIRE(resumed.restore(saved));
  append(path, "3,4\n");
  CHECK(resumed.poll() == std::vector<metric_record>{{{"a\xff", 3}, {"b", 4}}});
  saved["header_hex"] = "6";
  auto refused = resumed.restore(saved);
  REQUIRE_FALSE(refused);
  CHECK_THAT(refused.error().message, Catch::Contains("csv.header_hex"));
}

TEST_CASE("a malformed or unknown run output state is refused with its reason",
          "[persist][run_output]") {
  auto spec = sb3_spec();
  json good;
  {
    temp_dir dir;
    good = through_text(make_output(dir.path(), spec)->save());
  }
  CHECK_THAT(resume_error(json::array(), spec),
             Catch::Contains("cannot resume run output: expected an object"));
  auto j = good;
  j["v"] = 7;
  CHECK_THAT(resume_error(j, spec), Catch::Contains("unknown version 7"));
  j.erase("v");
  CHECK_THAT(resume_error(j, spec), Catch::Contains("v: missing"));
  j = good;
  j["cursor"] = "12";
  CHECK_THAT(resume_error(j, spec), Catch::Contains("cursor: expected"));
  j["cursor"] = 12;
  CHECK_THAT(resume_error(j, spec), Catch::Contains("cursor: expected"));
  j = good;
  j.erase("metrics");
  CHECK_THAT(resume_error(j, spec), Catch::Contains("metrics: missing"));
  j = good;
  j["metrics"]["v"] = 3;
  CHECK_THAT(resume_error(j, spec),
             Catch::Contains("metrics: unknown version 3"));

  progress_spec csv;
  csv.format = "csv";
  csv.file = "p.csv";
  CHECK_THAT(resume_error(good, csv), Catch::Contains("csv: missing"));
  j = good;
  j["csv"] = {{"opened", true}, {"dev", 1}};
  CHECK_THAT(resume_error(j, csv), Catch::Contains("csv.ino: missing"));
  j["csv"] = {{"opened", "yes"}};
  CHECK_THAT(resume_error(j, csv), Catch::Contains("csv.opened"));
}
