// TLS ports: peek the ClientHello, decide on its SNI, replay it upstream, relay.
#include <asio/experimental/as_tuple.hpp>
#include <asio/use_awaitable.hpp>
#include <asio/write.hpp>

#include "net/socket_options.hpp"
#include "session/connection.hpp"
#include "util/asio_tokens.hpp"

namespace egressd::session_detail {

asio::awaitable<bool> Session::peek_hello(ClientHelloParser& parser) {
  phase_.enter(Phase::peek);
  const size_t capacity = settings_->max_peek_bytes;
  auto buffer = std::make_unique_for_overwrite<uint8_t[]>(capacity);  // no zero-filling
  size_t length = 0;
  // A protocol refusal: enforced, or (audit) the bytes pass through untouched.
  auto refused = [&](Reason reason) -> asio::awaitable<bool> {
    if (enforced(reason)) {
      co_await deny(reason);
    } else {
      co_await pass_through_audited(std::span(buffer.get(), length));
    }
    co_return false;
  };
  // Usually the whole hello arrived before the accept completed: read it without a timer.
  asio::error_code first_error;
  length = client_.read_some(asio::buffer(buffer.get(), capacity), first_error);
  if (first_error && first_error != asio::error::would_block)
    co_return co_await refused(Reason::not_tls);
  if (length > 0) parser.feed(std::span(buffer.get(), length));
  if (parser.status() == ParseStatus::need_more) {
    Deadline deadline(client_, settings_->peek_ms);
    while (parser.status() == ParseStatus::need_more && length < capacity) {
      auto [error, n] = co_await client_.async_read_some(
          asio::buffer(buffer.get() + length, capacity - length), use_nothrow);
      if (error) {
        if (deadline.fired()) co_return co_await refused(Reason::peek_timeout);
        if (aborted_) co_return false;
        co_return co_await refused(length == 0 ? Reason::not_tls : Reason::malformed_tls);
      }
      parser.feed(std::span(buffer.get() + length, n));
      length += n;
    }
  }
  if (parser.status() == ParseStatus::refused) co_return co_await refused(parser.refusal());
  if (parser.status() != ParseStatus::done) co_return co_await refused(Reason::hello_too_large);
  name_ = parser.facts().name;
  ech_ = parser.facts().ech;
  Decision decision = decide_now(&name_);
  if (decision.verdict == Verdict::deny) co_return co_await deny(decision.reason), false;
  if (auto refusal = co_await verify_destination(true); refusal && enforced(*refusal))
    co_return co_await deny(*refusal), false;
  leave_peek();
  if (!co_await connect_upstream()) co_return false;
  auto [error, written] =
      co_await asio::async_write(upstream_, asio::buffer(buffer.get(), length), use_nothrow);
  if (error) {
    reset_both(client_, upstream_);
    co_return false;
  }
  bytes_up_ += written;
  ctx_.metrics.bytes_up(static_cast<double>(written));
  co_return true;  // the peek buffer is freed here, before the relay
}

asio::awaitable<void> Session::run_inspected() {
  ClientHelloParser parser(settings_->max_peek_bytes);
  if (!co_await peek_hello(parser)) co_return;
  start_relay();
}

}  // namespace egressd::session_detail
