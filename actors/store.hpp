#pragma once
/// The store actor: owns the SQLite state store and commits what the run
/// actors and the registry send, batched, on a thread of its own (SQLite
/// waits for the disk; the actors must not).

#include "actors/actors.hpp"
#include "services/state_store.hpp"

#include <memory>

namespace corral {

struct store_actor_state {
  static inline const char* name = "store";

  std::shared_ptr<state_store> db;
  millis interval{200};
  store_batch pending;
  bool tick_pending = false;
  /// Commits since start, and failures (logged, the batch kept for the
  /// next try).
  std::uint64_t commits = 0;
};

/// Commits what arrived as soon as the mailbox has no more changes
/// queued (a message to itself marks the end of a burst); after a failed
/// commit it tries again every `interval`.
store_actor::behavior_type
store(store_actor::stateful_pointer<store_actor_state> self,
      std::shared_ptr<state_store> db, millis interval);

} // namespace corral
