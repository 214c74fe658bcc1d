#pragma once
/// Slurm without the daemon's actors: the batch job a run becomes (script
/// and sbatch arguments), what squeue says about jobs, and what a job's
/// state means for a run. Plain functions over text, unit-tested alone;
/// services/slurm_executor runs the commands.

#include "services/local_executor.hpp"
#include "services/result.hpp"
#include "services/run_spec.hpp"

#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace corral {

/// `'text'` for /bin/sh, with every ' written as '\''. Whatever the text
/// holds, the shell sees one literal word.
std::string shell_quote(std::string_view text);

/// Where a Slurm run's files are: `<slurm_dir>/<run id>`.
std::string slurm_run_dir(const executor_config& cfg,
                          const std::string& run_id);

/// What `sbatch` is given for one attempt of a run.
struct batch_job {
  /// The batch script: exports the run's environment and execs the shim,
  /// every value single-quoted.
  std::string script;
  /// sbatch's arguments up to (without) the script's path.
  std::vector<std::string> sbatch_args;
};

/// The batch job of a run whose placeholders are expanded. GPUs become
/// --gres=gpu:N (Slurm picks the devices and sets CUDA_VISIBLE_DEVICES),
/// cpus --cpus-per-task (rounded up), memory --mem in MiB (rounded up).
batch_job make_batch_job(const executor_config& cfg, const std::string& run_id,
                         const run_spec& spec);

/// One job as squeue shows it.
struct slurm_job {
  std::string id;
  std::string state;  // PENDING, RUNNING, SUSPENDED, COMPLETED, ...
  std::string reason; // why it waits: Priority, Resources; "None"
  std::string node;   // the batch host once it runs; "" before
  std::string script; // the batch script's path as submitted
  /// How the batch step ended, once it has.
  std::optional<int> exit_code;
  std::optional<int> signal;
};

/// The jobs of a `squeue --json` answer; an error names what is wrong
/// with the text.
result<std::vector<slurm_job>> parse_squeue_json(std::string_view text);

/// The jobs of `squeue --noheader --format=%i|%T|%r|%B` (Slurm without
/// --json): id, state, reason, batch host, one job a line. No exit codes:
/// those come from the shim's exit file.
result<std::vector<slurm_job>> parse_squeue_lines(std::string_view text);

/// squeue's arguments for one poll, --json or the format above.
std::vector<std::string> squeue_command(bool json);

/// True when squeue's failure says it does not know --json (a Slurm
/// before 21.08, or one built without its JSON plugin).
bool squeue_lacks_json(const std::string& output);

/// True for the states a job never leaves (COMPLETED, FAILED, CANCELLED,
/// TIMEOUT, OUT_OF_MEMORY, NODE_FAIL, ...).
bool is_final_slurm_state(std::string_view state);

/// True when `path` is on a filesystem whose writes from another machine
/// inotify does not see (NFS, Lustre, GPFS, CIFS, CephFS, BeeGFS, FUSE...).
/// The name of the filesystem goes to `name` for the log.
bool is_network_filesystem(const std::string& path, std::string* name);

/// The shim's suspend file (`stopped N T` or `partial S/N T`): true when
/// every process of the tree was seen stopped.
bool suspend_file_says_stopped(std::string_view text);

} // namespace corral
