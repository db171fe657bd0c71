// HTTP ports: every request head is decided before any of it reaches the origin (HttpGate);
// the answers come back through the gate too, so an upgrade is honoured only when the origin
// agrees.
#include <asio/experimental/as_tuple.hpp>
#include <asio/use_awaitable.hpp>
#include <asio/write.hpp>

#include <asio/experimental/awaitable_operators.hpp>
#include "net/socket_options.hpp"
#include "session/http_relay.hpp"

namespace egressd::session_detail {

using namespace asio::experimental::awaitable_operators;

// Reads until the first request head is complete. False (after refusing, or after passing the
// bytes through in audit mode) when the connection ends here.
asio::awaitable<bool> Session::read_first_head(HttpExchange& ex) {
  auto refused = [&](Reason reason) -> asio::awaitable<bool> {
    if (enforced(reason)) {
      co_await deny(reason);
    } else {
      ex.gate.go_opaque();
      co_await pass_through_audited(ex.gate.forwardable());
    }
    co_return false;
  };
  // Usually the request head arrived before the accept completed: read it without a timer.
  asio::error_code first_error;
  auto space = ex.gate.free_space();
  size_t n = client_.read_some(asio::buffer(space.data(), space.size()), first_error);
  if (first_error && first_error != asio::error::would_block)
    co_return co_await refused(Reason::not_http);
  ex.gate.received(n);
  std::optional<Deadline> deadline;
  for (;;) {
    switch (ex.gate.next()) {
      case HttpGate::Step::decide:
        co_return true;
      case HttpGate::Step::refused:
        co_return co_await refused(ex.gate.refusal());
      case HttpGate::Step::read_more: {
        if (!deadline) deadline.emplace(client_, settings_->peek_ms);
        space = ex.gate.free_space();
        auto [error, got] =
            co_await client_.async_read_some(asio::buffer(space.data(), space.size()), use_nothrow);
        if (error) {
          if (deadline->fired()) co_return co_await refused(Reason::peek_timeout);
          if (aborted_) co_return false;
          co_return co_await refused(Reason::not_http);
        }
        ex.gate.received(got);
        break;
      }
      default:  // nothing is forwardable or pending before the first decision
        co_return co_await refused(Reason::not_http);
    }
  }
}

// HTTP: every request head client->server is decided before it is relayed (HttpGate holds the
// rules); bodies are relayed as they arrive; responses are followed, never changed. A later
// request that is denied gets the 403 once the server has answered the requests before it;
// then the connection closes. After an upgrade request the client's next bytes wait for the
// origin's answer: only a 101 makes the rest opaque.
asio::awaitable<void> Session::run_http() {
  phase_.enter(Phase::peek);
  HttpExchange ex(client_.get_executor(), settings_->max_peek_bytes);
  if (!co_await read_first_head(ex)) co_return;
  name_ = ex.gate.head().name;
  Decision decision = decide_now(name_.empty() ? nullptr : &name_);
  if (decision.verdict == Verdict::deny) co_return co_await deny(decision.reason);
  if (auto refusal = co_await verify_destination(true); refusal && enforced(*refusal))
    co_return co_await deny(*refusal);
  // A name with a transform: its requests are edited on the way (port 80 needs no TLS to be
  // intercepted). The edit of each request is for the name the connection was dialled for.
  ex.intercept = sandbox_ && !sandbox_->policy->transforms_for(name_).empty();
  ex.connection_name = name_;
  intercepted_ = ex.intercept;
  // Without TLS the only proof of where a secret goes is the name's DNS answers: with
  // dns.verify off the sandbox chooses the address, so no secret is sent there.
  if (ex.intercept && settings_->dns_verify == DnsVerify::off)
    co_return co_await deny(Reason::upstream_untrusted);
  RequestEdit edit;
  if (!request_edit(ex, edit) && enforced(Reason::missing_secret))
    co_return co_await deny(Reason::missing_secret);
  leave_peek();
  if (!co_await connect_upstream()) co_return;
  phase_.enter(Phase::relay);
  ex.gate.allow(&edit);
  PlainIo client{client_}, upstream{upstream_};
  co_await (http_client_side(ex, client, upstream) && http_server_side(ex, client, upstream));
  asio::error_code ignored;
  upstream_.close(ignored);
  if (ex.denied && client_.is_open()) {
    co_await refuse(client_, Proto::http, decision_.reason, name_);
  }
  client_.close(ignored);
}

// The edit of the current request (name_): empty unless the connection is intercepted and the
// request is for the name it was dialled for. False when a placeholder has no secret.
bool Session::request_edit(const HttpExchange& ex, RequestEdit& edit) {
  edit = RequestEdit{};
  if (!ex.intercept || !sandbox_ || name_ != ex.connection_name) return true;
  std::string missing;
  if (build_edit(sandbox_->policy->transforms_for(name_), sandbox_->policy->secrets(), edit,
                 missing))
    return true;
  edit = RequestEdit{};
  return false;
}

}  // namespace egressd::session_detail
