#pragma once
/// Every default of the daemon in one place, named for what it means.

#include <chrono>
#include <cstddef>
#include <string_view>

namespace corral::defaults {

using namespace std::chrono_literals;

/// Loopback only: a fresh install must not expose trainers to the network.
inline constexpr std::string_view listen = "127.0.0.1:8700";
/// Long enough for a process in a short uninterruptible sleep (NFS, GPU
/// driver call) to reach the freezer, short enough for a user to wait.
inline constexpr auto pause_timeout = 10s;
/// How often a run looks at its tree for changes nobody announced
/// (a SIGSTOP from a shell): "paused within a second" with margin.
inline constexpr auto observe_interval = 250ms;
/// How long a run that needs more GPUs than are free may be passed by
/// smaller runs before devices are held back for it: long enough to keep
/// the GPUs busy, short enough that a big job is not starved for hours.
inline constexpr auto starvation_timeout = std::chrono::minutes{10};
/// Large enough for any experiments file, small enough to refuse floods.
inline constexpr std::size_t body_limit = 1 << 20;
/// Idle and slow connections are closed after this long.
inline constexpr auto read_timeout = 30s;
/// Threads of the HTTP gateway; its work is short and never blocks.
inline constexpr int gateway_threads = 2;
/// Actor scheduler threads: one per core on the machines we target.
inline constexpr std::size_t actor_threads = 2;

} // namespace corral::defaults
