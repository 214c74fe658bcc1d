#pragma once
/// The client verbs of the `corral` binary: submit, ps, show, gpus, pause,
/// resume, stop. Each talks to the daemon over its HTTP API.

namespace CLI {
class App;
} // namespace CLI

namespace corral::cli {

/// Registers the client verbs on app; they set exit_code when run:
/// 0 success, 1 the server refused (its message is printed as is),
/// 2 a usage error, 3 the server cannot be reached.
void add_client_commands(CLI::App& app, int& exit_code);

} // namespace corral::cli
