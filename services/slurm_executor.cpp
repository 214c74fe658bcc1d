#include "services/slurm_executor.hpp"

#include "services/exit_record.hpp"
#include "services/pidfd.hpp"
#include "services/proc.hpp"

#include <filesystem>
#include <fstream>
#include <sstream>

namespace corral {

namespace {

// The signal's name as scancel takes it: "USR1" for SIGUSR1.
std::string scancel_signal(int sig) {
  auto name = signal_name(sig);
  if (name.rfind("SIG", 0) == 0)
    name = name.substr(3);
  return name;
}

// How long a final state may come without the exit file before the run
// ends without it (the shim was killed, or the file is slow to show).
constexpr auto exit_file_wait = std::chrono::seconds{3};

} // namespace

result<std::unique_ptr<slurm_executor>>
slurm_executor::launch(const executor_config& cfg, const std::string& run_id,
                       const run_spec& spec, bool next_attempt,
                       slurm_sender send, bool look_first) {
  std::unique_ptr<slurm_executor> self{new slurm_executor};
  self->run_id_ = run_id;
  self->run_dir_ = slurm_run_dir(cfg, run_id);
  self->send_ = std::move(send);
  self->job_ = make_batch_job(cfg, run_id, spec);
  if (look_first) {
    // The files are the lost submission's: its job may be running.
    self->send("find", {squeue_command(true)});
    return self;
  }
  if (!next_attempt)
    if (auto moved
        = archive_run_dir(self->run_dir_, cfg.slurm_dir + "/.archive");
        !moved)
      return moved.error();
  std::error_code err;
  std::filesystem::create_directories(self->run_dir_, err);
  if (err)
    return make_error(ec::internal,
                      "cannot create the Slurm run directory " + self->run_dir_
                          + " (slurm.log_dir must be writable and shared "
                            "with the nodes): "
                          + err.message());
  // The previous attempt's files must not be read as this one's.
  for (auto name : {"exit", "report", "suspended"})
    std::filesystem::remove(self->run_dir_ + "/" + name, err);
  if (auto submitted = self->submit(); !submitted)
    return submitted.error();
  return self;
}

status slurm_executor::submit() {
  auto script = run_dir_ + "/batch.sh";
  {
    std::ofstream out(script, std::ios::trunc);
    out << job_.script;
    if (!out.flush())
      return make_error(ec::internal,
                        "cannot write the batch script " + script);
  }
  std::error_code err;
  std::filesystem::permissions(script, std::filesystem::perms::owner_all,
                               std::filesystem::perm_options::add, err);
  auto argv = std::vector<std::string>{"sbatch"};
  argv.insert(argv.end(), job_.sbatch_args.begin(), job_.sbatch_args.end());
  argv.push_back(script);
  send("submit", {argv});
  return ok;
}

bool slurm_executor::names_slurm(const nlohmann::json& identity) {
  return identity.is_object() && identity.value("executor", "") == "slurm";
}

result<std::unique_ptr<slurm_executor>>
slurm_executor::adopt(const executor_config& cfg, const std::string& run_id,
                      const nlohmann::json& identity, slurm_sender send) {
  auto id = identity.find("job_id");
  if (id == identity.end() || !id->is_string()
      || id->get<std::string>().empty())
    return make_error(ec::internal,
                      "the saved identity names no Slurm job (the daemon "
                      "stopped before sbatch answered)");
  std::unique_ptr<slurm_executor> self{new slurm_executor};
  self->run_id_ = run_id;
  self->run_dir_ = identity.value("run_dir", slurm_run_dir(cfg, run_id));
  self->job_id_ = id->get<std::string>();
  self->send_ = std::move(send);
  self->suspended_ = identity.value("suspended", false);
  self->suspend_refused_ = identity.value("suspend_refused", false);
  return self;
}

nlohmann::json slurm_executor::identity_json() const {
  return {{"executor", "slurm"},
          {"job_id",
           job_id_.empty() ? nlohmann::json(nullptr) : nlohmann::json(job_id_)},
          {"run_dir", run_dir_},
          {"suspended", suspended_},
          // A pause that is the shim's stop alone (Slurm refused to
          // suspend) stays a pause for a daemon that restarts.
          {"suspend_refused", suspend_refused_}};
}

void slurm_executor::send(std::string tag,
                          std::vector<std::vector<std::string>> commands) {
  if (send_)
    send_({std::move(tag), std::move(commands)});
}

std::vector<std::string>
slurm_executor::scancel(std::vector<std::string> args) const {
  std::vector<std::string> argv{"scancel"};
  argv.insert(argv.end(), args.begin(), args.end());
  argv.push_back(job_id_);
  return argv;
}

status slurm_executor::freeze() {
  if (job_id_.empty())
    return make_error(ec::invalid_transition,
                      "run " + run_id_ + " has no Slurm job yet");
  std::error_code err;
  std::filesystem::remove(run_dir_ + "/suspended", err);
  suspend_sent_ = false;
  suspend_refused_ = false;
  pausing_ = true;
  send("tstp", {scancel({"--batch", "--signal=TSTP"})});
  return ok;
}

bool slurm_executor::advance_pause() {
  if (!pausing_ || suspend_sent_)
    return suspend_sent_;
  auto text = read_small_file(run_dir_ + "/suspended");
  if (!text || !suspend_file_says_stopped(*text))
    return false;
  suspend_sent_ = true;
  send("suspend", {{"scontrol", "suspend", job_id_}});
  return true;
}

bool slurm_executor::frozen() const {
  if (state_ == "SUSPENDED" && !pausing_)
    return true; // suspended from outside: Slurm stops every process
  if (!(suspended_ || suspend_refused_))
    return false;
  auto text = read_small_file(run_dir_ + "/suspended");
  return text && suspend_file_says_stopped(*text);
}

status slurm_executor::thaw() {
  pausing_ = false;
  std::vector<std::vector<std::string>> cmds;
  if (suspended_ || state_ == "SUSPENDED")
    cmds.push_back({"scontrol", "resume", job_id_});
  // Slurm's resume may only thaw; the shim continues what it stopped.
  cmds.push_back(scancel({"--batch", "--signal=CONT"}));
  suspended_ = false;
  suspend_sent_ = false;
  send("resume", std::move(cmds));
  return ok;
}

void slurm_executor::continue_stopped() {
  if (!job_id_.empty())
    send("continue", {scancel({"--batch", "--signal=CONT"})});
}

bool slurm_executor::main_stopped() const {
  return state_ == "SUSPENDED";
}

status slurm_executor::signal_main(int sig) {
  if (job_id_.empty())
    return make_error(ec::internal, "no Slurm job yet");
  send("signal", {scancel({"--batch", "--signal=" + scancel_signal(sig)})});
  return ok;
}

void slurm_executor::signal_tree(int sig) {
  if (!job_id_.empty())
    send("signal", {scancel({"--full", "--signal=" + scancel_signal(sig)})});
}

void slurm_executor::kill_tree() {
  if (!job_id_.empty())
    send("cancel", {scancel({})});
}

std::optional<int> slurm_executor::main_pid() const {
  if (main_pid_)
    return main_pid_;
  auto text = read_small_file(run_dir_ + "/report");
  if (!text)
    return std::nullopt;
  std::istringstream in(*text);
  std::string word;
  int pid = 0;
  if (in >> word >> pid && word == "started" && pid > 0)
    main_pid_ = pid;
  return main_pid_;
}

slurm_executor::outcome
slurm_executor::on_answer(const std::string& tag,
                          const result<command_output>& answer) {
  outcome out;
  auto failed = !answer || !answer->ok();
  auto why = !answer  ? answer.error().message
             : failed ? answer->failure()
                      : std::string{};
  if (tag == "find") {
    // A job of this run's batch script, from a submission whose answer
    // was lost; else submit now.
    std::vector<slurm_job> jobs;
    if (!failed)
      if (auto parsed = parse_squeue_json(answer->out))
        jobs = std::move(*parsed);
    for (auto& j : jobs)
      if (j.script == run_dir_ + "/batch.sh") {
        job_id_ = j.id;
        out.submitted = true;
        out.note = "found Slurm job " + j.id
                   + " of a submission whose answer the previous daemon did "
                     "not see; following it";
        return out;
      }
    std::error_code err;
    if (std::filesystem::exists(run_dir_ + "/exit", err)) {
      // It ran and ended while no daemon watched: not a second time.
      out.ended_unseen = true;
      return out;
    }
    for (auto name : {"report", "suspended"})
      std::filesystem::remove(run_dir_ + "/" + name, err);
    std::filesystem::create_directories(run_dir_, err);
    if (auto submitted = submit(); !submitted)
      out.failure = submitted.error();
    return out;
  }
  if (tag == "submit") {
    if (failed) {
      out.failure = make_error(ec::internal, "sbatch refused the job: " + why);
      return out;
    }
    // --parsable: "<id>" or "<id>;<cluster>".
    auto id = answer->out.substr(0, answer->out.find_first_of(";\n"));
    if (id.empty()) {
      out.failure = make_error(ec::internal, "sbatch printed no job id: '"
                                                 + answer->out + "'");
      return out;
    }
    job_id_ = id;
    out.submitted = true;
    return out;
  }
  if (tag == "suspend") {
    if (!pausing_)
      return out;
    if (!failed) {
      suspended_ = true;
      state_ = "SUSPENDED"; // what Slurm just accepted; polls confirm it
      return out;
    }
    // Suspending takes an operator's rights; the shim's stop stands alone.
    suspend_refused_ = true;
    out.note = "scontrol suspend was refused (" + why
               + "); the shim stopped every process, and Slurm still shows "
                 "the job RUNNING";
    return out;
  }
  if (tag == "tstp" && failed) {
    pausing_ = false;
    out.failure
        = make_error(ec::internal, "cannot signal the shim of Slurm job "
                                       + job_id_ + ": " + why);
    return out;
  }
  if (tag == "resume") {
    if (failed)
      out.failure = make_error(ec::internal, "cannot resume Slurm job "
                                                 + job_id_ + ": " + why);
    else if (state_ == "SUSPENDED")
      // Accepted: until the next poll, a stale SUSPENDED must not read as
      // a suspend from outside.
      state_ = "RUNNING";
    return out;
  }
  if (failed)
    out.note = tag + " of Slurm job " + job_id_ + " failed: " + why;
  return out;
}

void slurm_executor::observe(const std::optional<slurm_job>& job,
                             clock::time_point now) {
  if (!job) {
    if (!over_since_)
      over_since_ = now;
    return;
  }
  listed_ = true;
  state_ = job->state;
  reason_ = job->reason;
  if (!job->node.empty())
    node_ = job->node;
  exit_code_ = job->exit_code;
  signal_ = job->signal;
  if (state_ == "RUNNING" && !pausing_)
    suspended_ = false; // resumed, by us or from outside
  if (is_final_slurm_state(state_)) {
    if (!over_since_)
      over_since_ = now;
  } else {
    over_since_.reset();
  }
}

bool slurm_executor::ended(clock::time_point now) const {
  if (!over_since_)
    return false;
  std::error_code err;
  return std::filesystem::exists(run_dir_ + "/exit", err)
         || now - *over_since_ >= exit_file_wait;
}

exit_facts slurm_executor::collect_exit() {
  auto facts = facts_from_record(run_dir_);
  facts.job_id = job_id_;
  facts.cluster_state = is_final_slurm_state(state_) ? state_ : "";
  facts.cluster_exit_code = exit_code_;
  facts.cluster_signal = signal_;
  return facts;
}

} // namespace corral
