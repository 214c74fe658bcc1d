#include "services/slurm.hpp"

#include "services/pidfd.hpp"

#include <nlohmann/json.hpp>

#include <sys/vfs.h>
#include <sys/wait.h>

#include <algorithm>
#include <cmath>

namespace corral {

std::string shell_quote(std::string_view text) {
  std::string out = "'";
  for (char c : text) {
    if (c == '\'')
      out += "'\\''";
    else
      out += c;
  }
  out += "'";
  return out;
}

std::string slurm_run_dir(const executor_config& cfg,
                          const std::string& run_id) {
  return cfg.slurm_dir + "/" + run_id;
}

namespace {

bool is_identifier(const std::string& name) {
  if (name.empty() || std::isdigit(static_cast<unsigned char>(name[0])))
    return false;
  return std::all_of(name.begin(), name.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '_';
  });
}

std::string join_signals(const run_spec& spec) {
  std::string out = std::to_string(spec.stop.signal);
  if (spec.stop.checkpoint_signal
      && *spec.stop.checkpoint_signal != spec.stop.signal)
    out += "," + std::to_string(*spec.stop.checkpoint_signal);
  return out;
}

} // namespace

batch_job make_batch_job(const executor_config& cfg, const std::string& run_id,
                         const run_spec& spec) {
  auto dir = slurm_run_dir(cfg, run_id);
  batch_job job;
  auto& a = job.sbatch_args;
  a = {"--parsable", "--job-name=corral-" + run_id,
       "--output=" + dir + "/slurm-%j.out", "--error=" + dir + "/slurm-%j.err",
       "--chdir=" + spec.cwd,
       // A job Slurm requeued (node failure) would start the trainer again
       // behind Corral's back: restarts are the run's restart policy.
       "--no-requeue"};
  auto& s = spec.slurm;
  if (!s.partition.empty())
    a.push_back("--partition=" + s.partition);
  if (!s.account.empty())
    a.push_back("--account=" + s.account);
  if (!s.qos.empty())
    a.push_back("--qos=" + s.qos);
  if (!s.time.empty())
    a.push_back("--time=" + s.time);
  if (spec.gpus > 0)
    a.push_back("--gres=gpu:" + std::to_string(spec.gpus));
  if (spec.cpus)
    a.push_back("--cpus-per-task="
                + std::to_string(static_cast<long>(std::ceil(*spec.cpus))));
  if (spec.memory_bytes) {
    constexpr std::uint64_t mib = 1024 * 1024;
    a.push_back("--mem=" + std::to_string((*spec.memory_bytes + mib - 1) / mib)
                + "M");
  }
  a.insert(a.end(), s.extra_args.begin(), s.extra_args.end());

  std::string& sh = job.script;
  sh = "#!/bin/sh\n"
       "# Corral run "
       + run_id
       + ": written by the daemon for sbatch. Every value is quoted; the\n"
         "# shim becomes the batch step's process and starts the trainer.\n";
  // Slurm sets CUDA_VISIBLE_DEVICES for the GPUs it gave the job.
  auto env = run_environment(spec, run_id, {});
  for (auto& [k, v] : env) {
    if (k == "CUDA_VISIBLE_DEVICES" || k.rfind("SLURM_", 0) == 0
        || !is_identifier(k))
      continue;
    sh += "export " + shell_quote(k + "=" + v) + "\n";
  }
  std::vector<std::string> shim{cfg.slurm_shim.empty() ? cfg.shim_path
                                                       : cfg.slurm_shim,
                                "--run-dir",
                                dir,
                                "--cwd",
                                spec.cwd,
                                "--stop-signal",
                                std::to_string(spec.stop.signal),
                                "--grace-ms",
                                std::to_string(spec.stop.grace.count()),
                                "--log-max-bytes",
                                std::to_string(cfg.log_max_bytes),
                                "--log-keep",
                                std::to_string(cfg.log_keep),
                                "--forward",
                                join_signals(spec),
                                "--suspend-file",
                                dir + "/suspended",
                                "--report-file",
                                dir + "/report",
                                "--exit-like-main",
                                "--"};
  shim.insert(shim.end(), spec.command.begin(), spec.command.end());
  sh += "exec";
  for (auto& w : shim)
    sh += " " + shell_quote(w);
  sh += "\n";
  return job;
}

namespace {

std::string text_of(const nlohmann::json& j) {
  if (j.is_string())
    return j.get<std::string>();
  if (j.is_number_integer())
    return std::to_string(j.get<long long>());
  if (j.is_array() && !j.empty()) // newer Slurm: a list of flags
    return text_of(j.front());
  return {};
}

} // namespace

result<std::vector<slurm_job>> parse_squeue_json(std::string_view text) {
  auto doc = nlohmann::json::parse(text, nullptr, false);
  if (doc.is_discarded() || !doc.is_object())
    return make_error(ec::internal, "squeue --json did not print a JSON "
                                    "object");
  auto jobs = doc.find("jobs");
  if (jobs == doc.end() || !jobs->is_array())
    return make_error(ec::internal, "squeue --json printed no 'jobs' list");
  std::vector<slurm_job> out;
  for (auto& j : *jobs) {
    if (!j.is_object())
      continue;
    slurm_job job;
    if (auto id = j.find("job_id"); id != j.end())
      job.id = text_of(*id);
    if (job.id.empty())
      continue;
    if (auto s = j.find("job_state"); s != j.end())
      job.state = text_of(*s);
    if (auto r = j.find("state_reason"); r != j.end())
      job.reason = text_of(*r);
    if (auto c = j.find("command"); c != j.end())
      job.script = text_of(*c);
    if (auto h = j.find("batch_host"); h != j.end())
      job.node = text_of(*h);
    if (job.node.empty())
      if (auto n = j.find("nodes"); n != j.end())
        job.node = text_of(*n);
    if (is_final_slurm_state(job.state))
      if (auto e = j.find("exit_code"); e != j.end()) {
        if (e->is_number_integer()) {
          // 22.05 gives the batch step's wait status.
          int ws = e->get<int>();
          if (WIFSIGNALED(ws))
            job.signal = WTERMSIG(ws);
          else
            job.exit_code = WEXITSTATUS(ws);
        } else if (e->is_object()) { // newer Slurm
          if (auto rc = e->find("return_code"); rc != e->end()) {
            if (rc->is_number_integer())
              job.exit_code = rc->get<int>();
            else if (rc->is_object() && rc->value("set", false))
              job.exit_code = rc->value("number", 0);
          }
          if (auto sig = e->find("signal"); sig != e->end() && sig->is_object())
            if (auto id = sig->find("id"); id != sig->end()) {
              if (id->is_number_integer() && id->get<int>() > 0)
                job.signal = id->get<int>();
              else if (id->is_object() && id->value("set", false))
                job.signal = id->value("number", 0);
            }
        }
      }
    out.push_back(std::move(job));
  }
  return out;
}

result<std::vector<slurm_job>> parse_squeue_lines(std::string_view text) {
  std::vector<slurm_job> out;
  std::size_t start = 0;
  while (start < text.size()) {
    auto end = text.find('\n', start);
    if (end == std::string_view::npos)
      end = text.size();
    auto line = text.substr(start, end - start);
    start = end + 1;
    if (line.empty())
      continue;
    std::vector<std::string> f;
    std::size_t from = 0;
    for (;;) {
      auto bar = line.find('|', from);
      f.emplace_back(line.substr(from, bar == std::string_view::npos
                                           ? std::string_view::npos
                                           : bar - from));
      if (bar == std::string_view::npos)
        break;
      from = bar + 1;
    }
    if (f.size() != 4 || f[0].empty())
      return make_error(ec::internal, "squeue printed a line that is not "
                                      "id|state|reason|host: '"
                                          + std::string{line} + "'");
    slurm_job job;
    job.id = f[0];
    job.state = f[1];
    job.reason = f[2];
    if (f[3] != "n/a" && f[3] != "(null)")
      job.node = f[3];
    out.push_back(std::move(job));
  }
  return out;
}

std::vector<std::string> squeue_command(bool json) {
  // All states: a job that just ended is still listed (until MinJobAge)
  // with its final state. --me: only the daemon's own jobs, where the
  // installed squeue honours filters (22.05's --json does not).
  if (json)
    return {"squeue", "--json", "--states=all", "--me"};
  return {"squeue", "--noheader", "--states=all", "--me",
          "--format=%i|%T|%r|%B"};
}

bool squeue_lacks_json(const std::string& output) {
  return output.find("json") != std::string::npos
         && (output.find("unrecognized") != std::string::npos
             || output.find("invalid option") != std::string::npos
             || output.find("plugin") != std::string::npos);
}

bool is_final_slurm_state(std::string_view state) {
  return !(state.empty() || state == "PENDING" || state == "RUNNING"
           || state == "SUSPENDED" || state == "CONFIGURING"
           || state == "COMPLETING" || state == "REQUEUED"
           || state == "REQUEUE_FED" || state == "REQUEUE_HOLD"
           || state == "RESIZING" || state == "RESV_DEL_HOLD"
           || state == "SIGNALING" || state == "STAGE_OUT"
           || state == "STOPPED");
}

bool is_network_filesystem(const std::string& path, std::string* name) {
  struct statfs fs {};
  if (::statfs(path.c_str(), &fs) != 0)
    return false;
  static const std::pair<unsigned long, const char*> known[] = {
      {0x6969, "nfs"},      {0x517B, "smb"},       {0xFF534D42, "cifs"},
      {0xFE534D42, "smb2"}, {0x00C36400, "ceph"},  {0x0BD00BD0, "lustre"},
      {0x47504653, "gpfs"}, {0x65735546, "fuse"},  {0x19830326, "beegfs"},
      {0x01021997, "9p"},   {0x5346414F, "afs"},   {0x7461636F, "ocfs2"},
      {0x01161970, "gfs2"}, {0xAAD7AAEA, "panfs"},
  };
  auto type = static_cast<unsigned long>(fs.f_type) & 0xFFFFFFFFUL;
  for (auto& [magic, fs_name] : known)
    if (type == magic) {
      if (name)
        *name = fs_name;
      return true;
    }
  return false;
}

bool suspend_file_says_stopped(std::string_view text) {
  return text.rfind("stopped ", 0) == 0;
}

} // namespace corral
