#pragma once
// Captures the first bytes a real client sends: listens on 127.0.0.1, runs `command` (with
// {PORT} replaced) through /bin/sh, and returns what arrives until the TLS records carry a
// whole handshake message, or the client goes quiet. The client is then killed.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <string>
#include <vector>

#include "tls_builder.hpp"

namespace egressd::testing {

inline bool whole_hello(const Bytes& records) {
  Bytes handshake = unframe_records(records);
  if (handshake.size() < 4) return false;
  size_t length = size_t(handshake[1]) << 16 | size_t(handshake[2]) << 8 | handshake[3];
  return handshake.size() >= 4 + length;
}

inline Bytes capture_first_bytes(std::string command, bool stop_at_hello = true) {
  int listener = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t length = sizeof(address);
  if (bind(listener, reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0 ||
      listen(listener, 4) != 0 ||
      getsockname(listener, reinterpret_cast<sockaddr*>(&address), &length) != 0) {
    close(listener);
    return {};
  }
  std::string port = std::to_string(ntohs(address.sin_port));
  for (size_t at; (at = command.find("{PORT}")) != std::string::npos;) command.replace(at, 6, port);
  pid_t child = fork();
  if (child == 0) {
    setpgid(0, 0);
    execl("/bin/sh", "sh", "-c", command.c_str(), static_cast<char*>(nullptr));
    _exit(127);
  }
  Bytes received;
  pollfd waiting{listener, POLLIN, 0};
  if (poll(&waiting, 1, 10000) == 1) {
    int connection = accept4(listener, nullptr, nullptr, SOCK_CLOEXEC);
    pollfd readable{connection, POLLIN, 0};
    while (poll(&readable, 1, 1500) == 1) {
      uint8_t buffer[4096];
      ssize_t n = read(connection, buffer, sizeof(buffer));
      if (n <= 0) break;
      received.insert(received.end(), buffer, buffer + n);
      if (stop_at_hello && whole_hello(received)) break;
    }
    close(connection);
  }
  close(listener);
  kill(-child, SIGKILL);
  kill(child, SIGKILL);
  waitpid(child, nullptr, 0);
  return received;
}

}  // namespace egressd::testing
