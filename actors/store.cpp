#include "actors/store.hpp"

#include <spdlog/spdlog.h>

namespace corral {

namespace {

using self_ptr = store_actor::stateful_pointer<store_actor_state>;

// Commits what is pending. A failed commit keeps the batch, so the next
// try writes it with whatever came since (later values win).
status commit_pending(self_ptr self) {
  auto& st = self->state;
  if (st.pending.empty())
    return ok;
  auto r = st.db->commit(st.pending);
  if (!r) {
    spdlog::error("store cannot commit: {}", r.error().message);
    return r;
  }
  ++st.commits;
  st.pending = store_batch{};
  return ok;
}

} // namespace

store_actor::behavior_type
store(store_actor::stateful_pointer<store_actor_state> self,
      std::shared_ptr<state_store> db, millis interval) {
  self->state.db = std::move(db);
  self->state.interval = interval;
  return {
      [=](atom::persist, store_batch& batch) {
        auto& st = self->state;
        st.pending.merge(std::move(batch));
        // The tick queues behind what is in the mailbox now: one commit
        // for the whole burst, a moment later.
        if (!st.tick_pending) {
          st.tick_pending = true;
          self->send(self, atom::tick::value);
        }
      },
      [=](atom::flush, store_batch& batch) -> ok_result {
        self->state.pending.merge(std::move(batch));
        if (auto r = commit_pending(self); !r)
          return ok_result{r.error()};
        return ok_result{ok_t{}};
      },
      [=](atom::tick) {
        auto& st = self->state;
        st.tick_pending = false;
        if (!commit_pending(self) && !st.tick_pending) {
          st.tick_pending = true;
          self->delayed_send(self, st.interval, atom::tick::value);
        }
      },
      [=](atom::flush) -> ok_result {
        if (auto r = commit_pending(self); !r)
          return ok_result{r.error()};
        return ok_result{ok_t{}};
      },
  };
}

} // namespace corral
