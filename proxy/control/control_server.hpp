#pragma once
// HTTP/1.1 + JSON on the unix socket listen.control (mode 0600), on its own thread so a slow
// or stuck client never blocks the data path; each client is a coroutine with an idle
// timeout; requests are read by RequestReader (control/request_reader.hpp).
#include <asio/io_context.hpp>

#include <chrono>
#include <memory>
#include <string>
#include <thread>

#include "control/api.hpp"

namespace egressd {

class ControlServer {
 public:
  static constexpr size_t kMaxClients = 256;
  static constexpr std::chrono::seconds kIdleTimeout{30};   // waiting for a whole request
  static constexpr std::chrono::seconds kWriteTimeout{10};  // a client that does not read

  ControlServer(ControlApi& api, std::string path);
  ~ControlServer();
  // Binds (replacing a stale socket file, refusing a live one) and starts serving; with
  // `inherited` (a takeover), serves that listening socket instead.
  std::string start(int inherited = -1);
  // `unlink_path` false after a takeover: the socket file is the new process's now.
  void stop(bool unlink_path = true);
  int native_handle() const;
  // A takeover in progress: no new client is accepted (they wait in the backlog for whichever
  // process accepts next) and every request from now on is answered 503; returns once no
  // request is being handled, so the state on disk is final. resume() undoes it.
  void pause();
  void resume();

 private:
  struct State;
  void accept_clients();
  ControlApi& api_;
  std::string path_;
  // Before io_: clients still being served when io_ is destroyed release their slot here.
  size_t clients_ = 0;
  asio::io_context io_{1};
  std::unique_ptr<State> state_;
  std::thread thread_;
};

std::string http_response_text(const ControlResponse& response, bool keep_alive);

}  // namespace egressd
