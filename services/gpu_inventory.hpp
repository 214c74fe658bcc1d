#pragma once
/// The node's GPUs: from the user's configuration (`gpus: 4`,
/// `gpus: [0, 2, 3]`, `--gpus 4`), else from NVML loaded at run time with
/// dlopen, so the daemon runs, and schedules, on machines without a driver.

#include "services/result.hpp"

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace corral {

struct gpu_info {
  int index = 0;
  std::string uuid; // "" when unknown (configured inventory)
  std::string name; // "" when unknown
  std::optional<std::uint64_t> memory_total;
  std::optional<std::uint64_t> memory_used;
  std::optional<double> utilization; // percent
};

/// One process using a GPU, as NVML reports it.
struct gpu_process {
  int gpu = 0;
  int pid = 0;
  std::uint64_t memory_used = 0;
};

/// Parses a configured inventory: "4" (indices 0..3) or "0,2,3" / "[0, 2, 3]".
/// Errors name the text (ec::invalid_spec).
result<std::vector<int>> parse_gpu_list(std::string_view text);

class gpu_inventory {
public:
  virtual ~gpu_inventory() = default;
  /// "nvml" or "config".
  virtual std::string source() const = 0;
  /// Current state of every device (memory and utilization refreshed from
  /// NVML on each call; configured devices report nulls).
  virtual std::vector<gpu_info> devices() = 0;
  /// Processes on each device (empty without NVML).
  virtual std::vector<gpu_process> processes() = 0;
};

/// A configured inventory of these indices.
std::unique_ptr<gpu_inventory>
make_configured_inventory(std::vector<int> indices);

/// NVML's inventory, or nullptr when libnvidia-ml.so.1 cannot be loaded or
/// initialized; `why` then says what happened, for a log line.
std::unique_ptr<gpu_inventory> load_nvml_inventory(std::string& why,
                                                   const char* library
                                                   = "libnvidia-ml.so.1");

} // namespace corral
