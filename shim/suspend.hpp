#pragma once
/// Suspend and resume under Slurm (--suspend-file): "scontrol suspend"
/// sends SIGTSTP, then (about 2 s later) SIGSTOP or a cgroup freeze;
/// "scontrol resume" continues the job. The shim stops its whole tree
/// itself and confirms it through a file in the shared run dir, so the
/// daemon (maybe on another machine) knows when the trainer is stopped.

#include "shim/log.hpp"

#include <chrono>
#include <string>

namespace corral::shim {

/// SIGSTOPs every process of the shim's tree but the shim, walking again
/// until a walk finds no new one (a fork during the walk), waits until each
/// shows stopped (state T or t; one that is gone no longer counts) or
/// `limit` has passed, and writes `file` atomically: "stopped <count>
/// <unix_ms>\n", or "partial <stopped>/<total> <unix_ms>\n" (the pids that
/// did not stop are logged). A SIGCONT that arrives meanwhile (pending on
/// the shim's signalfd) cancels it: no file then; the caller's resume
/// follows. Again while stopped, it just writes the file anew.
void suspend_tree(const std::string& file, std::chrono::milliseconds limit,
                  logger& log);

/// Removes `file` (none is fine) and SIGCONTs every process of the tree in
/// state T (a resume that only thaws a freezer sends no SIGCONT to them),
/// or in state D (it may hold a SIGSTOP of the suspend pending).
void resume_tree(const std::string& file, logger& log);

} // namespace corral::shim
