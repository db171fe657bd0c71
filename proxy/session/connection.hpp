#pragma once
// Inside the session layer only: the Session class that session.cpp (the connection core:
// identify, admit, decide, connect, relay, finish), fast_path.cpp, tls.cpp and http.cpp each
// implement a part of. Runs on its worker's single-threaded io_context.
#include <asio/awaitable.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/steady_timer.hpp>

#include <chrono>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "inspect/client_hello.hpp"
#include "inspect/http_gate.hpp"
#include "session/context.hpp"
#include "session/refusal.hpp"

namespace egressd::session_detail {

using asio::ip::tcp;

// Marks a connection's time in one phase on the active gauge.
class PhaseGauge {
 public:
  explicit PhaseGauge(Metrics& metrics) : metrics_(metrics) {}
  ~PhaseGauge() { enter(std::nullopt); }
  void enter(std::optional<Phase> phase) {
    if (current_) metrics_.active(*current_).Decrement();
    current_ = phase;
    if (current_) metrics_.active(*current_).Increment();
  }

 private:
  Metrics& metrics_;
  std::optional<Phase> current_;
};

// Cancels `socket`'s operations when the deadline passes; `fired` says whether it did.
class Deadline {
 public:
  Deadline(tcp::socket& socket, unsigned ms) : timer_(socket.get_executor()) {
    timer_.expires_after(std::chrono::milliseconds(ms));
    timer_.async_wait([this, &socket](const asio::error_code& error) {
      if (error) return;
      fired_ = true;
      asio::error_code ignored;
      socket.cancel(ignored);
    });
  }
  ~Deadline() { timer_.cancel(); }
  bool fired() const { return fired_; }

 private:
  asio::steady_timer timer_;
  bool fired_ = false;
};

// The HTTP side of one connection: the gate (what may go to the origin) and how the two
// directions tell each other what happened.
struct HttpExchange {
  HttpExchange(const asio::any_io_executor& executor, size_t capacity)
      : gate(capacity), wake(executor) {
    wake.expires_at(asio::steady_timer::time_point::max());
  }
  HttpGate gate;
  bool intercept = false;       // requests for connection_name get the sandbox's transforms
  std::string connection_name;  // the name the upstream was dialled (and verified) for
  bool denied = false;          // a later request was refused: the 403 follows the answers
  bool upstream_ended = false;  // the server side is done
  asio::steady_timer wake;      // the client side waits on it for the answer to an upgrade
};

class Session : public std::enable_shared_from_this<Session> {
 public:
  Session(SessionContext& context, tcp::socket client)
      : ctx_(context),
        settings_(context.settings.share()),
        client_(std::move(client)),
        upstream_(client_.get_executor()),
        phase_(ctx_.metrics),
        started_(std::chrono::steady_clock::now()),
        started_wall_(std::chrono::system_clock::now()) {
    ctx_.active.fetch_add(1, std::memory_order_relaxed);
  }
  ~Session() { ctx_.active.fetch_sub(1, std::memory_order_relaxed); }

  asio::awaitable<void> run(const tcp::endpoint& peer);

 private:
  asio::awaitable<void> run_inspected();
  asio::awaitable<void> run_fast_path();
  asio::awaitable<bool> peek_hello(ClientHelloParser& parser);
  asio::awaitable<void> run_http();
  asio::awaitable<bool> read_first_head(HttpExchange& exchange);
  // session/http_relay.hpp: over plain sockets or TLS channels.
  template <class ClientIo, class UpstreamIo>
  asio::awaitable<void> http_client_side(HttpExchange& exchange, ClientIo& client,
                                         UpstreamIo& upstream);
  template <class ClientIo, class UpstreamIo>
  asio::awaitable<void> http_server_side(HttpExchange& exchange, ClientIo& client,
                                         UpstreamIo& upstream);
  bool request_edit(const HttpExchange& exchange, RequestEdit& edit);
  // DESIGN.md "Request transforms": TLS terminated on both sides, requests edited.
  asio::awaitable<void> run_intercepted_tls();
  asio::awaitable<bool> connect_upstream();
  // Dedicated egress: binds/marks the upstream socket as the sandbox's gateway says.
  asio::error_code apply_gateway(const tcp::endpoint& target);
  asio::awaitable<std::optional<Reason>> verify_destination(bool may_redirect);
  asio::awaitable<void> pass_through_audited(std::span<const uint8_t> pending);
  void start_relay();
  void direction_done();
  Decision decide_now(const std::string* name);
  bool enforced(Reason reason);
  asio::awaitable<void> deny(Reason reason);
  void leave_peek();
  void finish(Reason reason);
  void abort(Reason reason);
  bool admit();

  SessionContext& ctx_;
  std::shared_ptr<const Settings> settings_;
  tcp::socket client_;
  tcp::socket upstream_;
  PhaseGauge phase_;
  std::chrono::steady_clock::time_point started_;
  std::chrono::system_clock::time_point started_wall_;  // the access log's `start`
  std::optional<double> connect_ms_;                    // the access log's `connect_ms`
  bool peek_observed_ = false;
  std::shared_ptr<const Sandbox> sandbox_;
  std::shared_ptr<LiveConnection> live_;
  IpAddress source_, destination_;
  std::optional<IpAddress> dial_;  // where egressd connects, when DNS verification moved it
  uint16_t source_port_ = 0, port_ = 0;
  Proto proto_ = Proto::tcp;
  std::string name_;
  Decision decision_;
  std::string rule_;  // the deciding rule's text, copied: the policy may be replaced meanwhile
  std::optional<Reason> would_deny_;  // audit mode: the first refusal that was let through
  uint64_t bytes_up_ = 0, bytes_down_ = 0;
  bool ech_ = false;
  std::string via_;  // the gateway the connection left through
  bool intercepted_ = false;
  std::vector<uint8_t> hello_;  // an intercepted connection's ClientHello, for its handshake
  bool finished_ = false;
  std::optional<Reason> aborted_;
  std::optional<Deadline> upstream_finish_deadline_;
  std::optional<SpliceDirection> up_, down_;
  int directions_open_ = 0;
  bool relaying_ = false;
};

}  // namespace egressd::session_detail
