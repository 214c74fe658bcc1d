// The kept answers of GET /api/v1/runs: served only while nothing changed
// and while young enough.

#include <catch2/catch.hpp>

#include "services/listing_cache.hpp"

using namespace corral;
using namespace std::chrono_literals;

TEST_CASE("a kept listing is served until a change or its age ends it",
          "[listing]") {
  listing_cache aut{1s};
  auto t0 = listing_cache::clock::now();
  CHECK_FALSE(aut.find("", t0));
  aut.store("", aut.generation(), "all", t0);
  aut.store("state\x1frunning\x1e", aut.generation(), "running", t0);
  CHECK(aut.find("", t0 + 999ms)->body == "all");
  CHECK_FALSE(aut.find("", t0 + 999ms)->refresh);
  CHECK(aut.find("state\x1frunning\x1e", t0)->body == "running");
  // Older than max_age: served, and the first caller is told to refresh.
  CHECK(aut.find("", t0 + 1s)->refresh);
  CHECK(aut.find("", t0 + 1500ms)->body == "all");
  CHECK_FALSE(aut.find("", t0 + 1500ms)->refresh);
  // Far too old: not served.
  CHECK_FALSE(aut.find("", t0 + 2s));
  // A new answer starts the clock again.
  aut.store("", aut.generation(), "all again", t0 + 2s);
  CHECK(aut.find("", t0 + 2500ms)->body == "all again");
  aut.changed();
  CHECK_FALSE(aut.find("", t0));
  CHECK_FALSE(aut.find("state\x1frunning\x1e", t0));
}

TEST_CASE("an answer read before a change is never served", "[listing]") {
  listing_cache aut{1s};
  auto before = aut.generation();
  aut.changed(); // a run changed while the listing was being made
  aut.store("", before, "stale");
  CHECK_FALSE(aut.find(""));
  aut.store("", aut.generation(), "fresh");
  CHECK(aut.find("")->body == "fresh");
}

TEST_CASE("made-up filters cannot grow the cache without bound", "[listing]") {
  listing_cache aut{1s};
  auto t0 = listing_cache::clock::now();
  for (int i = 0; i < 1000; ++i)
    aut.store("experiment\x1f" + std::to_string(i) + "\x1e", aut.generation(),
              "x", t0);
  // Still answers the newest, and the map was emptied on the way.
  CHECK(aut.find("experiment\x1f"
                 "999\x1e",
                 t0)
            ->body
        == "x");
  CHECK_FALSE(aut.find("experiment\x1f"
                       "0\x1e",
                       t0));
}
