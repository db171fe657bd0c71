#pragma once
#include "config/config.hpp"

namespace egressd {

// Runs the proxy until SIGTERM/SIGINT (drain, exit 0). SIGHUP reloads the file, SIGUSR1
// reopens the access log. Returns the process exit code.
// With a takeover, first receives the listening sockets of the egressd running with the same
// listen.control (net/handoff.hpp), then tells it to stop accepting and drain: `required`
// fails when none answers, `if_running` then starts fresh (what a supervised start does).
// SIGUSR2 says the supervisor left for a restart (app/supervisor.hpp): keep serving, silent
// to systemd, until the next egressd takes over, or stop as on SIGTERM after drain_s.
enum class Takeover { none, required, if_running };
int run_server(Config config, Takeover takeover = Takeover::none);

}  // namespace egressd
