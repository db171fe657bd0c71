#pragma once
#include "config/config.hpp"

namespace egressd {

// Runs the proxy until SIGTERM/SIGINT (drain, exit 0). SIGHUP reloads the file, SIGUSR1
// reopens the access log. Returns the process exit code.
// With `takeover`, first receives the listening sockets of the egressd running with the same
// listen.control (net/handoff.hpp), then tells it to stop accepting and drain.
int run_server(Config config, bool takeover = false);

}  // namespace egressd
