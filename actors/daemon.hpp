#pragma once
/// The actor system behind a plain C++ face: main/ and gateway/ use this
/// without including CAF.

#include "services/api_backend.hpp"
#include "services/gpu_inventory.hpp"
#include "services/local_executor.hpp"

#include <memory>

namespace corral {

struct runtime_options {
  executor_config exec;
  millis pause_timeout = std::chrono::seconds{10};
  /// Worker threads of the actor scheduler.
  std::size_t threads = 2;
  /// The node's GPUs; must outlive the runtime. Null: no GPUs.
  gpu_inventory* inventory = nullptr;
  std::optional<int> max_concurrent;
  millis starvation_timeout = std::chrono::minutes{10};
  /// The state store's file; empty: nothing is kept across restarts.
  std::string store_path;
  /// The executor of experiments that do not name one.
  std::string default_executor = "local";
  /// A Slurm client is started (sbatch, squeue, scontrol and scancel are
  /// on PATH) and asks squeue this often.
  bool slurm = false;
  millis slurm_poll = std::chrono::seconds{2};
};

class daemon_runtime {
public:
  /// Opens the state store and takes back every run it holds before any
  /// request is answered. Throws std::runtime_error with a message for
  /// the user when the store cannot be used (corrupt, newer version).
  explicit daemon_runtime(runtime_options opts);
  ~daemon_runtime();

  /// The API as the gateway sees it.
  api_backend& backend();
  /// Stops every active run with the normal stop sequence and blocks until
  /// all have ended.
  void stop_all_runs();
  /// Writes every run's latest state to the store and blocks until it is
  /// on disk; the runs go on without the daemon.
  void save_all_runs();

private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

} // namespace corral
