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
};

class daemon_runtime {
public:
  explicit daemon_runtime(runtime_options opts);
  ~daemon_runtime();

  /// The API as the gateway sees it.
  api_backend& backend();
  /// Stops every active run with the normal stop sequence and blocks until
  /// all have ended.
  void stop_all_runs();

private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

} // namespace corral
