#include "services/metrics.hpp"

#include "tests/services/metrics_fixture.hpp"
#include "tests/temp_dir.hpp"

#include <catch2/catch.hpp>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

using namespace corral;
using corral::test::metrics_fixture;

namespace {

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in{text};
  for (std::string line; std::getline(in, line);)
    out.push_back(line);
  return out;
}

std::unique_ptr<metrics_parser> parser_for(progress_spec spec) {
  auto made = make_metrics_parser(spec);
  REQUIRE(made);
  REQUIRE(*made);
  return std::move(*made);
}

std::unique_ptr<metrics_parser> parser_for(const std::string& format) {
  return parser_for(progress_spec{format, "", {}, "", ""});
}

std::vector<metric_record> feed_all(metrics_parser& aut,
                                    const std::vector<std::string>& lines) {
  std::vector<metric_record> out;
  for (const auto& line : lines)
    for (auto& r : aut.feed(line))
      out.push_back(std::move(r));
  return out;
}

std::vector<metric_record> parse_fixture(const std::string& format,
                                         const std::string& name) {
  auto aut = parser_for(format);
  return feed_all(*aut, lines_of(metrics_fixture(name)));
}

/// The one record a single line gives, or an empty one.
metric_record parse_line(const std::string& format, const std::string& line) {
  auto aut = parser_for(format);
  auto out = aut->feed(line);
  REQUIRE(out.size() <= 1);
  return out.empty() ? metric_record{} : out.front();
}

void append(const std::string& path, const std::string& text) {
  std::ofstream{path, std::ios::app | std::ios::binary} << text;
}

void overwrite(const std::string& path, const std::string& text) {
  std::ofstream{path, std::ios::trunc | std::ios::binary} << text;
}

std::chrono::system_clock::time_point at_ms(std::int64_t ms) {
  return std::chrono::system_clock::time_point{std::chrono::milliseconds{ms}};
}

} // namespace

// ---------------------------------------------------------------- sb3 --

TEST_CASE("sb3 tables give one record per table with section prefixes",
          "[metrics]") {
  auto records = parse_fixture("sb3", "sb3_ppo_cartpole.txt");
  REQUIRE(records.size() == 4);
  CHECK(records[0]
        == metric_record{{"time/fps", 1302},
                         {"time/iterations", 1},
                         {"time/time_elapsed", 1},
                         {"time/total_timesteps", 2048}});
  CHECK(records[1].size() == 14);
  CHECK(records[1].at("train/approx_kl") == Approx(0.015479716));
  CHECK(records[1].at("train/entropy_loss") == Approx(-0.685));
  CHECK(records[1].at("train/explained_variance") == -171);
  CHECK(records[2].at("rollout/ep_rew_mean") == Approx(22.4));
  auto& last = records[3];
  CHECK(last.size() == 19);
  CHECK(last.at("time/total_timesteps") == 8192);
  CHECK(last.at("rollout/ep_rew_mean") == Approx(31.6));
  CHECK(last.at("eval/mean_reward") == 127);
  CHECK(last.at("train/std") == 1);
  CHECK(last.at("train/policy_gradient_loss") == Approx(-0.00807));
}

TEST_CASE("sb3 ignores the output between tables", "[metrics]") {
  for (const auto& r : parse_fixture("sb3", "sb3_ppo_cartpole.txt"))
    for (const auto& [key, value] : r)
      CHECK(key.find("num_timesteps") == std::string::npos);
}

TEST_CASE("legacy sb tables without sections keep their keys as written",
          "[metrics]") {
  auto records = parse_fixture("sb3", "sb_legacy_ppo2.txt");
  REQUIRE(records.size() == 2);
  CHECK(records[0].size() == 13);
  CHECK(std::isnan(records[0].at("ep_rewmean")));
  CHECK(std::isnan(records[0].at("eplenmean")));
  CHECK(records[0].at("total_timesteps") == 100096);
  CHECK(records[1].size() == 11);
  CHECK(records[1].at("time_elapsed") == 45800);
  CHECK(records[1].at("policy_entropy") == Approx(6.521396e-05));
  CHECK(records[1].at("explained_variance") == Approx(-5.96e-07));
  CHECK(records[1].at("total_timesteps") == 1166190);
}

TEST_CASE("an sb3 table cut by other output is dropped and the next one read",
          "[metrics]") {
  auto aut = parser_for("sb3");
  auto records = feed_all(*aut, lines_of("-------------------------\n"
                                         "| time/          |      |\n"
                                         "|    fps         | 1302 |\n"
                                         "Traceback (most recent call last):\n"
                                         "|    iterations  | 1    |\n"
                                         "-------------------------\n"
                                         "-------------------------\n"
                                         "| time/          |      |\n"
                                         "|    fps         | 99   |\n"
                                         "-------------------------\n"));
  REQUIRE(records.size() == 1);
  CHECK(records[0] == metric_record{{"time/fps", 99}});
}

TEST_CASE("an sb3 record is complete only at its closing dashed line",
          "[metrics]") {
  auto aut = parser_for("sb3");
  CHECK(aut->feed("-------------------").empty());
  CHECK(aut->feed("| fps      | 1302 |").empty());
  auto out = aut->feed("-------------------");
  REQUIRE(out.size() == 1);
  CHECK(out[0] == metric_record{{"fps", 1302}});
}

TEST_CASE("sb3 skips text cells and tables without numbers", "[metrics]") {
  auto aut = parser_for("sb3");
  auto records = feed_all(*aut, lines_of("-----------------------\n"
                                         "| train/     |        |\n"
                                         "|    mode    | train  |\n"
                                         "|    loss    | 1.5    |\n"
                                         "| note       | hello  |\n"
                                         "| top        | 3      |\n"
                                         "-----------------------\n"
                                         "-----------------------\n"
                                         "| name       | ppo    |\n"
                                         "-----------------------\n"));
  REQUIRE(records.size() == 1);
  CHECK(records[0] == metric_record{{"train/loss", 1.5}, {"top", 3}});
}

TEST_CASE("sb3 reads rows behind redraws and colours", "[metrics]") {
  auto aut = parser_for("sb3");
  auto records
      = feed_all(*aut, {" 40%|####      | 4/10\r-----------------------",
                        "\x1b[1m| time/      |        |\x1b[0m",
                        "|    fps     | \x1b[32m77\x1b[0m     |",
                        "-----------------------\r\n"});
  REQUIRE(records.size() == 1);
  CHECK(records[0] == metric_record{{"time/fps", 77}});
}

TEST_CASE("a huge line inside an sb3 table resets it without harm",
          "[metrics]") {
  auto aut = parser_for("sb3");
  auto records = feed_all(*aut, {"-----------------", "| fps    | 1 |",
                                 "| " + std::string(3 << 20, 'x') + " | 1 |",
                                 "-----------------", "| fps    | 2 |",
                                 "-----------------"});
  REQUIRE(records.size() == 1);
  CHECK(records[0] == metric_record{{"fps", 2}});
}

// -------------------------------------------------------------- jsonl --

TEST_CASE("jsonl numbers become metrics and other lines are ignored",
          "[metrics]") {
  auto records = parse_fixture("jsonl", "jsonl_metrics.txt");
  REQUIRE(records.size() == 3);
  CHECK(records[0]
        == metric_record{
            {"loss", 0.6712}, {"samples_per_s", 6938.6}, {"step", 10}});
  CHECK(records[1].at("lr") == Approx(0.05));
  CHECK(records[2] == metric_record{{"step", 20}});
}

TEST_CASE("jsonl flattens nested objects and skips booleans and arrays",
          "[metrics]") {
  auto r = parse_line(
      "jsonl", R"({"train": {"loss": 1, "acc": {"top1": 0.5}}, "done": true, )"
               R"("hist": [1, 2], "name": "x", "n": null})");
  CHECK(r == metric_record{{"train/acc/top1", 0.5}, {"train/loss", 1}});
}

TEST_CASE("jsonl reads python's NaN and Infinity", "[metrics]") {
  auto r = parse_line(
      "jsonl",
      R"({"loss": NaN, "best": -Infinity, "note": "NaN here", "step": 3})");
  REQUIRE(r.size() == 3);
  CHECK(std::isnan(r.at("loss")));
  CHECK(r.at("best") == -INFINITY);
  CHECK(r.at("step") == 3);
}

TEST_CASE("jsonl ignores invalid json and non-objects", "[metrics]") {
  auto aut = parser_for("jsonl");
  auto records = feed_all(
      *aut, {"{not json", R"({"a": 1)", "[1, 2]", "42", "", R"("text")",
             R"({"a": 1} trailing)", std::string(1000, '{'),
             std::string(100000, '{') + std::string(100000, '}')});
  CHECK(records.empty());
}

TEST_CASE("jsonl survives deep nesting and reads after redraws", "[metrics]") {
  std::string deep;
  for (int i = 0; i < 10000; ++i)
    deep += R"({"a": )";
  deep += "1" + std::string(10000, '}');
  CHECK(parse_line("jsonl", deep).empty());
  CHECK(parse_line("jsonl", "\x1b[2Kloading\r\x1b[0m{\"step\": 5}")
        == metric_record{{"step", 5}});
}

// ----------------------------------------------------------------- kv --

TEST_CASE("kv reads key colon value pairs of a hand-written loop",
          "[metrics]") {
  auto records = parse_fixture("kv", "custom_kv_episodes.txt");
  REQUIRE(records.size() == 3);
  CHECK(records[0]
        == metric_record{{"Actions", 2351},
                         {"Avg. reward", -19.9},
                         {"Episode", 59},
                         {"Time", 4.28},
                         {"reward", -18}});
  CHECK(records[2].at("Episode") == 61);
  CHECK(records[2].at("Avg. reward") == Approx(-19.967));
}

TEST_CASE("kv reads hugging face dict lines and skips the bars between",
          "[metrics]") {
  auto records = parse_fixture("kv", "hf_trainer_dict_lines.txt");
  REQUIRE(records.size() == 4);
  CHECK(records[0]
        == metric_record{{"epoch", 0.05},
                         {"grad_norm", 1.2345},
                         {"learning_rate", 4.9e-05},
                         {"loss", 0.6931}});
  CHECK(records[2].at("eval_accuracy") == Approx(0.8812));
  CHECK(records[2].at("eval_samples_per_second") == Approx(311.5));
  CHECK(records[3].at("train_runtime") == Approx(245.1));
  CHECK(records[3].at("epoch") == 1);
}

TEST_CASE("kv finds nothing in a tqdm bar", "[metrics]") {
  CHECK(parse_fixture("kv", "tqdm_carriage_returns.txt").empty());
}

TEST_CASE("kv reads the usual separators and number forms", "[metrics]") {
  CHECK(parse_line("kv", "step=100 loss=0.5 lr=3e-4")
        == metric_record{{"loss", 0.5}, {"lr", 3e-4}, {"step", 100}});
  CHECK(parse_line("kv", "epoch: 3 | loss: 0.25 | acc: 91.5")
        == metric_record{{"acc", 91.5}, {"epoch", 3}, {"loss", 0.25}});
  CHECK(parse_line("kv", "loss = 0.5, grad = +1.5E+2;")
        == metric_record{{"grad", 150}, {"loss", 0.5}});
  CHECK(parse_line("kv", "val/loss=0.3 train.acc=0.9 top-1=0.7 _x=1")
        == metric_record{
            {"_x", 1}, {"top-1", 0.7}, {"train.acc", 0.9}, {"val/loss", 0.3}});
  CHECK(parse_line("kv", "{'loss': np.float64(0.25), \"step\": 10}")
        == metric_record{{"loss", 0.25}, {"step", 10}});
}

TEST_CASE("kv keeps nan and inf values", "[metrics]") {
  auto r = parse_line("kv", "loss=nan grad=inf best=-inf acc: 0.5");
  REQUIRE(r.size() == 4);
  CHECK(std::isnan(r.at("loss")));
  CHECK(r.at("grad") == INFINITY);
  CHECK(r.at("best") == -INFINITY);
  CHECK(r.at("acc") == 0.5);
}

TEST_CASE("kv finds pairs inside log prefixes and keras lines", "[metrics]") {
  CHECK(parse_line("kv", "Epoch 3: loss=0.5") == metric_record{{"loss", 0.5}});
  CHECK(parse_line("kv", "INFO:root:loss=0.5 step=10")
        == metric_record{{"loss", 0.5}, {"step", 10}});
  CHECK(parse_line("kv", "2024-05-01 12:34:56 train loss: 0.5")
        == metric_record{{"train loss", 0.5}});
  CHECK(parse_line("kv", "status: ok acc: 0.5") == metric_record{{"acc", 0.5}});
  CHECK(parse_line("kv", "1875/1875 [==============================] - 3s "
                         "2ms/step - loss: 0.2963 - accuracy: 0.9143")
        == metric_record{{"accuracy", 0.9143}, {"loss", 0.2963}});
  CHECK(parse_line("kv",
                   "Eval num_timesteps=8000, episode_reward=127.40 +/- 21.37")
        == metric_record{{"episode_reward", 127.4}, {"num_timesteps", 8000}});
  CHECK(parse_line("kv", "Episode length: 127.40 +/- 21.37")
        == metric_record{{"Episode length", 127.4}});
}

TEST_CASE("kv takes no numbers from ordinary prose", "[metrics]") {
  auto aut = parser_for("kv");
  auto records = feed_all(
      *aut,
      {"Saving checkpoint to /tmp/run=3/ckpt.pt",
       "Training finished. Result: good",
       "see https://example.org:8080/?a=1&b=2", "if a == b then c=d",
       "12:34:56 INFO starting", "time=12:34:56", "Took: 1.82ms",
       "progress: 100%", "2+2=4", "--lr=0.001", "ratio: 1/3", "=5", ":5",
       "a=", "b:", "(x)=3", "'': 4", "'key: 3", "Saving model at step: 500"});
  CHECK(records.size() == 1);
  CHECK(records[0] == metric_record{{"step", 500}});
}

TEST_CASE("controls are dropped wherever they fall in the line", "[metrics]") {
  // Long plain stretches (checked eight bytes at a time) with a colour,
  // a DEL, a bell and a run of controls at and around eight-byte
  // boundaries.
  CHECK(parse_line("kv", "step=1234567 loss_value=\x1b[31m0.25\x1b[0m "
                         "learning_rate=\x7f"
                         "0.001\a epoch=3")
        == metric_record{{"step", 1234567},
                         {"loss_value", 0.25},
                         {"learning_rate", 0.001},
                         {"epoch", 3}});
  CHECK(parse_line("kv", "pad_pad=1 \x01\x02\x03\x04\x05\x06\x07\x08 x=2")
        == metric_record{{"pad_pad", 1}, {"x", 2}});
}

TEST_CASE("kv reads the last redraw without colours", "[metrics]") {
  CHECK(parse_line("kv", "loss=1\rloss=2\r\x1b[31mloss=3\x1b[0m")
        == metric_record{{"loss", 3}});
  CHECK(parse_line("kv", "loss=1\r\n") == metric_record{{"loss", 1}});
  CHECK(parse_line("kv", "loss=1\r").size() == 1);
}

TEST_CASE("kv bounds what one huge line can add", "[metrics]") {
  std::string many;
  for (int i = 0; i < 5000; ++i)
    many += "k" + std::to_string(i) + "=1 ";
  CHECK(parse_line("kv", many).size() == 1024);
  CHECK(parse_line("kv", std::string(2 << 20, 'a') + "=1").empty());
  CHECK(parse_line("kv", std::string(300, 'a') + "=1").empty());
  std::string seps(200000, ':');
  CHECK(parse_line("kv", seps + "a=1") == metric_record{{"a", 1}});
}

// -------------------------------------------------------------- regex --

TEST_CASE("regex groups that hold numbers become metrics", "[metrics]") {
  auto aut = parser_for(progress_spec{
      "regex", "step", {}, "", R"(step (?<step>\d+).*?loss (?<loss>\S+) (x))"});
  auto records = feed_all(*aut, {"[12:00] step 120 of 500, loss 0.25 x",
                                 "step 5 loss abc x", "nothing here"});
  REQUIRE(records.size() == 2);
  CHECK(records[0] == metric_record{{"loss", 0.25}, {"step", 120}});
  CHECK(records[1] == metric_record{{"step", 5}});
}

TEST_CASE("regex reads the last state of a tqdm line", "[metrics]") {
  auto aut = parser_for(progress_spec{
      "regex", "step", {}, "", R"((?<step>\d+)/(?<total>\d+) \[)"});
  auto records
      = feed_all(*aut, lines_of(metrics_fixture("tqdm_carriage_returns.txt")));
  REQUIRE(records.size() == 1);
  CHECK(records[0] == metric_record{{"step", 3}, {"total", 3}});
}

TEST_CASE("regex ignores lines too long to search safely", "[metrics]") {
  auto aut = parser_for(
      progress_spec{"regex", "", {}, "", R"(.*loss=(?<loss>[0-9.]+))"});
  CHECK(aut->feed(std::string(1 << 20, 'x') + "loss=1").empty());
  CHECK(aut->feed("loss=2").size() == 1);
}

TEST_CASE("parsers exist for line formats only", "[metrics]") {
  for (std::string format : {"", "csv"}) {
    auto made = make_metrics_parser(progress_spec{format, "", {}, "", ""});
    REQUIRE(made);
    CHECK_FALSE(*made);
  }
  auto bad_format = make_metrics_parser(progress_spec{"xml", "", {}, "", ""});
  REQUIRE_FALSE(bad_format);
  CHECK(bad_format.error().code == ec::invalid_spec);
  CHECK_THAT(bad_format.error().message, Catch::StartsWith("progress.format"));
  auto bad_regex
      = make_metrics_parser(progress_spec{"regex", "", {}, "", "(?<a>x"});
  REQUIRE_FALSE(bad_regex);
  CHECK(bad_regex.error().code == ec::invalid_spec);
  CHECK_THAT(bad_regex.error().message, Catch::StartsWith("progress.pattern"));
}

TEST_CASE("every parser survives garbage", "[metrics]") {
  std::string bytes;
  for (int i = 0; i < 4096; ++i)
    bytes += static_cast<char>((i * 7919) % 256);
  std::vector<std::string> garbage{bytes,
                                   std::string(1, '\0'),
                                   "\x1b[",
                                   "\x1b]0;title",
                                   "\r\r\r",
                                   "|||||",
                                   "| a | b | c |",
                                   "{\"a\": 1e999}",
                                   "x=1e999",
                                   "'a': '",
                                   std::string(3 << 20, '=')};
  for (std::string format : {"sb3", "jsonl", "kv"}) {
    auto aut = parser_for(format);
    CHECK_NOTHROW(feed_all(*aut, garbage));
  }
  auto aut = parser_for(progress_spec{"regex", "", {}, "", "(?<a>\\d+)"});
  CHECK_NOTHROW(feed_all(*aut, garbage));
}

// ---------------------------------------------------------------- csv --

TEST_CASE("csv follower reads sb3's progress.csv skipping empty cells",
          "[metrics]") {
  test::temp_dir dir;
  dir.write("progress.csv", metrics_fixture("sb3_progress.csv"));
  csv_follower aut{dir / "progress.csv"};
  auto records = aut.poll();
  REQUIRE(records.size() == 3);
  CHECK(records[0]
        == metric_record{{"time/fps", 1302},
                         {"time/iterations", 1},
                         {"time/total_timesteps", 2048}});
  CHECK(records[1].at("train/loss") == Approx(6.04));
  CHECK(records[2].size() == 6);
  CHECK(records[2].at("rollout/ep_rew_mean") == Approx(22.4));
  CHECK(records[2].at("time/total_timesteps") == 6144);
  CHECK(aut.poll().empty());
}

TEST_CASE("csv follower waits for rows to be complete", "[metrics]") {
  test::temp_dir dir;
  auto path = dir / "p.csv";
  csv_follower aut{path};
  append(path, "a,b");
  CHECK(aut.poll().empty());
  append(path, ",c\n1,2");
  CHECK(aut.poll().empty());
  append(path, ",3\n");
  CHECK(aut.poll()
        == std::vector<metric_record>{{{"a", 1}, {"b", 2}, {"c", 3}}});
  append(path, "4,,6\r\n5,x,7\n");
  CHECK(aut.poll()
        == std::vector<metric_record>{{{"a", 4}, {"c", 6}},
                                      {{"a", 5}, {"c", 7}}});
  CHECK(aut.poll().empty());
}

TEST_CASE("csv follower reads a file that appears later", "[metrics]") {
  test::temp_dir dir;
  csv_follower aut{dir / "late.csv"};
  CHECK(aut.poll().empty());
  CHECK(aut.poll().empty());
  dir.write("late.csv", "step,loss\n1,0.5\n");
  CHECK(aut.poll() == std::vector<metric_record>{{{"loss", 0.5}, {"step", 1}}});
}

TEST_CASE("csv follower starts over on a truncated file", "[metrics]") {
  test::temp_dir dir;
  auto path = dir / "p.csv";
  dir.write("p.csv", "a,b\n1,2\n3,4\n5,6\n");
  csv_follower aut{path};
  CHECK(aut.poll().size() == 3);
  overwrite(path, "x,y\n9,8\n");
  CHECK(aut.poll() == std::vector<metric_record>{{{"x", 9}, {"y", 8}}});
  // Written over with other columns and as long as before: a new file too.
  overwrite(path, "p,q\n1,1\n2,2\n3,3\n");
  CHECK(aut.poll().size() == 3);
}

TEST_CASE("csv follower starts over on a replaced file", "[metrics]") {
  test::temp_dir dir;
  auto path = dir / "p.csv";
  dir.write("p.csv", "a\n1\n");
  csv_follower aut{path};
  CHECK(aut.poll().size() == 1);
  dir.write("new.csv", "a,b\n1,2\n3,4\n");
  std::filesystem::rename(dir / "new.csv", path);
  CHECK(aut.poll().size() == 2);
  std::filesystem::remove(path);
  CHECK(aut.poll().empty());
  dir.write("p.csv", "z\n7\n");
  CHECK(aut.poll() == std::vector<metric_record>{{{"z", 7}}});
}

TEST_CASE("csv follower reads only new rows when sb3 widens the header",
          "[metrics]") {
  test::temp_dir dir;
  auto path = dir / "p.csv";
  dir.write("p.csv", "a,b\n1,2\n");
  csv_follower aut{path};
  CHECK(aut.poll().size() == 1);
  // SB3 rewrites in place: wider header, old rows padded, then the new one.
  std::fstream{path, std::ios::in | std::ios::out | std::ios::binary}
      << "a,b,c\n1,2,\n3,4,5\n";
  CHECK(aut.poll()
        == std::vector<metric_record>{{{"a", 3}, {"b", 4}, {"c", 5}}});
}

TEST_CASE("csv follower reads quoted cells and drops overlong lines",
          "[metrics]") {
  test::temp_dir dir;
  auto path = dir / "p.csv";
  csv_follower aut{path};
  append(path, "\"a,1\",\"b\"\"\"\n\"1\",2\n");
  CHECK(aut.poll() == std::vector<metric_record>{{{"a,1", 1}, {"b\"", 2}}});
  append(path, std::string(3 << 20, '7'));
  CHECK(aut.poll().empty());
  append(path, std::string(1 << 20, '7') + ",1\n4,5\n");
  CHECK(aut.poll() == std::vector<metric_record>{{{"a,1", 4}, {"b\"", 5}}});
}

// -------------------------------------------------------------- store --

TEST_CASE("the store keeps the latest value per key", "[metrics]") {
  metrics_store aut{"step", 100};
  CHECK(aut.empty());
  CHECK(aut.latest_json() == nlohmann::json::object());
  aut.add({{"step", 1}, {"loss", 0.5}}, at_ms(1000), 0);
  aut.add({{"step", 2}, {"fps", 1207}}, at_ms(2000), 1);
  CHECK_FALSE(aut.empty());
  CHECK(aut.latest_json()
        == nlohmann::json{{"fps", 1207}, {"loss", 0.5}, {"step", 2}});
  CHECK(aut.latest_json().dump() == R"({"fps":1207,"loss":0.5,"step":2})");
}

TEST_CASE("store series hold time step and value", "[metrics]") {
  metrics_store aut{"step", std::nullopt};
  aut.add({{"step", 10}, {"loss", 0.5}}, at_ms(1700000000123), 0);
  aut.add({{"loss", 0.25}}, at_ms(1700000001500), 1);
  auto series = aut.series_json();
  REQUIRE(series["loss"].size() == 2);
  CHECK(series["loss"][0][0].get<double>() == Approx(1700000000.123));
  CHECK(series["loss"][0][1] == 10);
  CHECK(series["loss"][0][2] == 0.5);
  // A record without the counter is at the counter's latest value.
  CHECK(series["loss"][1] == nlohmann::json::array({1700000001.5, 10, 0.25}));
  CHECK(series["step"] == nlohmann::json::array({{1700000000.123, 10, 10}}));
}

TEST_CASE("store series have a null step without a counter", "[metrics]") {
  metrics_store aut{"", std::nullopt};
  aut.add({{"loss", 0.5}}, at_ms(1000), 0);
  CHECK(aut.series_json() == nlohmann::json{{"loss", {{1.0, nullptr, 0.5}}}});
  metrics_store unseen{"step", 10};
  unseen.add({{"loss", 0.5}}, at_ms(1000), 0);
  CHECK(unseen.series_json()["loss"][0][1].is_null());
}

TEST_CASE("store shows non-finite values as null", "[metrics]") {
  metrics_store aut{"step", std::nullopt};
  aut.add({{"step", NAN}, {"loss", INFINITY}, {"x", -INFINITY}}, at_ms(0), 0);
  CHECK(
      aut.latest_json()
      == nlohmann::json{{"loss", nullptr}, {"step", nullptr}, {"x", nullptr}});
  CHECK(aut.series_json()["loss"]
        == nlohmann::json::array({{0.0, nullptr, nullptr}}));
}

TEST_CASE("store series stay bounded, span the run and keep the newest",
          "[metrics]") {
  const std::size_t max_points = GENERATE(2, 10, 101);
  metrics_store aut{"step", std::nullopt, max_points};
  for (int i = 0; i < 5000; ++i) {
    aut.add({{"step", i}}, at_ms(i * 1000), i);
    auto points = aut.series_json()["step"];
    REQUIRE(points.size() <= max_points);
    REQUIRE(points.front()[2] == 0);
    REQUIRE(points.back()[2] == i);
  }
  // Kept points are evenly spread over the run, the newest aside.
  auto points = aut.series_json()["step"];
  CHECK(points.size() >= max_points / 2);
  if (points.size() >= 4) {
    auto stride = points[1][2].get<int>() - points[0][2].get<int>();
    for (std::size_t i = 1; i + 1 < points.size(); ++i)
      CHECK(points[i][2].get<int>() - points[i - 1][2].get<int>() == stride);
  }
}

TEST_CASE("store bounds the number of keys", "[metrics]") {
  metrics_store aut{"step", std::nullopt};
  metric_record r;
  for (int i = 0; i < 600; ++i)
    r["k" + std::to_string(1000 + i)] = i;
  aut.add(r, at_ms(0), 0);
  aut.add({{"step", 1}}, at_ms(0), 0);
  CHECK(aut.latest_json().size() == 513);
  CHECK(aut.latest_json().contains("step"));
}

TEST_CASE("estimate is unknown without a counter or total", "[metrics]") {
  metrics_store none{"", 100};
  none.add({{"loss", 1}}, at_ms(0), 0);
  CHECK_FALSE(none.estimate(10).fraction);
  CHECK_FALSE(none.estimate(10).eta_s);
  metrics_store no_total{"step", std::nullopt};
  no_total.add({{"step", 1}}, at_ms(0), 0);
  no_total.add({{"step", 2}}, at_ms(1000), 1);
  CHECK_FALSE(no_total.estimate(1).fraction);
  CHECK_FALSE(no_total.estimate(1).eta_s);
  metrics_store one{"step", 100};
  one.add({{"step", 25}}, at_ms(0), 5);
  CHECK(one.estimate(5).fraction == Approx(0.25));
  CHECK_FALSE(one.estimate(5).eta_s);
}

TEST_CASE("estimate counts down in active time", "[metrics]") {
  metrics_store aut{"step", 1000};
  aut.add({{"step", 0}}, at_ms(0), 0);
  aut.add({{"step", 100}}, at_ms(10000), 10);
  aut.add({{"step", 200}}, at_ms(20000), 20);
  auto now = aut.estimate(20);
  CHECK(*now.fraction == Approx(0.2));
  CHECK(*now.eta_s == Approx(80));
  CHECK(*aut.estimate(25).eta_s == Approx(75));
  CHECK(*aut.estimate(500).eta_s == 0);
}

TEST_CASE("a pause between samples does not lower the rate", "[metrics]") {
  metrics_store steady{"step", 1000};
  metrics_store paused{"step", 1000};
  const std::int64_t hour_ms = 3600 * 1000;
  for (int i = 0; i < 3; ++i) {
    steady.add({{"step", i * 100.0}}, at_ms(i * 10000), i * 10.0);
    // Same active seconds, an hour of wall-clock pause before the last.
    auto wall = at_ms(i * 10000 + (i == 2 ? hour_ms : 0));
    paused.add({{"step", i * 100.0}}, wall, i * 10.0);
  }
  CHECK(*paused.estimate(20).eta_s == Approx(*steady.estimate(20).eta_s));
  CHECK(*paused.estimate(20).eta_s == Approx(80));
  // While paused active_now stands still, and so does the ETA.
  auto before = *paused.estimate(23).eta_s;
  CHECK(*paused.estimate(23).eta_s == before);
  CHECK(before == Approx(77));
}

TEST_CASE("the rate follows the last minute of running time", "[metrics]") {
  metrics_store aut{"step", 10000};
  double step = 0;
  for (int t = 0; t <= 100; t += 10) { // 1 step/s for 100 s
    aut.add({{"step", step}}, at_ms(t * 1000), t);
    step += 10;
  }
  step -= 10;
  for (int t = 110; t <= 200; t += 10) { // then 10 steps/s
    step += 100;
    aut.add({{"step", step}}, at_ms(t * 1000), t);
  }
  CHECK(*aut.estimate(200).eta_s == Approx((10000 - step) / 10.0));
}

TEST_CASE("a slow logger still gets a rate from its last interval",
          "[metrics]") {
  metrics_store aut{"step", 1000};
  aut.add({{"step", 0}}, at_ms(0), 0);
  aut.add({{"step", 100}}, at_ms(0), 300);
  CHECK(*aut.estimate(300).eta_s == Approx(2700));
}

TEST_CASE("samples of one batch give no rate on their own", "[metrics]") {
  metrics_store aut{"step", 1000};
  aut.add({{"step", 100}}, at_ms(0), 10);
  aut.add({{"step", 200}}, at_ms(0), 10);
  CHECK_FALSE(aut.estimate(10).eta_s);
  aut.add({{"step", 300}}, at_ms(0), 20);
  CHECK(*aut.estimate(20).eta_s == Approx(70)); // 100 steps in 10 s
}

TEST_CASE("estimate has no eta while the counter stands still", "[metrics]") {
  metrics_store aut{"step", 1000};
  aut.add({{"step", 100}}, at_ms(0), 0);
  aut.add({{"step", 100}}, at_ms(0), 10);
  CHECK(aut.estimate(10).fraction == Approx(0.1));
  CHECK_FALSE(aut.estimate(10).eta_s);
}

TEST_CASE("a counter going back starts the rate over", "[metrics]") {
  metrics_store aut{"step", 1000};
  aut.add({{"step", 500}}, at_ms(0), 0);
  aut.add({{"step", 600}}, at_ms(0), 10);
  aut.add({{"step", 0}}, at_ms(0), 20);
  CHECK(aut.estimate(20).fraction == Approx(0));
  CHECK_FALSE(aut.estimate(20).eta_s);
  aut.add({{"step", 50}}, at_ms(0), 30);
  CHECK(*aut.estimate(30).eta_s == Approx(190));
}

TEST_CASE("fraction is clamped and eta ends at zero", "[metrics]") {
  metrics_store aut{"step", 100};
  aut.add({{"step", 50}}, at_ms(0), 0);
  aut.add({{"step", 150}}, at_ms(0), 10);
  CHECK(aut.estimate(10).fraction == 1);
  CHECK(aut.estimate(10).eta_s == 0);
}

TEST_CASE("a fast logger's rate still covers the last minute", "[metrics]") {
  metrics_store aut{"step", 100000};
  double step = 0;
  for (int tenth = 0; tenth <= 1000; ++tenth) { // every 100 ms for 100 s
    step += tenth <= 500 ? 1 : 3;               // 10/s, then 30/s
    aut.add({{"step", step}}, at_ms(tenth * 100), tenth / 10.0);
  }
  // Over the last minute: 10 s at 10/s and 50 s at 30/s.
  auto expected = (100000 - step) / ((10 * 10 + 50 * 30) / 60.0);
  CHECK(*aut.estimate(100).eta_s == Approx(expected).epsilon(0.03));
}
