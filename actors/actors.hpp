#pragma once
/// The whole actor protocol of the daemon in one place: atoms, message
/// types and every typed interface. Only actors/ includes this file.

#include <caf/all.hpp>

#include <cstdint>
#include <string>
#include <vector>

#include "services/api_backend.hpp"
#include "services/local_executor.hpp"
#include "services/result.hpp"
#include "services/run_spec.hpp"
#include "services/run_view.hpp"

namespace corral {

using view_result = result<run_view>;
using views_result = result<std::vector<run_view>>;
using ok_result = result<ok_t>;
using gpus_result = result<gpu_report>;
using events_result = result<std::vector<run_event>>;

} // namespace corral

// Messages never leave this process, so they need no serialization.
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(corral::view_result)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(corral::views_result)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(corral::ok_result)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(corral::gpus_result)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(corral::events_result)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(std::vector<int>)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(corral::run_view)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(corral::run_spec)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(std::vector<corral::run_spec>)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(corral::run_filter)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(corral::stop_request)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(corral::shim_report)

namespace corral {

namespace atom {
using submit = caf::atom_constant<caf::atom("submit")>;
using list = caf::atom_constant<caf::atom("list")>;
using get = caf::atom_constant<caf::atom("get")>;
using pause = caf::atom_constant<caf::atom("pause")>;
using resume = caf::atom_constant<caf::atom("resume")>;
using stop = caf::atom_constant<caf::atom("stop")>;
using remove = caf::atom_constant<caf::atom("remove")>;
using shutdown = caf::atom_constant<caf::atom("shutdown")>;
using ended = caf::atom_constant<caf::atom("ended")>;
using tick = caf::atom_constant<caf::atom("tick")>;
using deadline = caf::atom_constant<caf::atom("deadline")>;
using report = caf::atom_constant<caf::atom("report")>;
using shim_exit = caf::atom_constant<caf::atom("shimexit")>;
using main_exit = caf::atom_constant<caf::atom("mainexit")>;
using cg_event = caf::atom_constant<caf::atom("cgevent")>;
using start = caf::atom_constant<caf::atom("start")>;
using requeue = caf::atom_constant<caf::atom("requeue")>;
using gpus = caf::atom_constant<caf::atom("gpus")>;
using events = caf::atom_constant<caf::atom("events")>;
} // namespace atom

/// One run: owns its executor (shim + cgroup + pidfds) and state machine.
using run_actor = caf::typed_actor<
    /// The run's view; with processes when the flag is set.
    caf::replies_to<atom::get, bool>::with<view_result>,
    /// The run's recent events, oldest first.
    caf::replies_to<atom::events>::with<events_result>,
    /// Freezes the whole tree; answers once the kernel confirms.
    caf::replies_to<atom::pause>::with<view_result>,
    /// Thaws and SIGCONTs the whole tree.
    caf::replies_to<atom::resume>::with<view_result>,
    /// Starts (or escalates) the stop sequence.
    caf::replies_to<atom::stop, stop_request>::with<view_result>,
    /// Stops the run because the daemon exits; answers once it has ended.
    caf::replies_to<atom::shutdown>::with<view_result>,
    /// The scheduler placed the queued run on these GPUs: start it.
    caf::reacts_to<atom::start, std::vector<int>>,
    /// The shim's status pipe has data (from the reactor).
    caf::reacts_to<atom::report>,
    /// The shim exited (from the reactor).
    caf::reacts_to<atom::shim_exit>,
    /// The main process exited (from the reactor).
    caf::reacts_to<atom::main_exit>,
    /// cgroup.events changed (from the reactor).
    caf::reacts_to<atom::cg_event>,
    /// Periodic observation of the tree (external SIGSTOP/SIGCONT).
    caf::reacts_to<atom::tick>,
    /// A timer of the given kind and generation fired.
    caf::reacts_to<atom::deadline, std::string, std::uint64_t>>;

/// Knows every run by id; creates and forgets runs.
using registry_actor = caf::typed_actor<
    /// Validated specs → new runs (or, with the flag, the runs it would
    /// create).
    caf::replies_to<atom::submit, std::vector<run_spec>,
                    bool>::with<views_result>,
    /// Summaries of every run matching the filter.
    caf::replies_to<atom::list, run_filter>::with<views_result>,
    /// One run (with processes when the flag is set).
    caf::replies_to<atom::get, std::string, bool>::with<view_result>,
    caf::replies_to<atom::pause, std::string>::with<view_result>,
    caf::replies_to<atom::events, std::string>::with<events_result>,
    caf::replies_to<atom::resume, std::string>::with<view_result>,
    caf::replies_to<atom::stop, std::string, stop_request>::with<view_result>,
    /// Forgets an ended run.
    caf::replies_to<atom::remove, std::string>::with<ok_result>,
    /// Stops every active run with the normal sequence; answers when all ended.
    caf::replies_to<atom::shutdown>::with<ok_result>,
    /// The GPU inventory and each device's holder.
    caf::replies_to<atom::gpus>::with<gpus_result>,
    /// A run's processes ended (its GPUs are free); `final` unless its
    /// restart policy will queue it again.
    caf::reacts_to<atom::ended, std::string, bool>,
    /// A run's restart backoff is over: queue it again.
    caf::reacts_to<atom::requeue, std::string>,
    /// Time to look at the queue again (a starvation deadline passed).
    caf::reacts_to<atom::tick>>;

} // namespace corral
