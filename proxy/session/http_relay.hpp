#pragma once
// Inside the session layer only: the two directions of an HTTP connection (HttpGate decides
// what reaches the origin), written once for the ways bytes move: plain sockets (port 80,
// spliced when opaque) and TLS channels (an intercepted connection, copied when opaque).
#include <asio/write.hpp>

#include <vector>

#include "session/connection.hpp"
#include "session/tls_channel.hpp"
#include "util/asio_tokens.hpp"

namespace egressd::session_detail {

// A plain TCP side.
struct PlainIo {
  tcp::socket& socket;
  auto read_some(asio::mutable_buffer buffer) {
    return socket.async_read_some(buffer, use_nothrow);
  }
  auto write(asio::const_buffer buffer) { return asio::async_write(socket, buffer, use_nothrow); }
  asio::awaitable<void> shutdown_send() {
    asio::error_code ignored;
    socket.shutdown(tcp::socket::shutdown_send, ignored);
    co_return;
  }
};

// A TLS side (an intercepted connection).
struct TlsIo {
  TlsChannel& channel;
  auto read_some(asio::mutable_buffer buffer) { return channel.read_some(buffer); }
  auto write(asio::const_buffer buffer) { return channel.write(buffer); }
  asio::awaitable<void> shutdown_send() { return channel.shutdown_send(); }
};

// After a 101 (or in audit, after a refusal): the rest of one direction as it is.
template <class Count>
asio::awaitable<void> opaque_one_way(PlainIo& from, PlainIo& to, PipePool& pipes, Count count) {
  co_await splice_one_way(from.socket, to.socket, pipes, count);
}
template <class From, class To, class Count>
asio::awaitable<void> opaque_one_way(From& from, To& to, PipePool&, Count count) {
  std::vector<uint8_t> buffer(16384);
  for (;;) {
    auto [error, n] = co_await from.read_some(asio::buffer(buffer));
    if (error) {
      if (error == asio::error::eof) co_await to.shutdown_send();
      co_return;
    }
    auto [write_error, written] = co_await to.write(asio::buffer(buffer.data(), n));
    if (write_error) co_return;
    count(written);
  }
}

template <class ClientIo, class UpstreamIo>
asio::awaitable<void> Session::http_client_side(HttpExchange& ex, ClientIo& client,
                                                UpstreamIo& upstream) {
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
        RequestEdit edit;
        if (decision.verdict == Verdict::allow && !request_edit(ex, edit) &&
            enforced(Reason::missing_secret)) {
          decision_ = Decision{Verdict::deny, Reason::missing_secret, {}, std::nullopt};
          decision = decision_;
        }
        if (decision.verdict == Verdict::allow) {
          ex.gate.allow(&edit);
        } else {
          ex.gate.deny();
        }
        break;
      }
      case Step::forward: {
        auto bytes = ex.gate.forwardable();
        auto [error, written] = co_await upstream.write(asio::buffer(bytes.data(), bytes.size()));
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
        co_await upstream.shutdown_send();
        upstream_finish_deadline_.emplace(upstream_, settings_->peek_ms);  // bounded wait
        asio::error_code ignored;
        if (ex.gate.all_answered()) upstream_.cancel(ignored);  // nothing more to wait for
        co_return;
      }
      case Step::opaque: {
        auto up = [this](size_t n) {
          bytes_up_ += n;
          ctx_.metrics.bytes_up(static_cast<double>(n));
        };
        co_await opaque_one_way(client, upstream, ctx_.pipes, up);
        co_return;
      }
      case Step::await_upgrade:
        if (ex.upstream_ended) co_return;
        co_await ex.wake.async_wait(use_nothrow);  // the server side cancels it on news
        break;
      case Step::read_more: {
        auto space = ex.gate.free_space();
        auto [error, n] = co_await client.read_some(asio::buffer(space.data(), space.size()));
        if (error == asio::error::eof) {
          co_await upstream.shutdown_send();
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

template <class ClientIo, class UpstreamIo>
asio::awaitable<void> Session::http_server_side(HttpExchange& ex, ClientIo& client,
                                                UpstreamIo& upstream) {
  auto down = [this](size_t n) {
    bytes_down_ += n;
    ctx_.metrics.bytes_down(static_cast<double>(n));
  };
  std::vector<uint8_t> buffer(16384);
  for (;;) {
    // Refused later request: once every request before it is answered, the 403 can follow.
    if (ex.denied && ex.gate.all_answered()) break;
    auto [error, n] = co_await upstream.read_some(asio::buffer(buffer));
    if (error) {
      if (error == asio::error::eof) {
        if (!ex.denied) co_await client.shutdown_send();  // half-close
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
    auto [write_error, written] = co_await client.write(asio::buffer(buffer.data(), n));
    if (write_error) {
      if (!aborted_) reset_both(client_, upstream_);
      break;
    }
    down(written);
    if (ex.gate.switched()) {
      co_await opaque_one_way(upstream, client, ctx_.pipes, down);
      co_return;
    }
  }
  ex.upstream_ended = true;
  ex.wake.cancel();
}

}  // namespace egressd::session_detail
