// HTTP ports: every request head is decided before any of it reaches the origin (HttpGate);
// the answers come back through the gate too, so an upgrade is honoured only when the origin
// agrees.
#include <asio/experimental/as_tuple.hpp>
#include <asio/use_awaitable.hpp>
#include <asio/write.hpp>

#include <asio/experimental/awaitable_operators.hpp>
#include "net/socket_options.hpp"
#include "session/connection.hpp"
#include "util/asio_tokens.hpp"

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
  leave_peek();
  if (!co_await connect_upstream()) co_return;
  phase_.enter(Phase::relay);
  ex.gate.allow();
  co_await (http_client_side(ex) && http_server_side(ex));
  asio::error_code ignored;
  upstream_.close(ignored);
  if (ex.denied && client_.is_open()) {
    co_await refuse(client_, Proto::http, decision_.reason, name_);
  }
  client_.close(ignored);
}

asio::awaitable<void> Session::http_client_side(HttpExchange& ex) {
  using Step = HttpGate::Step;
  for (;;) {
    switch (ex.gate.next()) {
      case Step::decide: {
        name_ = ex.gate.head().name;
        Decision decision = decide_now(name_.empty() ? nullptr : &name_);
        if (decision.verdict == Verdict::allow) {
          // A later Host must resolve to the server this connection already reached.
          if (auto refusal = co_await verify_destination(false); refusal && enforced(*refusal))
            decision = decision_;
        }
        if (decision.verdict == Verdict::allow) {
          ex.gate.allow();
        } else {
          ex.gate.deny();
        }
        break;
      }
      case Step::forward: {
        auto bytes = ex.gate.forwardable();
        auto [error, written] = co_await asio::async_write(
            upstream_, asio::buffer(bytes.data(), bytes.size()), use_nothrow);
        if (error) {
          if (!aborted_) reset_both(client_, upstream_);
          co_return;
        }
        bytes_up_ += written;
        ctx_.metrics.bytes_up(static_cast<double>(written));
        ex.gate.forwarded();
        break;
      }
      case Step::refused:
        if (enforced(ex.gate.refusal())) {
          decision_ = Decision{Verdict::deny, ex.gate.refusal(), {}, std::nullopt};
          rule_.clear();
          ex.gate.deny();
        } else {
          ex.gate.go_opaque();  // audit: what follows is relayed as it is
        }
        break;
      case Step::denied: {
        // Let the server finish what it was answering, then the 403 follows on the client side.
        ex.denied = true;
        asio::error_code ignored;
        upstream_.shutdown(tcp::socket::shutdown_send, ignored);
        upstream_finish_deadline_.emplace(upstream_, settings_->peek_ms);  // bounded wait
        if (ex.gate.all_answered()) upstream_.cancel(ignored);  // nothing more to wait for
        co_return;
      }
      case Step::opaque: {
        auto up = [this](size_t n) {
          bytes_up_ += n;
          ctx_.metrics.bytes_up(static_cast<double>(n));
        };
        co_await splice_one_way(client_, upstream_, ctx_.pipes, up);
        co_return;
      }
      case Step::await_upgrade:
        if (ex.upstream_ended) co_return;
        co_await ex.wake.async_wait(use_nothrow);  // the server side cancels it on news
        break;
      case Step::read_more: {
        auto space = ex.gate.free_space();
        auto [error, n] =
            co_await client_.async_read_some(asio::buffer(space.data(), space.size()), use_nothrow);
        if (error == asio::error::eof) {
          asio::error_code ignored;
          upstream_.shutdown(tcp::socket::shutdown_send, ignored);
          co_return;
        }
        if (error) {
          if (!aborted_ && error != asio::error::operation_aborted) reset_both(client_, upstream_);
          co_return;
        }
        ex.gate.received(n);
        break;
      }
    }
  }
}

asio::awaitable<void> Session::http_server_side(HttpExchange& ex) {
  auto down = [this](size_t n) {
    bytes_down_ += n;
    ctx_.metrics.bytes_down(static_cast<double>(n));
  };
  std::vector<uint8_t> buffer(16384);
  for (;;) {
    // Refused later request: once every request before it is answered, the 403 can follow.
    if (ex.denied && ex.gate.all_answered()) break;
    auto [error, n] = co_await upstream_.async_read_some(asio::buffer(buffer), use_nothrow);
    if (error) {
      if (error == asio::error::eof) {
        asio::error_code ignored;
        if (!ex.denied) client_.shutdown(tcp::socket::shutdown_send, ignored);  // half-close
      } else if (!aborted_ && !ex.denied && error != asio::error::operation_aborted) {
        reset_both(client_, upstream_);  // the server reset: so does the client's side
      }
      break;
    }
    if (!ex.gate.observe_response(std::span(buffer.data(), n))) {
      // Responses can no longer be followed, so neither can an upgrade: end it.
      if (!aborted_) reset_both(client_, upstream_);
      break;
    }
    ex.wake.cancel();  // an answer may have settled a pending upgrade
    auto [write_error, written] =
        co_await asio::async_write(client_, asio::buffer(buffer.data(), n), use_nothrow);
    if (write_error) {
      if (!aborted_) reset_both(client_, upstream_);
      break;
    }
    down(written);
    if (ex.gate.switched()) {
      co_await splice_one_way(upstream_, client_, ctx_.pipes, down);
      co_return;
    }
  }
  ex.upstream_ended = true;
  ex.wake.cancel();
}

}  // namespace egressd::session_detail
