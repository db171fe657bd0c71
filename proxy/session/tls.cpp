// TLS ports: peek the ClientHello, decide on its SNI, replay it upstream, relay; or, for a
// name with a transform, terminate TLS on both sides and edit its requests.
#include <asio/experimental/as_tuple.hpp>
#include <asio/experimental/awaitable_operators.hpp>
#include <asio/use_awaitable.hpp>
#include <asio/write.hpp>

#include <iostream>
#include <mutex>
#include <set>

#include "core/log.hpp"
#include "net/socket_options.hpp"
#include "session/http_relay.hpp"

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
  if (sandbox_ && !sandbox_->policy->transforms_for(name_).empty()) {
    // Intercepted: the hello is for egressd's own handshake, never the origin's.
    intercepted_ = true;
    hello_.assign(buffer.get(), buffer.get() + length);
    leave_peek();
    co_return co_await connect_upstream();
  }
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
  if (intercepted_) {
    co_await run_intercepted_tls();
  } else {
    start_relay();
  }
}

namespace {

// One line per problem and name, so a broken origin or a sandbox image without the CA is said
// once, not per connection.
void log_once(const std::string& key, const std::string& message) {
  static std::mutex mutex;
  static std::set<std::string> said;
  std::lock_guard lock(mutex);
  if (said.size() < 4096 && said.insert(key).second)
    std::cerr << "egressd: " << message << std::endl;
}

}  // namespace

// The origin is verified before the sandbox's handshake is answered: an origin egressd cannot
// verify (intercept.upstream_ca, the SNI's name) is refused with an alert, upstream_untrusted,
// and nothing of the sandbox's is sent to it. Then the sandbox gets a certificate for the name
// from the deployment's CA, and every request of the connection goes through the HTTP gate.
asio::awaitable<void> Session::run_intercepted_tls() {
  using namespace asio::experimental::awaitable_operators;
  TlsChannel origin(upstream_, ctx_.intercept.upstream->native_handle(), false);
  SSL_set_tlsext_host_name(origin.ssl(), name_.c_str());
  SSL_set1_host(origin.ssl(), name_.c_str());
  // Sessions are per name and address: a ticket one origin issued is never offered to another.
  ctx_.intercept.upstream->prepare(origin.ssl(),
                                   name_ + "|" + dial_.value_or(destination_).to_string());
  std::string problem;
  bool timed_out = false;
  {
    Deadline deadline(upstream_, settings_->connect_ms);
    problem = co_await origin.handshake();
    timed_out = deadline.fired();
  }
  if (aborted_) co_return reset_both(client_, upstream_);
  if (!problem.empty()) {
    // A certificate or TLS failure is the origin's: untrusted. A silent or vanished origin is
    // a failed connect.
    bool transport = timed_out || problem.starts_with("send:") || problem.starts_with("receive:");
    Reason reason = transport ? Reason::connect_failed : Reason::upstream_untrusted;
    if (!transport)
      log_once("origin " + name_ + problem, "intercepted origin " + name_ + " (" +
                                                dial_.value_or(destination_).to_string() +
                                                ") refused: " + problem);
    decision_ = Decision{Verdict::deny, reason, {}, std::nullopt};
    rule_.clear();
    asio::error_code ignored;
    upstream_.close(ignored);
    co_return co_await deny(reason);
  }
  auto server = ctx_.intercept.ca->server_context(name_);
  if (!server) {
    log_once("issue " + name_, "cannot issue a certificate for " + name_);
    co_return reset_both(client_, upstream_);
  }
  TlsChannel sandbox(client_, server->native_handle(), true);
  sandbox.feed(hello_);
  hello_.clear();
  hello_.shrink_to_fit();
  {
    Deadline deadline(client_, settings_->peek_ms);
    problem = co_await sandbox.handshake();
  }
  if (!problem.empty()) {
    if (sandbox_)
      log_once("sandbox " + sandbox_->id + problem,
               "sandbox " + sandbox_->id + " ended the intercepted handshake for " + name_ + ": " +
                   problem + " (does its trust store have GET /v1/ca.pem?)");
    co_return reset_both(client_, upstream_);
  }
  phase_.enter(Phase::relay);
  HttpExchange ex(client_.get_executor(), settings_->max_peek_bytes);
  ex.intercept = true;
  ex.connection_name = name_;
  TlsIo client{sandbox}, upstream{origin};
  co_await (http_client_side(ex, client, upstream) && http_server_side(ex, client, upstream));
  if (ex.denied && client_.is_open()) {
    std::string answer = http_forbidden(decision_.reason, name_);
    co_await client.write(asio::buffer(answer));
    co_await client.shutdown_send();
  }
  asio::error_code ignored;
  upstream_.close(ignored);
  client_.close(ignored);
}

}  // namespace egressd::session_detail
