#pragma once
/// The whole actor protocol of the daemon in one place: atoms, message
/// types and every typed interface. Only actors/ includes this file.

#include <caf/all.hpp>

#include <cstdint>
#include <string>
#include <vector>

#include "services/api_backend.hpp"
#include "services/command.hpp"
#include "services/local_executor.hpp"
#include "services/result.hpp"
#include "services/run_spec.hpp"
#include "services/run_view.hpp"
#include "services/slurm.hpp"
#include "services/state_store.hpp"

namespace corral {

using view_result = result<run_view>;
using views_result = result<std::vector<run_view>>;
using ok_result = result<ok_t>;
using gpus_result = result<gpu_report>;
using event_page_result = result<event_answer>;
using logs_result = result<log_answer>;
using json_result = result<nlohmann::json>;
using artifacts_result = result<artifact_report>;
using artifact_result = result<artifact>;
using node_result = result<node_report>;
using command_result = result<command_output>;
using command_list = std::vector<std::vector<std::string>>;

/// squeue's word on one job a run watches.
struct slurm_report {
  std::string job_id;
  bool listed = false; // false: squeue no longer knows the job
  slurm_job job;
};

} // namespace corral

// Messages never leave this process, so they need no serialization.
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(corral::view_result)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(corral::views_result)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(corral::ok_result)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(corral::gpus_result)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(corral::event_page_result)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(corral::logs_result)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(corral::json_result)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(corral::artifacts_result)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(corral::artifact_result)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(corral::node_result)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(corral::event_query)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(corral::log_query)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(corral::run_event)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(std::vector<int>)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(corral::run_view)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(corral::run_spec)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(std::vector<corral::run_spec>)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(corral::run_filter)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(corral::stop_request)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(corral::shim_report)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(corral::store_batch)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(corral::command_result)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(corral::command_list)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(corral::slurm_report)

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
using event = caf::atom_constant<caf::atom("event")>;
using logs = caf::atom_constant<caf::atom("logs")>;
using metrics = caf::atom_constant<caf::atom("metrics")>;
using artifacts = caf::atom_constant<caf::atom("artifacts")>;
using artifact = caf::atom_constant<caf::atom("artifact")>;
using restart = caf::atom_constant<caf::atom("restart")>;
using output = caf::atom_constant<caf::atom("output")>;
using files = caf::atom_constant<caf::atom("files")>;
using node = caf::atom_constant<caf::atom("node")>;
using persist = caf::atom_constant<caf::atom("persist")>;
using flush = caf::atom_constant<caf::atom("flush")>;
using beat = caf::atom_constant<caf::atom("beat")>;
using slurm = caf::atom_constant<caf::atom("slurm")>;
using watch = caf::atom_constant<caf::atom("watch")>;
using unwatch = caf::atom_constant<caf::atom("unwatch")>;
using job = caf::atom_constant<caf::atom("job")>;
} // namespace atom

/// The state store (SQLite): commits the changes the actors send, off
/// their threads; what arrives while a commit runs goes in the next one.
using store_actor = caf::typed_actor<
    /// Changes to commit with the next batch (within a millisecond or so).
    caf::reacts_to<atom::persist, store_batch>,
    /// Commits what is pending now; answers once it is on disk.
    caf::replies_to<atom::flush>::with<ok_result>,
    /// Commits these changes and what is pending; answers once on disk.
    caf::replies_to<atom::flush, store_batch>::with<ok_result>,
    /// Time to commit what is pending.
    caf::reacts_to<atom::tick>>;

/// One run: owns its executor (shim + cgroup + pidfds) and state machine.
using run_actor = caf::typed_actor<
    /// Writes the run's current record to the store; answers once it is
    /// on disk.
    caf::replies_to<atom::persist>::with<ok_result>,
    /// The run's view; with processes when the flag is set.
    caf::replies_to<atom::get, bool>::with<view_result>,
    /// The run's recent events after a position, oldest first; with wait,
    /// answers once there is one, the run ended for good, or time is up.
    caf::replies_to<atom::events, event_query>::with<event_page_result>,
    /// The run's output lines (a tail, or what follows a cursor).
    caf::replies_to<atom::logs, log_query>::with<logs_result>,
    /// Latest metric values and their series.
    caf::replies_to<atom::metrics>::with<json_result>,
    /// The files the artifact patterns match now.
    caf::replies_to<atom::artifacts>::with<artifacts_result>,
    /// The file behind one artifact name, if it may be served.
    caf::replies_to<atom::artifact, std::string>::with<artifact_result>,
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
    /// The run's log files changed (from the reactor).
    caf::reacts_to<atom::output>,
    /// A directory an artifact pattern looks at changed (from the reactor).
    caf::reacts_to<atom::files>,
    /// Periodic observation of the tree (external SIGSTOP/SIGCONT).
    caf::reacts_to<atom::tick>,
    /// A timer of the given kind and generation fired.
    caf::reacts_to<atom::deadline, std::string, std::uint64_t>,
    /// squeue's word on the run's Slurm job (from the slurm actor).
    caf::reacts_to<atom::job, slurm_report>>;

/// The one client of the Slurm controller (detached: the commands block
/// its own thread only). Runs the runs' commands in the order they come,
/// and asks squeue about every watched job with one call per poll.
using slurm_actor = caf::typed_actor<
    /// Runs the commands in order, stopping at the first that fails; the
    /// answer is the last one run.
    caf::replies_to<atom::slurm, command_list>::with<command_result>,
    /// Report this job's state to this run after every poll.
    caf::reacts_to<atom::watch, std::string, run_actor>,
    caf::reacts_to<atom::unwatch, std::string>,
    /// Time to poll.
    caf::reacts_to<atom::tick>>;

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
    /// One run's events, or with an empty id every run's.
    caf::replies_to<atom::events, std::string,
                    event_query>::with<event_page_result>,
    caf::replies_to<atom::logs, std::string, log_query>::with<logs_result>,
    caf::replies_to<atom::metrics, std::string>::with<json_result>,
    caf::replies_to<atom::artifacts, std::string>::with<artifacts_result>,
    caf::replies_to<atom::artifact, std::string,
                    std::string>::with<artifact_result>,
    /// A new run of an ended run's spec.
    caf::replies_to<atom::restart, std::string>::with<view_result>,
    /// A run recorded an event: it joins the daemon-wide stream.
    caf::reacts_to<atom::event, run_event>,
    /// A wait on the daemon-wide events is over (waiter id).
    caf::reacts_to<atom::deadline, std::uint64_t>,
    caf::replies_to<atom::resume, std::string>::with<view_result>,
    caf::replies_to<atom::stop, std::string, stop_request>::with<view_result>,
    /// Forgets an ended run.
    caf::replies_to<atom::remove, std::string>::with<ok_result>,
    /// Stops every active run with the normal sequence; answers when all ended.
    caf::replies_to<atom::shutdown>::with<ok_result>,
    /// The GPU inventory and each device's holder.
    caf::replies_to<atom::gpus>::with<gpus_result>,
    /// The machine's CPU and memory load, and its GPUs.
    caf::replies_to<atom::node>::with<node_result>,
    /// Every run saves its state, then the store commits: the daemon
    /// leaves its runs running and exits.
    caf::replies_to<atom::flush>::with<ok_result>,
    /// A run's processes ended (its GPUs are free); `final` unless its
    /// restart policy will queue it again.
    caf::reacts_to<atom::ended, std::string, bool>,
    /// A run's restart backoff is over: queue it again.
    caf::reacts_to<atom::requeue, std::string>,
    /// Time to look at the queue again (a starvation deadline passed).
    caf::reacts_to<atom::tick>,
    /// Once a second: every run that has not ended takes a look at its
    /// processes (one timer for all runs, not one per run).
    caf::reacts_to<atom::beat>>;

} // namespace corral
