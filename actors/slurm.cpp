#include "actors/slurm.hpp"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

namespace corral {

namespace {

using self_ptr = slurm_actor::stateful_pointer<slurm_state>;

// One squeue for every watched job, and a report to each of their runs.
void poll(self_ptr self) {
  auto& st = self->state;
  if (st.watched.empty())
    return;
  auto out = run_command(squeue_command(st.json), st.cfg.command_timeout);
  if (out && !out->ok() && st.json && squeue_lacks_json(out->err + out->out)) {
    spdlog::info("slurm: this squeue has no --json; reading its --format "
                 "lines instead (exit codes come from the shim's exit files)");
    st.json = false;
    out = run_command(squeue_command(false), st.cfg.command_timeout);
  }
  std::string failure;
  std::vector<slurm_job> jobs;
  if (!out)
    failure = out.error().message;
  else if (!out->ok())
    failure = "squeue failed: " + out->failure();
  else if (auto parsed = st.json ? parse_squeue_json(out->out)
                                 : parse_squeue_lines(out->out);
           !parsed)
    failure = parsed.error().message;
  else
    jobs = std::move(*parsed);
  if (!failure.empty()) {
    // The runs keep what they knew; the next poll tries again.
    if (failure != st.last_failure)
      spdlog::warn("slurm: cannot poll the jobs' states: {}", failure);
    st.last_failure = failure;
    return;
  }
  if (!st.last_failure.empty())
    spdlog::info("slurm: squeue answers again");
  st.last_failure.clear();
  std::map<std::string, const slurm_job*> by_id;
  for (auto& j : jobs)
    by_id.emplace(j.id, &j);
  for (auto& [id, run] : st.watched) {
    slurm_report r;
    r.job_id = id;
    if (auto it = by_id.find(id); it != by_id.end()) {
      r.listed = true;
      r.job = *it->second;
    }
    self->send(run, atom::job::value, std::move(r));
  }
}

} // namespace

slurm_actor::behavior_type
slurm_client(slurm_actor::stateful_pointer<slurm_state> self,
             slurm_config cfg) {
  self->state.cfg = cfg;
  self->delayed_send(self, cfg.poll, atom::tick::value);
  return {
      [=](atom::slurm, command_list commands) -> command_result {
        command_result last = make_error(ec::internal, "no command given");
        for (auto& argv : commands) {
          last = run_command(argv, self->state.cfg.command_timeout);
          if (!last) {
            spdlog::warn("slurm: {}", last.error().message);
            break;
          }
          spdlog::debug("slurm: {} → {}", fmt::join(argv, " "), last->code);
          if (!last->ok())
            break;
        }
        return last;
      },
      [=](atom::watch, std::string job, run_actor run) {
        self->state.watched[job] = run;
      },
      [=](atom::unwatch, std::string job) { self->state.watched.erase(job); },
      [=](atom::tick) {
        poll(self);
        self->delayed_send(self, self->state.cfg.poll, atom::tick::value);
      },
  };
}

} // namespace corral
