/// Entry point: `corral serve` and the client verbs.

#include <CLI/CLI.hpp>

#include "cli/commands.hpp"
#include "main/serve.hpp"

int main(int argc, char** argv) {
  CLI::App app{"corral — run, pause, resume and stop ML training runs",
               "corral"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "corral 0.1.0");
  int exit_code = 0;

  corral::serve_flags flags;
  auto* serve = app.add_subcommand("serve", "Run the daemon");
  serve->add_option("--listen", flags.listen,
                    "HOST:PORT to listen on (default 127.0.0.1:8700; "
                    "port 0 picks a free one)");
  serve->add_option("--state-dir", flags.state_dir,
                    "Where runs, logs, token and endpoint live "
                    "(default $XDG_STATE_HOME/corral)");
  serve->add_option("--config", flags.config_file, "Daemon config file (YAML)");
  serve->add_option("--token-file", flags.token_file,
                    "File holding the API token (default <state-dir>/token)");
  serve
      ->add_option("--cgroup", flags.cgroup,
                   "auto: a cgroup per run when possible; off: signals only")
      ->check(CLI::IsMember({"auto", "off"}));
  serve->add_option("--gpus", flags.gpus,
                    "GPU inventory: a count (4) or indices (0,2,3); "
                    "overrides NVML");
  serve
      ->add_option("--executor", flags.executor,
                   "Executor of experiments that name none: local or slurm "
                   "(default local)")
      ->check(CLI::IsMember({"local", "slurm"}));
  serve->add_option("--slurm-log-dir", flags.slurm_log_dir,
                    "Slurm batch scripts, job output and exit files, on a "
                    "filesystem the nodes share (default <state-dir>/slurm)");
  serve->add_flag("--no-auth", flags.no_auth,
                  "Serve the API without a token (loopback only)");
  serve->add_flag("--stop-runs-on-exit", flags.stop_runs_on_exit,
                  "On SIGTERM, stop every run (normal stop sequence) before "
                  "exiting; by default runs go on and the next daemon takes "
                  "them back");
  serve->callback([&] { exit_code = corral::serve(flags); });

  corral::cli::add_client_commands(app, exit_code);

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    auto rc = app.exit(e);
    return rc == 0 ? 0 : 2;
  }
  return exit_code;
}
