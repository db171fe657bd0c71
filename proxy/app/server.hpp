#pragma once
#include "config/config.hpp"

namespace egressd {

// Runs the proxy until SIGTERM/SIGINT (drain, exit 0). SIGHUP reloads the file, SIGUSR1
// reopens the access log. Returns the process exit code.
int run_server(Config config);

}  // namespace egressd
