#pragma once
// Upgrades that drop nothing (DESIGN.md "Configuration file"): the running egressd hands its
// listening sockets to a new one over a unix stream socket beside the control socket
// (`<listen.control>.takeover`, mode 0600), with SCM_RIGHTS. The kernel sockets never close
// in between, so no SYN is refused: connections queue in the backlog until a process accepts.
//
//   new -> old   "takeover\n"
//   old -> new   one line of JSON naming each descriptor, with the descriptors (SCM_RIGHTS)
//   new -> old   "ready\n" once it serves them; the old stops accepting and drains.
//                (The connection ending without "ready": the old goes on as before.)
#include <chrono>
#include <string>
#include <vector>

namespace egressd {

// Blocking, with a deadline; errors are messages. The caller owns the descriptors received.
std::string send_with_fds(int socket, const std::string& text, const std::vector<int>& fds);
std::string receive_with_fds(int socket, std::string& text, std::vector<int>& fds,
                             std::chrono::milliseconds timeout);
// One line (without its newline), at most 4096 bytes; empty on EOF, timeout or error.
std::string read_line(int socket, std::chrono::milliseconds timeout);
bool write_all(int socket, const std::string& text);
// A connected stream socket to `path`, or -1 (errno set).
int connect_unix(const std::string& path);

}  // namespace egressd
