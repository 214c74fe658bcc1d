#include "services/state_store.hpp"

#include <errno.h>
#include <sqlite3.h>
#include <sys/stat.h>

#include <algorithm>
#include <charconv>
#include <iterator>
#include <limits>
#include <string_view>
#include <unordered_set>
#include <utility>

namespace corral {

// ------------------------------------------------------------- store_batch

bool store_batch::empty() const {
  return runs.empty() && metrics.empty() && artifacts.empty() && events.empty()
         && removed.empty();
}

void store_batch::merge(store_batch&& other) {
  // A batch applies its removals first, so an older write of a run that
  // `other` removes must go now, or the merged batch would bring it back.
  std::unordered_set<std::string> gone;
  for (auto& id : other.removed)
    if (!id.empty())
      gone.insert(id);
  auto ids = [](const auto& rows) {
    std::unordered_set<std::string> out;
    for (auto& row : rows)
      out.insert(row.id);
    return out;
  };
  auto rewritten_runs = ids(other.runs);
  auto rewritten_metrics = ids(other.metrics);
  auto rewritten_artifacts = ids(other.artifacts);
  std::erase_if(runs, [&](const run_row& r) {
    return gone.contains(r.id) || rewritten_runs.contains(r.id);
  });
  std::erase_if(metrics, [&](const blob& b) {
    return gone.contains(b.id) || rewritten_metrics.contains(b.id);
  });
  std::erase_if(artifacts, [&](const blob& b) {
    return gone.contains(b.id) || rewritten_artifacts.contains(b.id);
  });
  std::erase_if(events,
                [&](const stored_event& e) { return gone.contains(e.scope); });

  auto append = [](auto& to, auto& from) {
    to.insert(to.end(), std::make_move_iterator(from.begin()),
              std::make_move_iterator(from.end()));
  };
  append(runs, other.runs);
  append(metrics, other.metrics);
  append(artifacts, other.artifacts);
  append(events, other.events);
  append(removed, other.removed);
}

// ------------------------------------------------------------- state_store

namespace {

struct db_closer {
  void operator()(sqlite3* db) const { sqlite3_close_v2(db); }
};
struct stmt_finalizer {
  void operator()(sqlite3_stmt* stmt) const { sqlite3_finalize(stmt); }
};
using db_ptr = std::unique_ptr<sqlite3, db_closer>;
using stmt_ptr = std::unique_ptr<sqlite3_stmt, stmt_finalizer>;

/// Resets a cached statement when its use ends, however it ends: a SELECT
/// left unreset would hold its read transaction open and stall WAL
/// checkpoints.
class stmt_use {
public:
  explicit stmt_use(const stmt_ptr& stmt) : stmt_(stmt.get()) {}
  ~stmt_use() {
    sqlite3_reset(stmt_);
    sqlite3_clear_bindings(stmt_);
  }
  stmt_use(const stmt_use&) = delete;
  stmt_use& operator=(const stmt_use&) = delete;
  sqlite3_stmt* get() const { return stmt_; }

private:
  sqlite3_stmt* stmt_;
};

// The schema, one step per version: step N turns version N-1 into N. A
// new file runs them all; steps are never edited once released, only
// appended (with state_store::schema_version raised to match).
constexpr const char* migrations[] = {
    // 1: runs and their events.
    "CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);"
    "CREATE TABLE runs(id TEXT PRIMARY KEY, seq INTEGER NOT NULL,"
    " ended INTEGER NOT NULL, record TEXT NOT NULL);"
    "CREATE TABLE events(scope TEXT NOT NULL, seq INTEGER NOT NULL,"
    " event TEXT NOT NULL, PRIMARY KEY(scope, seq));",
    // 2: metric state and artifact lists ('metrics', 'artifacts'); runs
    // listed in creation order.
    "CREATE TABLE run_blobs(run TEXT NOT NULL, kind TEXT NOT NULL,"
    " value TEXT NOT NULL, PRIMARY KEY(run, kind));"
    "CREATE INDEX runs_seq ON runs(seq);",
};
static_assert(std::size(migrations) == state_store::schema_version);

constexpr std::string_view metrics_kind = "metrics";
constexpr std::string_view artifacts_kind = "artifacts";
constexpr std::string_view not_modified = "; it was not modified";

std::string sqlite_message(sqlite3* db) {
  return db != nullptr ? sqlite3_errmsg(db) : "out of memory";
}

/// The text of a JSON value; invalid UTF-8 in strings is replaced rather
/// than thrown on, so one odd log line cannot fail a whole batch.
std::string dump(const nlohmann::json& value) {
  return value.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

/// Sizes and seqs as SQLite's 64-bit signed integers; larger ones would
/// not occur in practice and are clamped rather than wrapped.
sqlite3_int64 to_int64(std::uint64_t value) {
  constexpr auto max = std::numeric_limits<sqlite3_int64>::max();
  return value > static_cast<std::uint64_t>(max)
             ? max
             : static_cast<sqlite3_int64>(value);
}

int bind_text(sqlite3_stmt* stmt, int index, std::string_view text) {
  // SQLITE_STATIC: every bound string outlives the statement's step.
  return sqlite3_bind_text64(stmt, index, text.data(), text.size(),
                             SQLITE_STATIC, SQLITE_UTF8);
}

std::string_view column_text(sqlite3_stmt* stmt, int column) {
  auto* text = reinterpret_cast<const char*>(sqlite3_column_text(stmt, column));
  if (text == nullptr)
    return {};
  return {text, static_cast<std::size_t>(sqlite3_column_bytes(stmt, column))};
}

std::optional<nlohmann::json> parse(std::string_view text) {
  auto value = nlohmann::json::parse(text.begin(), text.end(), nullptr, false);
  if (value.is_discarded())
    return std::nullopt;
  return value;
}

/// Runs fixed SQL (no data in it); the error message, or nullopt.
std::optional<std::string> exec(sqlite3* db, const char* sql) {
  char* message = nullptr;
  if (sqlite3_exec(db, sql, nullptr, nullptr, &message) == SQLITE_OK)
    return std::nullopt;
  std::string out = message != nullptr ? message : sqlite_message(db);
  sqlite3_free(message);
  return out;
}

result<stmt_ptr> prepare(sqlite3* db, const std::string& path,
                         std::string_view sql, unsigned flags = 0) {
  sqlite3_stmt* raw = nullptr;
  if (sqlite3_prepare_v3(db, sql.data(), static_cast<int>(sql.size()), flags,
                         &raw, nullptr)
      != SQLITE_OK)
    return make_error(ec::internal, "state store " + path + ": cannot prepare '"
                                        + std::string{sql}
                                        + "': " + sqlite_message(db));
  return stmt_ptr{raw};
}

/// What open() learns about an existing file before changing anything.
struct found_schema {
  /// 0 for a database with nothing in it.
  int version = 0;
};

/// Whether `path` is a Corral store of a version this build can use, read
/// without writing. Refusals name the file and what to do.
result<found_schema> inspect(sqlite3* db, const std::string& path) {
  auto refuse = [&](std::string what) {
    return make_error(ec::internal,
                      path + " " + what + std::string{not_modified});
  };
  auto unreadable = [&](int rc) {
    switch (rc & 0xff) {
      case SQLITE_NOTADB:
        return refuse("is not a SQLite database (corrupt or another file): "
                      "move it aside to start with an empty store");
      case SQLITE_CORRUPT:
        return refuse("is a corrupt SQLite database (" + sqlite_message(db)
                      + "): move it aside to start with an empty store");
      default:
        return refuse("cannot be read (" + sqlite_message(db) + ")");
    }
  };

  // The first statement reads the header and the schema: this is where a
  // file that is not a database shows.
  sqlite3_stmt* raw = nullptr;
  int rc = sqlite3_prepare_v2(
      db,
      "SELECT count(*), count(*) FILTER (WHERE type = 'table' AND name = "
      "'meta') FROM sqlite_master",
      -1, &raw, nullptr);
  stmt_ptr objects{raw};
  if (rc != SQLITE_OK)
    return unreadable(rc);
  rc = sqlite3_step(objects.get());
  if (rc != SQLITE_ROW)
    return unreadable(rc);
  auto object_count = sqlite3_column_int64(objects.get(), 0);
  bool has_meta = sqlite3_column_int64(objects.get(), 1) > 0;
  objects.reset();

  rc = sqlite3_prepare_v2(db, "PRAGMA quick_check", -1, &raw, nullptr);
  stmt_ptr check{raw};
  if (rc != SQLITE_OK)
    return unreadable(rc);
  rc = sqlite3_step(check.get());
  if (rc != SQLITE_ROW)
    return unreadable(rc);
  auto verdict = std::string{column_text(check.get(), 0)};
  if (verdict != "ok")
    return refuse("fails SQLite's integrity check (" + verdict
                  + "): move it aside to start with an empty store");
  check.reset();

  // Nothing in it at all: a new file, or one whose creation was killed
  // before its first commit. There is nothing to lose by creating here.
  if (object_count == 0)
    return found_schema{0};

  auto foreign = [&] {
    return refuse("was not written by Corral (no Corral metadata): move it "
                  "aside or use another state dir");
  };
  if (!has_meta)
    return foreign();
  rc = sqlite3_prepare_v2(db,
                          "SELECT (SELECT value FROM meta WHERE key = 'app'),"
                          " (SELECT value FROM meta WHERE key = "
                          "'schema_version')",
                          -1, &raw, nullptr);
  stmt_ptr meta{raw};
  if (rc != SQLITE_OK || sqlite3_step(meta.get()) != SQLITE_ROW)
    return foreign();
  if (column_text(meta.get(), 0) != "corral")
    return foreign();
  auto text = column_text(meta.get(), 1);
  int version = 0;
  auto [end, errc]
      = std::from_chars(text.data(), text.data() + text.size(), version);
  if (errc != std::errc{} || end != text.data() + text.size() || version < 1)
    return refuse("has an invalid schema version '" + std::string{text}
                  + "' in its Corral metadata: move it aside to start with an "
                    "empty store");
  if (version > state_store::schema_version)
    return refuse("has schema version " + std::to_string(version)
                  + ", newer than this corral ("
                  + std::to_string(state_store::schema_version)
                  + "): run the newer corral, or move the file aside");
  return found_schema{version};
}

/// Brings the schema from `from` to the current version in one transaction;
/// on failure rolls back, so the file keeps its old schema and data.
status migrate(sqlite3* db, const std::string& path, int from) {
  auto fail = [&](const std::string& what) {
    if (sqlite3_get_autocommit(db) == 0)
      exec(db, "ROLLBACK");
    return make_error(
        ec::internal,
        path + ": migrating from schema version " + std::to_string(from)
            + " to " + std::to_string(state_store::schema_version) + " failed ("
            + what + "); rolled back, the file was not modified");
  };
  if (auto err = exec(db, "BEGIN IMMEDIATE"))
    return fail(*err);
  // Another process may have migrated between inspect() and the lock.
  auto again = inspect(db, path);
  if (!again)
    return fail(again.error().message);
  for (int step = again->version + 1; step <= state_store::schema_version;
       ++step)
    if (auto err = exec(db, migrations[step - 1]))
      return fail("step " + std::to_string(step) + ": " + *err);
  auto upsert
      = prepare(db, path,
                "INSERT INTO meta(key, value) VALUES(?1, ?2)"
                " ON CONFLICT(key) DO UPDATE SET value = excluded.value");
  if (!upsert)
    return fail(upsert.error().message);
  auto version = std::to_string(state_store::schema_version);
  const std::pair<std::string_view, std::string_view> rows[]
      = {{"app", "corral"}, {"schema_version", version}};
  for (auto [key, value] : rows) {
    sqlite3_reset(upsert->get());
    bind_text(upsert->get(), 1, key);
    bind_text(upsert->get(), 2, value);
    if (sqlite3_step(upsert->get()) != SQLITE_DONE)
      return fail(sqlite_message(db));
  }
  upsert->reset();
  if (auto err = exec(db, "COMMIT"))
    return fail(*err);
  return ok;
}

} // namespace

struct state_store::impl {
  std::string path;
  int found_version = 0;
  // Declared first, so destroyed after the statements.
  db_ptr db;
  stmt_ptr delete_run;
  stmt_ptr delete_blobs;
  stmt_ptr delete_events;
  stmt_ptr upsert_run;
  stmt_ptr upsert_blob;
  stmt_ptr upsert_event;
  stmt_ptr select_runs;
  stmt_ptr select_events;
  stmt_ptr select_scopes;
  stmt_ptr trim_scope;

  error fail(std::string_view what) const {
    return make_error(ec::internal, "state store " + path + ": "
                                        + std::string{what} + ": "
                                        + sqlite_message(db.get()));
  }

  /// Ends a failed write transaction; returns `err` for the caller.
  error roll_back(error err) const {
    if (sqlite3_get_autocommit(db.get()) == 0)
      exec(db.get(), "ROLLBACK");
    return err;
  }

  /// Steps a write statement to its end.
  bool run(const stmt_use& use) const {
    return sqlite3_step(use.get()) == SQLITE_DONE;
  }

  status apply(const store_batch& batch);
};

status state_store::impl::apply(const store_batch& batch) {
  for (auto& id : batch.removed) {
    if (id.empty())
      continue;
    for (auto* stmt : {&delete_run, &delete_blobs, &delete_events}) {
      stmt_use use{*stmt};
      bind_text(use.get(), 1, id);
      if (!run(use))
        return fail("removing run " + id);
    }
  }
  for (auto& r : batch.runs) {
    stmt_use use{upsert_run};
    auto record = dump(r.record);
    bind_text(use.get(), 1, r.id);
    sqlite3_bind_int64(use.get(), 2, r.seq);
    sqlite3_bind_int(use.get(), 3, r.ended ? 1 : 0);
    bind_text(use.get(), 4, record);
    if (!run(use))
      return fail("writing run " + r.id);
  }
  const std::pair<const std::vector<store_batch::blob>*, std::string_view>
      kinds[]
      = {{&batch.metrics, metrics_kind}, {&batch.artifacts, artifacts_kind}};
  for (auto [blobs, kind] : kinds) {
    for (auto& b : *blobs) {
      stmt_use use{upsert_blob};
      auto value = dump(b.value);
      bind_text(use.get(), 1, b.id);
      bind_text(use.get(), 2, kind);
      bind_text(use.get(), 3, value);
      if (!run(use))
        return fail("writing " + std::string{kind} + " of run " + b.id);
    }
  }
  for (auto& e : batch.events) {
    stmt_use use{upsert_event};
    auto event = dump(e.event);
    bind_text(use.get(), 1, e.scope);
    sqlite3_bind_int64(use.get(), 2, to_int64(e.seq));
    bind_text(use.get(), 3, event);
    if (!run(use))
      return fail("writing event " + std::to_string(e.seq) + " of '" + e.scope
                  + "'");
  }
  return ok;
}

result<std::unique_ptr<state_store>>
state_store::open(const std::string& path) {
  // Create only what does not exist: an existing file is opened read-write
  // without SQLITE_OPEN_CREATE and is not written until it passed every
  // check.
  struct stat st {};
  bool missing = ::stat(path.c_str(), &st) != 0 && errno == ENOENT;
  int flags = SQLITE_OPEN_READWRITE;
  if (missing)
    flags |= SQLITE_OPEN_CREATE;
  sqlite3* raw = nullptr;
  int rc = sqlite3_open_v2(path.c_str(), &raw, flags, nullptr);
  db_ptr db{raw};
  if (rc != SQLITE_OK)
    return make_error(ec::internal, "cannot open state store " + path + ": "
                                        + sqlite_message(db.get()));
  auto* d = db.get();
  sqlite3_extended_result_codes(d, 1);
  sqlite3_busy_timeout(d, 5000);
  // Closing the last connection checkpoints the WAL into the main file. A
  // file we refuse must keep its bytes, even with a committed WAL beside
  // it (a newer corral killed), so that waits until the checks pass.
  sqlite3_db_config(d, SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, 1, nullptr);

  auto found = inspect(d, path);
  if (!found)
    return found.error();
  // Connection settings, nothing written yet.
  if (auto err = exec(d, "PRAGMA foreign_keys = ON"))
    return make_error(ec::internal, "state store " + path + ": " + *err);
  if (found->version < schema_version)
    if (auto migrated = migrate(d, path, found->version); !migrated)
      return migrated.error();

  // WAL last: switching a rollback-journal file to WAL rewrites its header,
  // which a refused file must not see. In WAL, synchronous=NORMAL loses no
  // committed transaction to a process kill (only, at worst, the last ones
  // to a power cut) and commits without an fsync.
  {
    auto mode = prepare(d, path, "PRAGMA journal_mode = WAL");
    if (!mode)
      return mode.error();
    if (sqlite3_step(mode->get()) != SQLITE_ROW)
      return make_error(ec::internal, "state store " + path
                                          + ": cannot switch to WAL mode: "
                                          + sqlite_message(d));
    auto now = std::string{column_text(mode->get(), 0)};
    if (now != "wal")
      return make_error(ec::internal,
                        "state store " + path + ": SQLite keeps journal mode '"
                            + now
                            + "' instead of WAL: put the state dir on a local "
                              "filesystem");
  }
  if (auto err = exec(d, "PRAGMA synchronous = NORMAL"))
    return make_error(ec::internal, "state store " + path + ": " + *err);
  sqlite3_db_config(d, SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, 0, nullptr);

  auto store = std::unique_ptr<state_store>(new state_store());
  store->impl_ = std::make_unique<impl>();
  auto& m = *store->impl_;
  m.path = path;
  m.found_version = found->version;
  m.db = std::move(db);
  struct statement {
    stmt_ptr* target;
    std::string_view sql;
  };
  const statement statements[] = {
      {&m.delete_run, "DELETE FROM runs WHERE id = ?1"},
      {&m.delete_blobs, "DELETE FROM run_blobs WHERE run = ?1"},
      {&m.delete_events, "DELETE FROM events WHERE scope = ?1"},
      {&m.upsert_run,
       "INSERT INTO runs(id, seq, ended, record) VALUES(?1, ?2, ?3, ?4)"
       " ON CONFLICT(id) DO UPDATE SET seq = excluded.seq,"
       " ended = excluded.ended, record = excluded.record"},
      {&m.upsert_blob,
       "INSERT INTO run_blobs(run, kind, value) VALUES(?1, ?2, ?3)"
       " ON CONFLICT(run, kind) DO UPDATE SET value = "
       "excluded.value"},
      {&m.upsert_event,
       "INSERT OR REPLACE INTO events(scope, seq, event) VALUES(?1, ?2, ?3)"},
      {&m.select_runs,
       "SELECT r.id, r.seq, r.ended, r.record, m.value, a.value FROM runs r"
       " LEFT JOIN run_blobs m ON m.run = r.id AND m.kind = 'metrics'"
       " LEFT JOIN run_blobs a ON a.run = r.id AND a.kind = 'artifacts'"
       " ORDER BY r.seq, r.id"},
      {&m.select_events, "SELECT seq, event FROM events WHERE scope = ?1"
                         " ORDER BY seq DESC LIMIT ?2"},
      {&m.select_scopes, "SELECT DISTINCT scope FROM events"},
      // The (keep+1)-th newest event and all older ones; none when the scope
      // holds no more than `keep`.
      {&m.trim_scope, "DELETE FROM events WHERE scope = ?1 AND seq <= "
                      "(SELECT seq FROM events WHERE scope = ?1"
                      " ORDER BY seq DESC LIMIT 1 OFFSET ?2)"},
  };
  for (auto& s : statements) {
    auto stmt = prepare(m.db.get(), path, s.sql, SQLITE_PREPARE_PERSISTENT);
    if (!stmt)
      return stmt.error();
    *s.target = std::move(*stmt);
  }
  return store;
}

state_store::~state_store() = default;

status state_store::commit(const store_batch& batch) {
  auto& m = *impl_;
  if (batch.empty())
    return ok;
  if (auto err = exec(m.db.get(), "BEGIN IMMEDIATE"))
    return make_error(ec::internal, "state store " + m.path
                                        + ": cannot begin a commit: " + *err);
  if (auto applied = m.apply(batch); !applied)
    return m.roll_back(applied.error());
  if (auto err = exec(m.db.get(), "COMMIT"))
    return m.roll_back(make_error(
        ec::internal, "state store " + m.path + ": commit failed: " + *err));
  return ok;
}

result<std::vector<stored_run>> state_store::load_runs() const {
  auto& m = *impl_;
  stmt_use use{m.select_runs};
  auto* stmt = use.get();
  std::vector<stored_run> out;
  int rc;
  while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
    stored_run r;
    r.id = std::string{column_text(stmt, 0)};
    r.seq = sqlite3_column_int64(stmt, 1);
    r.ended = sqlite3_column_int64(stmt, 2) != 0;
    auto json_at = [&](int column, nlohmann::json& to) {
      if (sqlite3_column_type(stmt, column) == SQLITE_NULL)
        return true;
      auto value = parse(column_text(stmt, column));
      if (!value)
        return false;
      to = std::move(*value);
      return true;
    };
    if (!json_at(3, r.record) || !json_at(4, r.metrics)
        || !json_at(5, r.artifacts))
      return make_error(ec::internal, "state store " + m.path + ": run " + r.id
                                          + " holds text that is not JSON");
    out.push_back(std::move(r));
  }
  if (rc != SQLITE_DONE)
    return m.fail("loading runs");
  return out;
}

result<std::vector<stored_event>>
state_store::load_events(const std::string& scope, std::size_t limit) const {
  auto& m = *impl_;
  stmt_use use{m.select_events};
  auto* stmt = use.get();
  bind_text(stmt, 1, scope);
  sqlite3_bind_int64(stmt, 2, to_int64(limit));
  std::vector<stored_event> out;
  int rc;
  while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
    auto event = parse(column_text(stmt, 1));
    auto seq = sqlite3_column_int64(stmt, 0);
    if (!event)
      return make_error(ec::internal, "state store " + m.path + ": event "
                                          + std::to_string(seq) + " of '"
                                          + scope + "' is not JSON");
    out.push_back({scope, static_cast<std::uint64_t>(seq), std::move(*event)});
  }
  if (rc != SQLITE_DONE)
    return m.fail("loading events of '" + scope + "'");
  std::reverse(out.begin(), out.end());
  return out;
}

status state_store::trim_events(std::size_t keep_per_run,
                                std::size_t keep_daemon) {
  auto& m = *impl_;
  if (auto err = exec(m.db.get(), "BEGIN IMMEDIATE"))
    return make_error(ec::internal,
                      "state store " + m.path
                          + ": cannot begin trimming events: " + *err);
  std::vector<std::string> scopes;
  {
    stmt_use use{m.select_scopes};
    int rc;
    while ((rc = sqlite3_step(use.get())) == SQLITE_ROW)
      scopes.emplace_back(column_text(use.get(), 0));
    if (rc != SQLITE_DONE)
      return m.roll_back(m.fail("listing event scopes"));
  }
  for (auto& scope : scopes) {
    stmt_use use{m.trim_scope};
    bind_text(use.get(), 1, scope);
    sqlite3_bind_int64(use.get(), 2,
                       to_int64(scope.empty() ? keep_daemon : keep_per_run));
    if (!m.run(use))
      return m.roll_back(m.fail("trimming events of '" + scope + "'"));
  }
  if (auto err = exec(m.db.get(), "COMMIT"))
    return m.roll_back(
        make_error(ec::internal, "state store " + m.path
                                     + ": trimming events failed: " + *err));
  return ok;
}

int state_store::found_version() const {
  return impl_->found_version;
}

std::string state_store::path() const {
  return impl_->path;
}

} // namespace corral
