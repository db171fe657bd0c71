#pragma once
// egressd --supervise: the small main process systemd tracks, so that `systemctl restart`
// can be a takeover. It starts egressd itself as its child (same arguments, with
// --takeover-if-running) and relays signals to it:
//   SIGHUP, SIGUSR1  passed on (reload, reopen the access log);
//   SIGTERM, SIGINT  passed on as SIGTERM; waits while the child drains, exits with its code;
//   SIGUSR2          systemd's RestartKillSignal: passed on, and exits 0 at once, leaving the
//                    child serving (KillMode=process) until the next start's child takes its
//                    sockets over; it then drains on its own.
// The child exiting ends the supervisor with the child's code. The child gets SIGUSR2 if
// the supervisor dies (PR_SET_PDEATHSIG), so a killed supervisor drops nothing either.
#include <string>
#include <vector>

namespace egressd {

// `arguments` are egressd's own, without --supervise. Returns the process exit code.
int run_supervisor(const std::vector<std::string>& arguments);

}  // namespace egressd
