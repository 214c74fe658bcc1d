#include "services/scheduler.hpp"

#include <catch2/catch.hpp>

#include <algorithm>
#include <map>
#include <random>
#include <string>
#include <vector>

using namespace corral;
using namespace std::chrono_literals;

namespace {

using time_point = scheduler::clock::time_point;

sched_request run(std::string id, int gpus, int priority = 0,
                  std::uint64_t seq = 0, std::string experiment = "exp",
                  std::optional<int> max_concurrent = std::nullopt) {
  return sched_request{std::move(id), std::move(experiment), gpus, priority,
                       seq,           max_concurrent};
}

std::vector<std::string> ids(const std::vector<placement>& ps) {
  std::vector<std::string> out;
  for (const auto& p : ps)
    out.push_back(p.id);
  return out;
}

using strings = std::vector<std::string>;
using ints = std::vector<int>;

} // namespace

TEST_CASE("twelve runs on four gpus never share a device and all get placed",
          "[scheduler]") {
  // Timeout 0: every run that does not fit starves at once (strict order);
  // one hour: small runs pass large ones freely (backfill).
  auto timeout = GENERATE(0ms, std::chrono::milliseconds{1h});
  auto seed = GENERATE(range(1u, 21u));
  INFO("seed " << seed << ", timeout " << timeout.count() << "ms");
  std::mt19937 rng{seed};
  time_point now{};
  scheduler aut{{0, 1, 2, 3}, std::nullopt, timeout};

  std::map<std::string, sched_request> requests;
  std::vector<sched_request> queue; // the model of the queue, in order
  for (int i = 0; i < 12; ++i) {
    auto req = run("r" + std::to_string(i), 1 + static_cast<int>(rng() % 2),
                   static_cast<int>(rng() % 3), static_cast<std::uint64_t>(i));
    requests[req.id] = req;
    queue.push_back(req);
    aut.enqueue(req, now);
  }
  std::stable_sort(
      queue.begin(), queue.end(),
      [](const auto& a, const auto& b) { return a.priority > b.priority; });

  std::map<int, std::string> held; // our own view: gpu → run
  std::vector<std::string> running;
  std::set<std::string> placed;
  for (int step = 0; step < 200 && placed.size() < 12; ++step) {
    now += 1s;
    int free_before = 4 - static_cast<int>(held.size());
    auto started = aut.schedule(now);

    // Replay the walk: every run passed over did not fit the devices still
    // free at that point, and starts come out in queue order.
    std::size_t next = 0;
    int free = free_before;
    bool blocked = false;
    std::vector<sched_request> still_queued;
    for (const auto& req : queue) {
      if (next < started.size() && started[next].id == req.id) {
        CHECK_FALSE(blocked);
        free -= req.gpus;
        ++next;
      } else {
        // Behind a starving run nothing starts, fitting or not.
        if (!blocked)
          CHECK(req.gpus > free);
        if (timeout == 0ms)
          blocked = true;
        still_queued.push_back(req);
      }
    }
    CHECK(next == started.size());
    queue = still_queued;

    for (const auto& p : started) {
      CHECK(static_cast<int>(p.gpus.size()) == requests[p.id].gpus);
      CHECK(std::is_sorted(p.gpus.begin(), p.gpus.end()));
      for (int gpu : p.gpus) {
        CHECK_FALSE(held.contains(gpu));
        held[gpu] = p.id;
      }
      CHECK(aut.held_by(p.id) == p.gpus);
      CHECK(placed.insert(p.id).second);
      running.push_back(p.id);
    }
    for (int gpu = 0; gpu < 4; ++gpu) {
      auto h = aut.holder(gpu);
      if (held.contains(gpu))
        CHECK(h == held[gpu]);
      else
        CHECK_FALSE(h);
    }

    // Some of the running runs end, in a random order.
    std::shuffle(running.begin(), running.end(), rng);
    auto ending = running.empty() ? 0u : rng() % (running.size() + 1);
    for (std::size_t i = 0; i < ending; ++i) {
      aut.release(running.back());
      std::erase_if(held,
                    [&](const auto& e) { return e.second == running.back(); });
      running.pop_back();
    }
  }
  CHECK(placed.size() == 12);
  CHECK_FALSE(aut.queue_position("r0"));
}

TEST_CASE("higher priority runs start first, then submission order",
          "[scheduler]") {
  time_point now{};
  scheduler aut{{0, 1}, std::nullopt, 10min};
  aut.enqueue(run("low", 1, 0, 1), now);
  aut.enqueue(run("high", 1, 5, 3), now);
  aut.enqueue(run("early", 1, 1, 2), now);
  aut.enqueue(run("late", 1, 1, 4), now);
  CHECK(aut.queue_position("high") == 1);
  CHECK(aut.queue_position("early") == 2);
  CHECK(aut.queue_position("late") == 3);
  CHECK(aut.queue_position("low") == 4);
  CHECK_FALSE(aut.queue_position("nobody"));

  auto started = aut.schedule(now);
  CHECK(ids(started) == strings{"high", "early"});
  CHECK(started[0].gpus == ints{0});
  CHECK(started[1].gpus == ints{1});
  CHECK(aut.queue_position("late") == 1);
  CHECK(aut.queue_position("low") == 2);
  CHECK(aut.schedule(now).empty());

  aut.release("early");
  started = aut.schedule(now);
  REQUIRE(ids(started) == strings{"late"});
  CHECK(started[0].gpus == ints{1});
}

TEST_CASE("placement takes the lowest free indices of the inventory",
          "[scheduler]") {
  time_point now{};
  scheduler aut{{3, 0, 2}, std::nullopt, 10min};
  CHECK(aut.inventory() == ints{0, 2, 3});
  CHECK(aut.fits_ever(3));
  CHECK_FALSE(aut.fits_ever(4));
  aut.enqueue(run("a", 1, 0, 1), now);
  aut.enqueue(run("b", 2, 0, 2), now);
  auto started = aut.schedule(now);
  REQUIRE(started.size() == 2);
  CHECK(started[0].gpus == ints{0});
  CHECK(started[1].gpus == ints{2, 3});
  CHECK(aut.holder(0) == "a");
  CHECK(aut.holder(3) == "b");
  CHECK_FALSE(aut.holder(1));
  CHECK(aut.held_by("b") == ints{2, 3});
  CHECK(aut.held_by("nobody").empty());

  aut.release("a");
  CHECK_FALSE(aut.holder(0));
  CHECK(aut.held_by("a").empty());
  aut.enqueue(run("c", 1, 0, 3), now);
  CHECK(aut.schedule(now)[0].gpus == ints{0});
}

TEST_CASE("a small run passes a large one that does not fit yet",
          "[scheduler]") {
  time_point now{};
  scheduler aut{{0, 1, 2, 3}, std::nullopt, 10min};
  aut.enqueue(run("two", 2, 0, 1), now);
  REQUIRE(ids(aut.schedule(now)) == strings{"two"});
  aut.enqueue(run("three", 3, 0, 2), now);
  aut.enqueue(run("one", 1, 0, 3), now);
  now += 1min;
  CHECK(ids(aut.schedule(now)) == strings{"one"});
  CHECK(aut.queue_position("three") == 1);
}

TEST_CASE("a run starving past the timeout keeps devices free until it fits",
          "[scheduler]") {
  time_point now{};
  scheduler aut{{0, 1, 2, 3}, std::nullopt, 10min};
  aut.enqueue(run("a", 1, 0, 1), now);
  aut.enqueue(run("b", 1, 0, 2), now);
  aut.enqueue(run("c", 1, 0, 3), now);
  REQUIRE(aut.schedule(now).size() == 3);
  aut.enqueue(run("big", 3, 0, 4), now);
  CHECK(aut.next_deadline() == now + 10min);

  // Before the timeout, smaller runs pass it.
  now += 5min;
  aut.enqueue(run("small1", 1, 0, 5), now);
  CHECK(ids(aut.schedule(now)) == strings{"small1"});
  CHECK(aut.next_deadline() == time_point{} + 10min);

  // From the timeout on, runs of equal or lower priority wait behind it.
  now = time_point{} + 10min;
  aut.enqueue(run("small2", 1, 0, 6), now);
  aut.enqueue(run("lower", 1, -1, 7), now);
  aut.release("a");
  CHECK(aut.schedule(now).empty());
  CHECK_FALSE(aut.holder(0));
  // small2 and lower are still waiting, so the deadline to come is theirs.
  CHECK(aut.next_deadline() == now + 10min);

  // A higher-priority run still passes it.
  aut.enqueue(run("urgent", 1, 1, 8), now);
  CHECK(ids(aut.schedule(now)) == strings{"urgent"});

  aut.release("b");
  aut.release("c");
  CHECK(aut.schedule(now).empty()); // two free, big needs three
  CHECK_FALSE(aut.holder(1));
  CHECK_FALSE(aut.holder(2));
  aut.release("small1");
  auto started = aut.schedule(now);
  REQUIRE(ids(started) == strings{"big"});
  CHECK(started[0].gpus == ints{1, 2, 3});
}

TEST_CASE("the first starving run in queue order is the one that blocks",
          "[scheduler]") {
  time_point now{};
  scheduler aut{{0, 1, 2, 3}, std::nullopt, 1min};
  aut.enqueue(run("hold", 3, 0, 1), now);
  REQUIRE(ids(aut.schedule(now)) == strings{"hold"});
  aut.enqueue(run("big2", 2, 0, 2), now);
  aut.enqueue(run("big3", 3, 0, 3), now);
  aut.enqueue(run("one", 1, 0, 4), now);
  now += 2min;
  // big2 starves first; nothing behind it starts, though one GPU is free.
  CHECK(aut.schedule(now).empty());
  aut.release("hold");
  CHECK(ids(aut.schedule(now)) == strings{"big2"});
  // Now big3 starves and blocks "one" although two GPUs are free.
  CHECK(aut.schedule(now).empty());
}

TEST_CASE("a run that can never fit does not block others", "[scheduler]") {
  time_point now{};
  scheduler aut{{0, 1}, std::nullopt, 0ms};
  aut.enqueue(run("huge", 3, 5, 1), now);
  aut.enqueue(run("one", 1, 0, 2), now);
  CHECK(ids(aut.schedule(now + 1h)) == strings{"one"});
  CHECK_FALSE(aut.next_deadline());
}

TEST_CASE("an experiment's max_concurrent limits its own runs only",
          "[scheduler]") {
  time_point now{};
  scheduler aut{{0, 1, 2, 3}, std::nullopt, 1min};
  aut.enqueue(run("a1", 1, 0, 1, "a", 2), now);
  aut.enqueue(run("a2", 1, 0, 2, "a", 2), now);
  aut.enqueue(run("a3", 1, 0, 3, "a", 2), now);
  aut.enqueue(run("b1", 1, 0, 4, "b"), now);
  CHECK(ids(aut.schedule(now)) == strings{"a1", "a2", "b1"});

  // a3 waits on its experiment's limit, not on devices: it never starves
  // others, so later runs still take the free device after the timeout.
  now += 1h;
  aut.enqueue(run("b2", 1, 0, 5, "b"), now);
  CHECK(ids(aut.schedule(now)) == strings{"b2"});
  aut.release("b1");
  CHECK(aut.schedule(now).empty());
  aut.release("a1");
  CHECK(ids(aut.schedule(now)) == strings{"a3"});
}

TEST_CASE("the global max_concurrent counts every started run", "[scheduler]") {
  time_point now{};
  scheduler aut{{0, 1, 2, 3}, 2, 10min};
  aut.enqueue(run("a", 1, 0, 1), now);
  aut.enqueue(run("b", 0, 0, 2), now);
  aut.enqueue(run("c", 1, 0, 3), now);
  CHECK(ids(aut.schedule(now)) == strings{"a", "b"});
  CHECK(aut.schedule(now).empty());
  aut.release("b");
  CHECK(ids(aut.schedule(now)) == strings{"c"});
}

TEST_CASE("a run asking for no gpus needs no devices but takes a slot",
          "[scheduler]") {
  time_point now{};
  scheduler aut{{0}, std::nullopt, 10min};
  aut.enqueue(run("gpu", 1, 0, 1), now);
  aut.enqueue(run("cpu1", 0, 0, 2, "cpu", 1), now);
  aut.enqueue(run("cpu2", 0, 0, 3, "cpu", 1), now);
  auto started = aut.schedule(now);
  REQUIRE(ids(started) == strings{"gpu", "cpu1"});
  CHECK(started[1].gpus.empty());
  CHECK(aut.held_by("cpu1").empty());
  aut.release("cpu1");
  CHECK(ids(aut.schedule(now)) == strings{"cpu2"});
  CHECK(aut.holder(0) == "gpu");
}

TEST_CASE("dequeue removes a queued run and only a queued one", "[scheduler]") {
  time_point now{};
  scheduler aut{{0}, std::nullopt, 10min};
  aut.enqueue(run("a", 1, 0, 1), now);
  aut.enqueue(run("b", 1, 0, 2), now);
  aut.enqueue(run("c", 1, 0, 3), now);
  REQUIRE(ids(aut.schedule(now)) == strings{"a"});
  CHECK_FALSE(aut.dequeue("a")); // started, not queued
  CHECK(aut.dequeue("b"));
  CHECK_FALSE(aut.dequeue("b"));
  CHECK_FALSE(aut.queue_position("b"));
  CHECK(aut.queue_position("c") == 1);
  aut.release("a");
  CHECK(ids(aut.schedule(now)) == strings{"c"});
}

TEST_CASE("releasing an unknown or queued run changes nothing", "[scheduler]") {
  time_point now{};
  scheduler aut{{0, 1}, std::nullopt, 10min};
  aut.enqueue(run("a", 1, 0, 1), now);
  REQUIRE(ids(aut.schedule(now)) == strings{"a"});
  aut.enqueue(run("b", 2, 0, 2), now);
  aut.release("nobody");
  aut.release("b");
  aut.release("a");
  aut.release("a");
  CHECK(aut.queue_position("b") == 1);
  CHECK(ids(aut.schedule(now)) == strings{"b"});
}

TEST_CASE("enqueueing a queued id again replaces it", "[scheduler]") {
  time_point now{};
  scheduler aut{{0, 1}, std::nullopt, 10min};
  aut.enqueue(run("a", 1, 0, 1), now);
  aut.enqueue(run("b", 1, 0, 2), now);
  aut.enqueue(run("a", 1, 0, 3), now);
  CHECK(aut.queue_position("b") == 1);
  CHECK(aut.queue_position("a") == 2);
  CHECK(aut.schedule(now).size() == 2);
}

TEST_CASE("next_deadline is the earliest starvation deadline still to come",
          "[scheduler]") {
  time_point now{};
  scheduler aut{{0, 1}, std::nullopt, 10min};
  CHECK_FALSE(aut.next_deadline());
  aut.enqueue(run("cpu", 0, 0, 1), now);
  CHECK_FALSE(aut.next_deadline()); // needs no devices: never starves
  aut.enqueue(run("a", 2, 0, 2), now + 1min);
  aut.enqueue(run("b", 2, 0, 3), now + 3min);
  CHECK(aut.next_deadline() == now + 11min);
  CHECK(aut.dequeue("a"));
  CHECK(aut.next_deadline() == now + 13min);
  aut.enqueue(run("a", 2, 0, 4), now + 4min);
  CHECK(aut.next_deadline() == now + 13min);
  // b starts; a waits on devices, with its deadline still to come.
  CHECK(ids(aut.schedule(now + 13min)) == strings{"cpu", "b"});
  CHECK(aut.next_deadline() == now + 14min);
  // Once a deadline has passed, the next one still to come is reported.
  aut.enqueue(run("c", 1, 0, 5), now + 13min);
  aut.enqueue(run("d", 1, 0, 6), now + 15min);
  CHECK(aut.schedule(now + 14min).empty()); // b holds both devices
  CHECK(aut.next_deadline() == now + 23min);
  aut.schedule(now + 23min);
  CHECK(aut.next_deadline() == now + 25min);
  aut.release("b");
  CHECK(ids(aut.schedule(now + 23min)) == strings{"a"});
}

namespace {

constexpr std::uint64_t gib = 1ull << 30;

/// A run that asks for CPUs and memory but no GPUs.
sched_request sized(std::string id, double cpus, std::uint64_t memory,
                    int priority = 0, std::uint64_t seq = 0) {
  auto req = run(std::move(id), 0, priority, seq);
  req.cpus = cpus;
  req.memory = memory;
  return req;
}

} // namespace

TEST_CASE("runs bound by cpus or memory never exceed the capacity",
          "[scheduler]") {
  // One generic walk, bound by CPUs (8) or by memory (8 GiB); each run asks
  // for 4, 3 or 2 units and no GPUs.
  bool by_memory = GENERATE(false, true);
  auto timeout = GENERATE(0ms, std::chrono::milliseconds{1h});
  auto seed = GENERATE(range(1u, 21u));
  INFO("seed " << seed << ", timeout " << timeout.count() << "ms, "
               << (by_memory ? "memory" : "cpus"));
  std::mt19937 rng{seed};
  time_point now{};
  scheduler aut = by_memory ? scheduler{{}, std::nullopt, timeout, 0, 8 * gib}
                            : scheduler{{}, std::nullopt, timeout, 8, 0};

  std::map<std::string, int> units; // run → units it asks for
  std::vector<sched_request> queue; // the model of the queue, in order
  for (int i = 0; i < 12; ++i) {
    int asks = 2 + static_cast<int>(rng() % 3);
    auto id = "r" + std::to_string(i);
    auto req
        = by_memory ? sized(id, 0, asks * gib, 0, i) : sized(id, asks, 0, 0, i);
    req.priority = static_cast<int>(rng() % 3);
    units[id] = asks;
    queue.push_back(req);
    aut.enqueue(req, now);
  }
  std::stable_sort(
      queue.begin(), queue.end(),
      [](const auto& a, const auto& b) { return a.priority > b.priority; });

  int used = 0;
  std::vector<std::string> running;
  std::set<std::string> placed;
  for (int step = 0; step < 200 && placed.size() < 12; ++step) {
    now += 1s;
    auto started = aut.schedule(now);

    // Replay the walk as in the GPU test: runs passed over did not fit.
    std::size_t next = 0;
    int free = 8 - used;
    bool blocked = false;
    std::vector<sched_request> still_queued;
    for (const auto& req : queue) {
      if (next < started.size() && started[next].id == req.id) {
        CHECK_FALSE(blocked);
        free -= units[req.id];
        ++next;
      } else {
        if (!blocked)
          CHECK(units[req.id] > free);
        if (timeout == 0ms)
          blocked = true;
        still_queued.push_back(req);
      }
    }
    CHECK(next == started.size());
    queue = still_queued;

    for (const auto& p : started) {
      CHECK(p.gpus.empty());
      CHECK(placed.insert(p.id).second);
      used += units[p.id];
      running.push_back(p.id);
    }
    REQUIRE(used <= 8);
    if (by_memory) {
      CHECK(aut.memory_in_use() == static_cast<std::uint64_t>(used) * gib);
      CHECK(aut.cpus_in_use() == 0);
    } else {
      CHECK(aut.cpus_in_use() == used);
      CHECK(aut.memory_in_use() == 0);
    }

    std::shuffle(running.begin(), running.end(), rng);
    auto ending = running.empty() ? 0u : rng() % (running.size() + 1);
    for (std::size_t i = 0; i < ending; ++i) {
      aut.release(running.back());
      used -= units[running.back()];
      running.pop_back();
    }
  }
  CHECK(placed.size() == 12);
}

TEST_CASE("a small cpu run passes one that does not fit yet", "[scheduler]") {
  time_point now{};
  scheduler aut{{0, 1}, std::nullopt, 10min, 8};
  aut.enqueue(sized("four", 4, 0, 0, 1), now);
  REQUIRE(ids(aut.schedule(now)) == strings{"four"});
  aut.enqueue(sized("six", 6, 0, 0, 2), now);
  aut.enqueue(sized("two", 2, 0, 0, 3), now);
  now += 1min;
  CHECK(ids(aut.schedule(now)) == strings{"two"});
  CHECK(aut.cpus_in_use() == 6);
  CHECK(aut.queue_position("six") == 1);
}

TEST_CASE("a run starving for cpus keeps them free until it fits",
          "[scheduler]") {
  time_point now{};
  scheduler aut{{0, 1, 2, 3}, std::nullopt, 10min, 8};
  aut.enqueue(sized("a", 3, 0, 0, 1), now);
  aut.enqueue(sized("b", 3, 0, 0, 2), now);
  REQUIRE(aut.schedule(now).size() == 2);
  // GPUs are free but CPUs are not: it waits, and can starve.
  auto big = sized("big", 5, 0, 0, 3);
  big.gpus = 1;
  aut.enqueue(big, now);
  CHECK(aut.next_deadline() == now + 10min);

  now += 10min;
  aut.enqueue(sized("small", 1, 0, 0, 4), now);
  aut.enqueue(sized("lower", 1, 0, -1, 5), now);
  aut.enqueue(run("gpu_only", 1, 0, 6), now); // asks for no CPUs at all
  CHECK(aut.schedule(now).empty());
  CHECK(aut.cpus_in_use() == 6);

  // A higher-priority run still passes it.
  aut.enqueue(sized("urgent", 1, 1, 7), now);
  CHECK(ids(aut.schedule(now)) == strings{"urgent"});

  aut.release("a");
  CHECK(aut.schedule(now).empty()); // 4 CPUs free, big needs 5
  aut.release("urgent");
  auto started = aut.schedule(now);
  REQUIRE(ids(started) == strings{"big", "gpu_only"});
  CHECK(started[0].gpus == ints{0});
  CHECK(aut.cpus_in_use() == 8);
}

TEST_CASE("a run starving for memory blocks like one starving for devices",
          "[scheduler]") {
  time_point now{};
  scheduler aut{{}, std::nullopt, 1min, 0, 16 * gib};
  aut.enqueue(sized("hold", 0, 10 * gib, 0, 1), now);
  REQUIRE(ids(aut.schedule(now)) == strings{"hold"});
  aut.enqueue(sized("big", 0, 8 * gib, 0, 2), now);
  aut.enqueue(sized("small", 0, 1 * gib, 0, 3), now);
  CHECK(ids(aut.schedule(now)) == strings{"small"}); // backfill
  aut.enqueue(sized("small2", 0, 1 * gib, 0, 4), now);
  now += 2min;
  CHECK(aut.schedule(now).empty()); // big starves; small2 waits behind it
  aut.release("hold");
  CHECK(ids(aut.schedule(now)) == strings{"big", "small2"});
  CHECK(aut.memory_in_use() == 10 * gib);
}

TEST_CASE("cpus and memory must both fit", "[scheduler]") {
  time_point now{};
  scheduler aut{{}, std::nullopt, 1h, 4, 4 * gib};
  aut.enqueue(sized("a", 1, 3 * gib, 0, 1), now);
  aut.enqueue(sized("b", 1, 2 * gib, 0, 2), now); // CPUs fit, memory not
  aut.enqueue(sized("c", 4, 1 * gib, 0, 3), now); // memory fits, CPUs not
  aut.enqueue(sized("d", 3, 1 * gib, 0, 4), now);
  CHECK(ids(aut.schedule(now)) == strings{"a", "d"});
  aut.release("a");
  CHECK(ids(aut.schedule(now)) == strings{"b"});
  CHECK(aut.cpus_in_use() == 4);
  CHECK(aut.memory_in_use() == 3 * gib);
}

TEST_CASE("fractional cpus add up without rounding error", "[scheduler]") {
  time_point now{};
  scheduler aut{{}, std::nullopt, 1h, 0.3};
  for (int i = 0; i < 4; ++i)
    aut.enqueue(sized("r" + std::to_string(i), 0.1, 0, 0, i), now);
  CHECK(ids(aut.schedule(now)) == strings{"r0", "r1", "r2"});
  aut.release("r1");
  CHECK(ids(aut.schedule(now)) == strings{"r3"});
}

TEST_CASE("fits_ever and why_never check gpus, cpus and memory",
          "[scheduler]") {
  scheduler aut{{0, 1, 2, 3}, std::nullopt, 10min, 16, 64 * gib};
  auto req = sized("r", 16, 64 * gib);
  req.gpus = 4;
  CHECK(aut.fits_ever(req));
  CHECK(aut.why_never(req).empty());

  req.cpus = 64;
  CHECK_FALSE(aut.fits_ever(req));
  CHECK(aut.fits_ever(req.gpus));
  CHECK(aut.why_never(req) == "asks for 64 CPUs but this node has 16");

  req = sized("r", 1, 96 * gib);
  CHECK_FALSE(aut.fits_ever(req));
  CHECK(aut.why_never(req)
        == "asks for 96 GiB of memory but this node has 64 GiB");
  req.memory = 64 * gib + 1;
  CHECK(aut.why_never(req)
        == "asks for 64 GiB (68719476737 bytes) of memory but this node has "
           "64 GiB (68719476736 bytes)");

  req = sized("r", 16.5, 1536ull << 20);
  req.gpus = 5;
  CHECK(aut.why_never(req)
        == "asks for 5 GPUs but this node has 4; asks for 16.5 CPUs but this "
           "node has 16");

  scheduler one{{0}, std::nullopt, 10min, 0.5, 1ull << 20};
  req = sized("r", 1, 1536ull << 20);
  req.gpus = 2;
  CHECK(one.why_never(req)
        == "asks for 2 GPUs but this node has 1; asks for 1 CPU but this "
           "node has 0.5; asks for 1.5 GiB of memory but this node has 1 "
           "MiB");
}

TEST_CASE("unaccounted cpus and memory ignore what runs ask for",
          "[scheduler]") {
  time_point now{};
  scheduler aut{{0}, std::nullopt, 0ms};
  auto huge = sized("huge", 1024, 1ull << 50, 0, 1);
  CHECK(aut.fits_ever(huge));
  CHECK(aut.why_never(huge).empty());
  aut.enqueue(huge, now);
  aut.enqueue(sized("also", 1024, 1ull << 50, 0, 2), now);
  // Asking for nothing that is accounted, they never starve anyone.
  CHECK_FALSE(aut.next_deadline());
  CHECK(ids(aut.schedule(now)) == strings{"huge", "also"});
  CHECK(aut.cpus_in_use() == 0);
  CHECK(aut.memory_in_use() == 0);

  // Accounting one resource leaves the other ignored.
  scheduler cpus_only{{}, std::nullopt, 0ms, 2};
  CHECK(cpus_only.fits_ever(sized("r", 2, 1ull << 50)));
  CHECK_FALSE(cpus_only.fits_ever(sized("r", 3, 0)));
  scheduler memory_only{{}, std::nullopt, 0ms, 0, gib};
  CHECK(memory_only.fits_ever(sized("r", 1024, gib)));
  CHECK(memory_only.why_never(sized("r", 1024, 2 * gib))
        == "asks for 2 GiB of memory but this node has 1 GiB");
}

TEST_CASE("a run that can never fit its cpus does not block others",
          "[scheduler]") {
  time_point now{};
  scheduler aut{{}, std::nullopt, 0ms, 4, 4 * gib};
  aut.enqueue(sized("huge", 8, 0, 5, 1), now);
  aut.enqueue(sized("bulky", 0, 8 * gib, 5, 2), now);
  aut.enqueue(sized("one", 1, gib, 0, 3), now);
  CHECK(ids(aut.schedule(now + 1h)) == strings{"one"});
  CHECK_FALSE(aut.next_deadline());
}

TEST_CASE("a re-adopted run holds its devices and its slot as placed",
          "[scheduler]") {
  time_point now{};
  scheduler aut{{0, 1, 2}, 2, 10min};
  // A restarted daemon takes back a run on GPUs 1 and 2 (and GPU 7, which
  // the inventory no longer has).
  aut.adopt(run("old", 2, 0, 1), {1, 2, 7});
  CHECK(aut.held_by("old") == ints{1, 2});
  CHECK_FALSE(aut.holder(7));
  aut.enqueue(run("new", 2, 0, 2), now);
  CHECK(aut.schedule(now).empty()); // only GPU 0 is free
  aut.enqueue(run("small", 1, 0, 3), now);
  auto started = aut.schedule(now);
  REQUIRE(started.size() == 1);
  CHECK(started[0].id == "small");
  CHECK(started[0].gpus == ints{0});
  // max_concurrent 2: the adopted run counts.
  aut.enqueue(run("cpu", 0, 0, 4), now);
  CHECK(aut.schedule(now).empty());
  aut.release("old");
  CHECK(ids(aut.schedule(now)) == strings{"new"});
}
