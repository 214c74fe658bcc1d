// The daemon's SQLite store: what goes in comes back, batches are all or
// nothing (also under SIGKILL), old schemas migrate, and files that are
// not ours are refused without a byte changed.

#include "services/state_store.hpp"
#include "tests/temp_dir.hpp"

#include <catch2/catch.hpp>

#include <signal.h>
#include <sqlite3.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

using namespace corral;
using corral::test::temp_dir;
using nlohmann::json;

namespace {

// ------------------------------------------------------------------ helpers

/// A plain SQLite connection, to build and inspect files behind the
/// store's back.
class raw_db {
public:
  explicit raw_db(const std::string& path) {
    sqlite3* raw = nullptr;
    int rc
        = sqlite3_open_v2(path.c_str(), &raw,
                          SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, nullptr);
    db_.reset(raw);
    REQUIRE(rc == SQLITE_OK);
  }

  void exec(const std::string& sql) {
    char* message = nullptr;
    int rc = sqlite3_exec(db_.get(), sql.c_str(), nullptr, nullptr, &message);
    std::string text = message != nullptr ? message : "";
    sqlite3_free(message);
    INFO(sql << ": " << text);
    REQUIRE(rc == SQLITE_OK);
  }

  /// The first column of the first row, as text ("" for none).
  std::string scalar(const std::string& sql) {
    sqlite3_stmt* raw = nullptr;
    REQUIRE(sqlite3_prepare_v2(db_.get(), sql.c_str(), -1, &raw, nullptr)
            == SQLITE_OK);
    std::unique_ptr<sqlite3_stmt, int (*)(sqlite3_stmt*)> stmt{
        raw, sqlite3_finalize};
    if (sqlite3_step(raw) != SQLITE_ROW)
      return "";
    auto* text = sqlite3_column_text(raw, 0);
    return text != nullptr ? reinterpret_cast<const char*>(text) : "";
  }

private:
  struct closer {
    void operator()(sqlite3* db) const { sqlite3_close(db); }
  };
  std::unique_ptr<sqlite3, closer> db_;
};

std::string read_bytes(const std::string& path) {
  std::ifstream in{path, std::ios::binary};
  return {std::istreambuf_iterator<char>{in}, {}};
}

void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream{path, std::ios::binary | std::ios::trunc} << bytes;
}

std::unique_ptr<state_store> open_store(const std::string& path) {
  auto store = state_store::open(path);
  INFO((store ? "" : store.error().message));
  REQUIRE(store);
  return std::move(*store);
}

void commit(state_store& aut, const store_batch& batch) {
  auto done = aut.commit(batch);
  INFO((done ? "" : done.error().message));
  REQUIRE(done);
}

std::vector<stored_run> runs_of(const state_store& aut) {
  auto runs = aut.load_runs();
  INFO((runs ? "" : runs.error().message));
  REQUIRE(runs);
  return *runs;
}

std::vector<stored_event> events_of(const state_store& aut,
                                    const std::string& scope,
                                    std::size_t limit = 100000) {
  auto events = aut.load_events(scope, limit);
  INFO((events ? "" : events.error().message));
  REQUIRE(events);
  return *events;
}

std::vector<std::uint64_t> seqs(const std::vector<stored_event>& events) {
  std::vector<std::uint64_t> out;
  for (auto& e : events)
    out.push_back(e.seq);
  return out;
}

std::vector<std::string> ids(const std::vector<stored_run>& runs) {
  std::vector<std::string> out;
  for (auto& r : runs)
    out.push_back(r.id);
  return out;
}

store_batch::run_row row(std::string id, std::int64_t seq, json record,
                         bool ended = false) {
  return {std::move(id), seq, ended, std::move(record)};
}

/// A batch of one run with `events` events, seq 1.. in its scope.
store_batch run_with_events(const std::string& id, std::int64_t seq,
                            int events) {
  store_batch b;
  b.runs.push_back(row(id, seq, {{"id", id}}));
  for (int i = 1; i <= events; ++i)
    b.events.push_back({id, static_cast<std::uint64_t>(i), {{"n", i}}});
  return b;
}

/// The schema a Corral of schema version 1 wrote.
void make_v1_database(const std::string& path) {
  raw_db db{path};
  db.exec("CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);"
          "CREATE TABLE runs(id TEXT PRIMARY KEY, seq INTEGER NOT NULL,"
          " ended INTEGER NOT NULL, record TEXT NOT NULL);"
          "CREATE TABLE events(scope TEXT NOT NULL, seq INTEGER NOT NULL,"
          " event TEXT NOT NULL, PRIMARY KEY(scope, seq));"
          "INSERT INTO meta VALUES('app', 'corral'), ('schema_version', '1');"
          "INSERT INTO runs VALUES('old-1', 7, 1, '{\"state\":\"exited\"}');"
          "INSERT INTO events VALUES('old-1', 1, '{\"kind\":\"created\"}'),"
          " ('old-1', 2, '{\"kind\":\"exited\"}'),"
          " ('', 1, '{\"kind\":\"daemon_started\"}');");
}

/// Opening `path` is refused with a message naming it and containing
/// `expected`, and the file keeps every byte.
void require_refused(const std::string& path, const std::string& expected) {
  auto before = read_bytes(path);
  auto aut = state_store::open(path);
  REQUIRE_FALSE(aut);
  INFO(aut.error().message);
  CHECK(aut.error().message.find(path) != std::string::npos);
  CHECK(aut.error().message.find(expected) != std::string::npos);
  CHECK(read_bytes(path) == before);
}

} // namespace

// ------------------------------------------------------------------- basics

TEST_CASE("a new store starts empty at the current schema version", "[store]") {
  temp_dir dir;
  auto path = dir / "corral.db";
  {
    auto aut = open_store(path);
    CHECK(aut->found_version() == 0);
    CHECK(aut->path() == path);
    CHECK(runs_of(*aut).empty());
    CHECK(events_of(*aut, "").empty());
  }
  raw_db db{path};
  CHECK(db.scalar("SELECT value FROM meta WHERE key = 'app'") == "corral");
  CHECK(db.scalar("SELECT value FROM meta WHERE key = 'schema_version'")
        == std::to_string(state_store::schema_version));
  CHECK(db.scalar("PRAGMA journal_mode") == "wal");
  CHECK(db.scalar("SELECT name FROM sqlite_master WHERE name = 'runs_seq'")
        == "runs_seq");

  auto again = open_store(path);
  CHECK(again->found_version() == state_store::schema_version);
}

TEST_CASE("an empty file is taken as a new store", "[store]") {
  temp_dir dir;
  auto path = dir / "corral.db";
  write_bytes(path, "");
  auto aut = open_store(path);
  CHECK(aut->found_version() == 0);
  commit(*aut, run_with_events("a", 1, 1));
  CHECK(ids(runs_of(*aut)) == std::vector<std::string>{"a"});
}

TEST_CASE("runs, blobs and events come back as committed, also after a "
          "reopen",
          "[store]") {
  temp_dir dir;
  auto path = dir / "corral.db";
  store_batch b;
  b.runs.push_back(row("ppo-1", 1, {{"state", "running"}, {"pid", 42}}));
  b.runs.push_back(row("ppo-2", 2, {{"state", "exited"}}, true));
  b.metrics.push_back({"ppo-1", {{"loss", {1.5, 0.75}}}});
  b.artifacts.push_back({"ppo-2", json::array({"ckpt/1.pt", "video.webm"})});
  b.events.push_back({"ppo-1", 1, {{"kind", "started"}}});
  b.events.push_back({"", 3, {{"kind", "daemon_started"}, {"text", "é ✓"}}});
  {
    auto aut = open_store(path);
    commit(*aut, b);
  }
  auto aut = open_store(path);
  auto runs = runs_of(*aut);
  REQUIRE(runs.size() == 2);
  CHECK(runs[0].id == "ppo-1");
  CHECK(runs[0].seq == 1);
  CHECK_FALSE(runs[0].ended);
  CHECK(runs[0].record == b.runs[0].record);
  CHECK(runs[0].metrics == b.metrics[0].value);
  CHECK(runs[0].artifacts.is_null());
  CHECK(runs[1].id == "ppo-2");
  CHECK(runs[1].ended);
  CHECK(runs[1].record == b.runs[1].record);
  CHECK(runs[1].metrics.is_null());
  CHECK(runs[1].artifacts == b.artifacts[0].value);

  auto run_events = events_of(*aut, "ppo-1");
  REQUIRE(run_events.size() == 1);
  CHECK(run_events[0].scope == "ppo-1");
  CHECK(run_events[0].seq == 1);
  CHECK(run_events[0].event == json{{"kind", "started"}});
  auto daemon_events = events_of(*aut, "");
  REQUIRE(daemon_events.size() == 1);
  CHECK(daemon_events[0].scope.empty());
  CHECK(daemon_events[0].event == b.events[1].event);
}

TEST_CASE("runs load in seq order whatever order they were committed in",
          "[store]") {
  temp_dir dir;
  auto aut = open_store(dir / "corral.db");
  store_batch b;
  const std::vector<std::pair<std::string, std::int64_t>> order
      = {{"c", 30}, {"a", 10}, {"d", 5}, {"b", 20}};
  for (auto& [id, seq] : order)
    b.runs.push_back(row(id, seq, json::object()));
  commit(*aut, b);
  commit(*aut, run_with_events("e", 1, 0));
  CHECK(ids(runs_of(*aut))
        == std::vector<std::string>{"e", "d", "a", "b", "c"});
}

TEST_CASE("a run written again replaces its row and its blobs", "[store]") {
  temp_dir dir;
  auto aut = open_store(dir / "corral.db");
  store_batch first;
  first.runs.push_back(row("a", 1, {{"state", "running"}}));
  first.metrics.push_back({"a", {{"step", 1}}});
  first.artifacts.push_back({"a", json::array({"x"})});
  commit(*aut, first);

  store_batch second;
  second.runs.push_back(row("a", 1, {{"state", "paused"}}));
  second.runs.push_back(row("a", 1, {{"state", "exited"}}, true));
  second.metrics.push_back({"a", {{"step", 2}}});
  commit(*aut, second);

  auto runs = runs_of(*aut);
  REQUIRE(runs.size() == 1);
  CHECK(runs[0].record == json{{"state", "exited"}});
  CHECK(runs[0].ended);
  CHECK(runs[0].metrics == json{{"step", 2}});
  CHECK(runs[0].artifacts == json::array({"x"}));
}

TEST_CASE("an event with the seq of a stored one replaces it", "[store]") {
  temp_dir dir;
  auto aut = open_store(dir / "corral.db");
  commit(*aut, run_with_events("a", 1, 3));
  store_batch b;
  b.events.push_back({"a", 2, {{"n", "again"}}});
  commit(*aut, b);
  auto events = events_of(*aut, "a");
  CHECK(seqs(events) == std::vector<std::uint64_t>{1, 2, 3});
  CHECK(events[1].event == json{{"n", "again"}});
}

TEST_CASE("load_events returns the last events of one scope oldest first",
          "[store]") {
  temp_dir dir;
  auto aut = open_store(dir / "corral.db");
  store_batch b;
  // Committed out of order, and beyond 9 so text order would differ.
  for (std::uint64_t seq : {12, 3, 1, 10, 2, 11, 9})
    b.events.push_back({"a", seq, {{"seq", seq}}});
  b.events.push_back({"b", 100, json::object()});
  b.events.push_back({"", 50, json::object()});
  commit(*aut, b);

  CHECK(seqs(events_of(*aut, "a"))
        == std::vector<std::uint64_t>{1, 2, 3, 9, 10, 11, 12});
  CHECK(seqs(events_of(*aut, "a", 3))
        == std::vector<std::uint64_t>{10, 11, 12});
  CHECK(events_of(*aut, "a", 3).back().event == json{{"seq", 12}});
  CHECK(events_of(*aut, "a", 0).empty());
  CHECK(seqs(events_of(*aut, "b")) == std::vector<std::uint64_t>{100});
  CHECK(seqs(events_of(*aut, "")) == std::vector<std::uint64_t>{50});
  CHECK(events_of(*aut, "nobody").empty());
}

TEST_CASE("removing a run forgets its row, blobs and events and nothing else",
          "[store]") {
  temp_dir dir;
  auto path = dir / "corral.db";
  auto aut = open_store(path);
  for (auto id : {"a", "b"}) {
    auto b = run_with_events(id, id == std::string{"a"} ? 1 : 2, 3);
    b.metrics.push_back({id, {{"m", 1}}});
    b.artifacts.push_back({id, json::array()});
    commit(*aut, b);
  }
  store_batch daemon;
  daemon.events.push_back({"", 1, {{"kind", "x"}}});
  commit(*aut, daemon);

  store_batch removal;
  removal.removed = {"a", ""};
  commit(*aut, removal);

  auto runs = runs_of(*aut);
  CHECK(ids(runs) == std::vector<std::string>{"b"});
  CHECK(runs[0].metrics == json{{"m", 1}});
  CHECK(events_of(*aut, "a").empty());
  CHECK(events_of(*aut, "b").size() == 3);
  CHECK(events_of(*aut, "").size() == 1);
  raw_db db{path};
  CHECK(db.scalar("SELECT count(*) FROM run_blobs WHERE run = 'a'") == "0");
  CHECK(db.scalar("SELECT count(*) FROM run_blobs WHERE run = 'b'") == "2");
}

TEST_CASE("a batch that removes and writes a run ends with what it writes",
          "[store]") {
  temp_dir dir;
  auto aut = open_store(dir / "corral.db");
  auto old = run_with_events("a", 1, 3);
  old.metrics.push_back({"a", {{"old", true}}});
  commit(*aut, old);

  // Removals apply first, whatever else the batch holds.
  store_batch b;
  b.runs.push_back(row("a", 9, {{"new", true}}));
  b.events.push_back({"a", 1, {{"new", true}}});
  b.removed.push_back("a");
  commit(*aut, b);

  auto runs = runs_of(*aut);
  REQUIRE(runs.size() == 1);
  CHECK(runs[0].seq == 9);
  CHECK(runs[0].record == json{{"new", true}});
  CHECK(runs[0].metrics.is_null());
  auto events = events_of(*aut, "a");
  REQUIRE(events.size() == 1);
  CHECK(events[0].event == json{{"new", true}});
}

TEST_CASE("merged batches keep the order of writes and removals", "[store]") {
  temp_dir dir;
  auto aut = open_store(dir / "corral.db");
  commit(*aut, run_with_events("keep", 1, 1));

  SECTION("a write followed by a removal leaves nothing") {
    auto merged = run_with_events("a", 2, 2);
    merged.metrics.push_back({"a", json::object()});
    store_batch removal;
    removal.removed.push_back("a");
    merged.merge(std::move(removal));
    CHECK(merged.runs.empty());
    CHECK(merged.metrics.empty());
    CHECK(merged.events.empty());
    commit(*aut, merged);
    CHECK(ids(runs_of(*aut)) == std::vector<std::string>{"keep"});
    CHECK(events_of(*aut, "a").empty());
  }
  SECTION("a removal followed by a write leaves the write") {
    commit(*aut, run_with_events("a", 2, 3));
    store_batch merged;
    merged.removed.push_back("a");
    merged.merge(run_with_events("a", 3, 1));
    commit(*aut, merged);
    auto runs = runs_of(*aut);
    CHECK(ids(runs) == std::vector<std::string>{"keep", "a"});
    CHECK(runs[1].seq == 3);
    CHECK(events_of(*aut, "a").size() == 1);
  }
  SECTION("a removal of another run keeps this one's entries") {
    auto merged = run_with_events("a", 2, 2);
    store_batch removal;
    removal.removed.push_back("keep");
    merged.merge(std::move(removal));
    commit(*aut, merged);
    CHECK(ids(runs_of(*aut)) == std::vector<std::string>{"a"});
    CHECK(events_of(*aut, "a").size() == 2);
  }
  SECTION("rows and blobs written again keep only the newest") {
    store_batch merged;
    merged.runs.push_back(row("a", 2, {{"v", 1}}));
    merged.metrics.push_back({"a", {{"v", 1}}});
    merged.artifacts.push_back({"a", {{"v", 1}}});
    store_batch newer;
    newer.runs.push_back(row("a", 2, {{"v", 2}}));
    newer.metrics.push_back({"a", {{"v", 2}}});
    merged.merge(std::move(newer));
    CHECK(merged.runs.size() == 1);
    CHECK(merged.metrics.size() == 1);
    CHECK(merged.artifacts.size() == 1);
    commit(*aut, merged);
    auto runs = runs_of(*aut);
    REQUIRE(runs.size() == 2);
    CHECK(runs[1].record == json{{"v", 2}});
    CHECK(runs[1].metrics == json{{"v", 2}});
    CHECK(runs[1].artifacts == json{{"v", 1}});
  }
}

TEST_CASE("a batch is empty until something is put in it", "[store]") {
  store_batch b;
  CHECK(b.empty());
  b.merge(store_batch{});
  CHECK(b.empty());
  store_batch removal;
  removal.removed.push_back("a");
  b.merge(std::move(removal));
  CHECK_FALSE(b.empty());
  CHECK(run_with_events("a", 1, 0).empty() == false);
  store_batch events;
  events.events.push_back({"", 1, json::object()});
  CHECK_FALSE(events.empty());
}

TEST_CASE("trim keeps the newest events of each scope", "[store]") {
  temp_dir dir;
  auto aut = open_store(dir / "corral.db");
  store_batch b;
  for (std::uint64_t seq = 1; seq <= 20; ++seq) {
    b.events.push_back({"a", seq, json::object()});
    b.events.push_back({"", seq, json::object()});
  }
  for (std::uint64_t seq = 1; seq <= 2; ++seq)
    b.events.push_back({"b", seq, json::object()});
  commit(*aut, b);

  auto trimmed = aut->trim_events(3, 5);
  REQUIRE(trimmed);
  CHECK(seqs(events_of(*aut, "a")) == std::vector<std::uint64_t>{18, 19, 20});
  CHECK(seqs(events_of(*aut, "b")) == std::vector<std::uint64_t>{1, 2});
  CHECK(seqs(events_of(*aut, ""))
        == std::vector<std::uint64_t>{16, 17, 18, 19, 20});

  REQUIRE(aut->trim_events(0, 1));
  CHECK(events_of(*aut, "a").empty());
  CHECK(events_of(*aut, "b").empty());
  CHECK(seqs(events_of(*aut, "")) == std::vector<std::uint64_t>{20});
}

TEST_CASE("a batch that fails midway commits nothing", "[store]") {
  temp_dir dir;
  auto path = dir / "corral.db";
  auto aut = open_store(path);
  commit(*aut, run_with_events("a", 1, 1));
  // Behind the store's back the blobs table goes away, so the batch fails
  // at its metrics, after its run rows were written.
  raw_db db{path};
  db.exec("ALTER TABLE run_blobs RENAME TO elsewhere");

  auto b = run_with_events("b", 2, 2);
  b.runs.push_back(row("a", 1, {{"changed", true}}));
  b.metrics.push_back({"b", json::object()});
  auto done = aut->commit(b);
  REQUIRE_FALSE(done);
  CHECK(done.error().message.find(path) != std::string::npos);
  CHECK(done.error().message.find("run_blobs") != std::string::npos);

  CHECK(db.scalar("SELECT group_concat(id) FROM runs") == "a");
  CHECK(db.scalar("SELECT record FROM runs") == R"({"id":"a"})");
  CHECK(db.scalar("SELECT count(*) FROM events") == "1");

  // The store stays usable: the failed transaction is gone.
  db.exec("ALTER TABLE elsewhere RENAME TO run_blobs");
  commit(*aut, b);
  CHECK(ids(runs_of(*aut)) == std::vector<std::string>{"a", "b"});
}

// ---------------------------------------------------------------- migration

TEST_CASE("a version 1 database is migrated with its data", "[store]") {
  temp_dir dir;
  auto path = dir / "corral.db";
  make_v1_database(path);
  {
    auto aut = open_store(path);
    CHECK(aut->found_version() == 1);
    auto runs = runs_of(*aut);
    REQUIRE(runs.size() == 1);
    CHECK(runs[0].id == "old-1");
    CHECK(runs[0].seq == 7);
    CHECK(runs[0].ended);
    CHECK(runs[0].record == json{{"state", "exited"}});
    CHECK(runs[0].metrics.is_null());
    CHECK(seqs(events_of(*aut, "old-1")) == std::vector<std::uint64_t>{1, 2});
    CHECK(events_of(*aut, "").size() == 1);

    store_batch b;
    b.metrics.push_back({"old-1", {{"loss", 0.5}}});
    commit(*aut, b);
    CHECK(runs_of(*aut)[0].metrics == json{{"loss", 0.5}});
  }
  raw_db db{path};
  CHECK(db.scalar("SELECT value FROM meta WHERE key = 'schema_version'")
        == "2");
  CHECK(db.scalar("SELECT value FROM meta WHERE key = 'app'") == "corral");
  CHECK(db.scalar("SELECT name FROM sqlite_master WHERE name = 'runs_seq'")
        == "runs_seq");
  CHECK(open_store(path)->found_version() == 2);
}

TEST_CASE("a migration that fails is rolled back and refused", "[store]") {
  temp_dir dir;
  auto path = dir / "corral.db";
  make_v1_database(path);
  {
    // Step 2 creates run_blobs, which this file already has.
    raw_db db{path};
    db.exec("CREATE TABLE run_blobs(x)");
  }
  require_refused(path, "migrating from schema version 1 to 2 failed");
  raw_db db{path};
  CHECK(db.scalar("SELECT value FROM meta WHERE key = 'schema_version'")
        == "1");
}

// ----------------------------------------------------------------- refusals

TEST_CASE("files that are not a usable Corral store are refused untouched",
          "[store]") {
  temp_dir dir;
  auto path = dir / "corral.db";

  SECTION("random bytes") {
    std::mt19937 rng{42};
    std::string bytes(16384, '\0');
    for (auto& c : bytes)
      c = static_cast<char>(rng());
    write_bytes(path, bytes);
    require_refused(path, "is not a SQLite database");
  }
  SECTION("a short text file") {
    write_bytes(path, "hello\n");
    require_refused(path, "is not a SQLite database");
  }
  SECTION("a store truncated to half its size") {
    {
      auto aut = open_store(path);
      store_batch b;
      for (int i = 0; i < 200; ++i) {
        auto id = "run-" + std::to_string(i);
        b.runs.push_back(row(id, i, {{"pad", std::string(500, 'x')}}));
        b.events.push_back({id, 1, {{"pad", std::string(500, 'y')}}});
      }
      commit(*aut, b);
    }
    auto size = std::filesystem::file_size(path);
    REQUIRE(size > 100000);
    std::filesystem::resize_file(path, size / 2);
    auto before = read_bytes(path);
    auto aut = state_store::open(path);
    REQUIRE_FALSE(aut);
    INFO(aut.error().message);
    CHECK(aut.error().message.find(path) != std::string::npos);
    CHECK(aut.error().message.find("it was not modified") != std::string::npos);
    CHECK(read_bytes(path) == before);
  }
  SECTION("a store of a newer schema version") {
    { open_store(path); }
    {
      raw_db db{path};
      db.exec("UPDATE meta SET value = '99' WHERE key = 'schema_version'");
    }
    require_refused(path, "has schema version 99, newer than this corral (2)");
  }
  SECTION("a store with a schema version that is not a number") {
    { open_store(path); }
    {
      raw_db db{path};
      db.exec("UPDATE meta SET value = '2x' WHERE key = 'schema_version'");
    }
    require_refused(path, "has an invalid schema version '2x'");
  }
  SECTION("a SQLite database without Corral's meta table") {
    {
      raw_db db{path};
      db.exec("CREATE TABLE notes(text TEXT); INSERT INTO notes VALUES('x')");
    }
    require_refused(path, "was not written by Corral");
  }
  SECTION("a SQLite database whose meta names another app") {
    {
      raw_db db{path};
      db.exec("CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);"
              "INSERT INTO meta VALUES('app', 'other'), ('schema_version', "
              "'1')");
    }
    require_refused(path, "was not written by Corral");
  }
}

TEST_CASE("a store in a missing directory cannot be opened", "[store]") {
  temp_dir dir;
  auto path = dir / "no/such/dir/corral.db";
  auto aut = state_store::open(path);
  REQUIRE_FALSE(aut);
  CHECK(aut.error().message.find(path) != std::string::npos);
  CHECK_FALSE(std::filesystem::exists(path));
}

// ------------------------------------------------------------ crash safety

namespace {

/// The child's side: commits numbered batches until it is killed. Batch n
/// sets run "r" to {"n": n}, its metrics to the same, and adds event n to
/// both "r" and the daemon stream. Only the store and _exit here: no
/// Catch2 in a forked child.
[[noreturn]] void commit_until_killed(const std::string& path) {
  try {
    auto store = state_store::open(path);
    if (!store)
      ::_exit(2);
    auto runs = (*store)->load_runs();
    if (!runs)
      ::_exit(3);
    std::uint64_t n
        = runs->empty() ? 0 : (*runs)[0].record.at("n").get<std::uint64_t>();
    // Spans several pages, so a kill can land inside a batch's writes.
    const std::string pad(6000, 'p');
    for (;;) {
      ++n;
      store_batch b;
      b.runs.push_back(row("r", 1, {{"n", n}, {"pad", pad}}));
      b.metrics.push_back({"r", {{"n", n}}});
      b.events.push_back({"r", n, {{"n", n}, {"pad", pad}}});
      b.events.push_back({"", n, {{"n", n}}});
      if (!(*store)->commit(b))
        ::_exit(4);
    }
  } catch (...) {
    ::_exit(5);
  }
}

/// The last batch number found whole in the store at `path`; fails the
/// test if any batch is there only in part, or with a gap before it.
std::uint64_t last_whole_batch(const std::string& path) {
  auto aut = open_store(path);
  auto runs = runs_of(*aut);
  auto run_events = events_of(*aut, "r");
  auto daemon_events = events_of(*aut, "");
  if (runs.empty()) {
    CHECK(run_events.empty());
    CHECK(daemon_events.empty());
    return 0;
  }
  REQUIRE(runs.size() == 1);
  auto n = runs[0].record.at("n").get<std::uint64_t>();
  CHECK(runs[0].metrics == json{{"n", n}});
  REQUIRE(run_events.size() == n);
  REQUIRE(daemon_events.size() == n);
  for (std::uint64_t i = 0; i < n; ++i) {
    CHECK(run_events[i].seq == i + 1);
    CHECK(daemon_events[i].seq == i + 1);
  }
  return n;
}

} // namespace

TEST_CASE("a store killed at random moments keeps every committed batch whole",
          "[store]") {
  temp_dir dir;
  auto path = dir / "corral.db";
  std::mt19937 rng{std::random_device{}()};
  std::uniform_int_distribution<int> delay_ms{2, 60};
  std::uint64_t last = 0;
  for (int round = 0; round < 20; ++round) {
    auto delay = std::chrono::milliseconds{delay_ms(rng)};
    INFO("round " << round << ", killed after " << delay.count() << " ms");
    pid_t pid = ::fork();
    REQUIRE(pid >= 0);
    if (pid == 0)
      commit_until_killed(path);
    std::this_thread::sleep_for(delay);
    REQUIRE(::kill(pid, SIGKILL) == 0);
    int wstatus = 0;
    REQUIRE(::waitpid(pid, &wstatus, 0) == pid);
    INFO("child exit status "
         << (WIFEXITED(wstatus) ? WEXITSTATUS(wstatus) : -1));
    REQUIRE(WIFSIGNALED(wstatus));
    REQUIRE(WTERMSIG(wstatus) == SIGKILL);

    auto n = last_whole_batch(path);
    CHECK(n >= last);
    last = n;
    raw_db db{path};
    CHECK(db.scalar("PRAGMA quick_check") == "ok");
  }
  // Some batches got in between the kills.
  CHECK(last > 0);
}
