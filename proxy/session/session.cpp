#include "session/session.hpp"

#include <sys/socket.h>

#include <cerrno>

#include <asio/co_spawn.hpp>
#include <asio/experimental/as_tuple.hpp>
#include <asio/experimental/awaitable_operators.hpp>
#include <asio/steady_timer.hpp>
#include <asio/use_awaitable.hpp>
#include <asio/write.hpp>

#include <chrono>
#include <cstring>
#include <span>
#include <vector>

#include "inspect/client_hello.hpp"
#include "inspect/http_gate.hpp"
#include "inspect/http_request.hpp"
#include "net/socket_options.hpp"
#include "session/refusal.hpp"
#include "util/asio_tokens.hpp"

namespace egressd {
namespace {

using asio::ip::tcp;
using namespace asio::experimental::awaitable_operators;

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
        started_(std::chrono::steady_clock::now()) {
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
  asio::awaitable<void> http_client_side(HttpExchange& exchange);
  asio::awaitable<void> http_server_side(HttpExchange& exchange);
  asio::awaitable<bool> connect_upstream();
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
  bool finished_ = false;
  std::optional<Reason> aborted_;
  std::optional<Deadline> upstream_finish_deadline_;
  std::optional<SpliceDirection> up_, down_;
  int directions_open_ = 0;
  bool relaying_ = false;
};

// An IP-literal Host is not a name: address rules judge the real destination, never the
// literal the client wrote.
Decision Session::decide_now(const std::string* name) {
  auto begin = std::chrono::steady_clock::now();
  // The latest policy of this sandbox: a keep-alive request is judged by today's rules.
  if (sandbox_) {
    if (auto latest = ctx_.policies.get()->share_by_id(sandbox_->id)) sandbox_ = latest;
  }
  DecisionInput input;
  input.name = name;
  input.destination = destination_;
  input.port = port_;
  Decision decision = decide(settings_->guard, sandbox_ ? sandbox_->policy.get() : nullptr,
                             settings_->unknown_source, input);
  ctx_.metrics.decision_seconds(
      std::chrono::duration<double>(std::chrono::steady_clock::now() - begin).count());
  decision_ = decision;
  rule_ = std::string(decision.rule);
  if (decision.would_deny && !would_deny_) would_deny_ = decision.would_deny;
  if (live_ && decision.verdict == Verdict::allow) live_->set_decided(name_);
  return decision;
}

// A refusal the policy calls for. In audit mode it is only noted (would_deny) and the
// connection goes on; the guard, unknown sources and the resource limits hold in every mode.
bool Session::enforced(Reason reason) {
  bool auditing = sandbox_ && sandbox_->policy->mode() == Mode::audit;
  if (!auditing || reason == Reason::guarded_destination || reason == Reason::unknown_source ||
      reason == Reason::connection_limit || reason == Reason::revoked)
    return true;
  if (!would_deny_) would_deny_ = reason;
  decision_ = Decision{Verdict::allow, Reason::audit_allow, {}, reason};
  return false;
}

void Session::leave_peek() {
  if (live_) ctx_.registry.peek_done(*live_);
}

void Session::finish(Reason reason) {
  if (finished_) return;
  finished_ = true;
  if (live_) ctx_.registry.remove(*live_);
  // Whatever decided last, a connection that audit mode let past a refusal is audit_allow.
  if (would_deny_ && verdict_of(reason) == Verdict::allow) reason = Reason::audit_allow;
  AccessRecord record;
  record.sandbox = sandbox_ ? sandbox_->id : std::string();
  record.src = endpoint_text(source_, source_port_);
  record.dst = destination_.to_string();
  record.port = port_;
  record.proto = to_string(proto_);
  record.name = name_;
  record.verdict = verdict_of(reason);
  record.reason = reason;
  record.rule = rule_;
  record.bytes_up = bytes_up_;
  record.bytes_down = bytes_down_;
  record.duration_ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - started_)
          .count();
  record.ech = ech_;
  if (reason == Reason::audit_allow) record.would_deny = would_deny_;
  if (dial_ && *dial_ != destination_) record.dialed = dial_->to_string();
  ctx_.outcomes.finished(record, destination_);
}

void Session::abort(Reason reason) {
  aborted_ = reason;
  reset_both(client_, upstream_);
}

asio::awaitable<void> Session::deny(Reason reason) {
  leave_peek();
  // A named local: GCC 12 mishandles temporaries of conditional expressions in co_await.
  std::string host = name_;
  if (host.empty()) host = destination_.to_string();
  co_await refuse(client_, proto_, reason, std::move(host));
  finish(reason);
}

// Every connection is registered, an unknown source's under the empty id: all of them hold
// descriptors, so all of them count against limits.max_connections.
bool Session::admit() {
  live_ = std::make_shared<LiveConnection>();
  live_->serial = ctx_.next_serial.fetch_add(1, std::memory_order_relaxed);
  live_->sandbox = sandbox_ ? sandbox_->id : std::string();
  live_->source = source_;
  live_->source_port = source_port_;
  live_->destination = destination_;
  live_->port = port_;
  live_->proto = to_string(proto_);
  live_->started = std::chrono::system_clock::now();
  live_->executor = client_.get_executor();
  std::weak_ptr<Session> weak = weak_from_this();
  live_->abort = [weak](Reason reason) {
    if (auto self = weak.lock()) self->abort(reason);
  };
  ConnectionLimits limits{settings_->max_connections_per_sandbox, settings_->max_connections,
                          settings_->max_peeking_per_sandbox};
  if (ctx_.registry.admit(live_, limits, proto_ != Proto::tcp)) return true;
  live_.reset();
  return false;
}

asio::awaitable<void> Session::run(const tcp::endpoint& remote) {
  asio::error_code error;
  auto local = client_.local_endpoint(error);  // the original destination (TPROXY)
  if (error) co_return;  // reset before we looked: nothing to decide, nothing to count
  destination_ = to_ip(local.address());
  port_ = local.port();
  source_ = to_ip(remote.address());
  source_port_ = remote.port();
  proto_ = settings_->tls_ports.test(port_)    ? Proto::tls
           : settings_->http_ports.test(port_) ? Proto::http
                                               : Proto::tcp;
  sandbox_ = ctx_.policies.get()->share_by_source(source_);
  if (!sandbox_ && settings_->unknown_source == Verdict::deny) {
    co_await deny(Reason::unknown_source);
    co_return;
  }
  if (!admit()) {
    co_await deny(Reason::connection_limit);
    co_return;
  }
  client_.non_blocking(true, error);  // O_NONBLOCK for splice, would_block for reads
  // TCP_NODELAY comes from the listener (accepted sockets inherit it).
  if (proto_ == Proto::tcp) {
    co_await run_fast_path();
  } else if (proto_ == Proto::tls) {
    co_await run_inspected();
  } else {
    co_await run_http();
  }
  if (!relaying_) finish(aborted_.value_or(decision_.reason));
}

// After a domain rule allowed: resolve the name and pick where to dial (dns.verify), never a
// guarded address nor one an address deny rule of the sandbox names. Returns the refusal
// reason, or nothing when the connection may proceed. `may_redirect` is false once an upstream
// is connected (a later HTTP request): then only the connected address will do.
asio::awaitable<std::optional<Reason>> Session::verify_destination(bool may_redirect) {
  if (decision_.reason != Reason::allowed_domain) co_return std::nullopt;
  DnsVerify mode = settings_->dns_verify;
  if (mode != DnsVerify::off && !may_redirect) mode = DnsVerify::strict;
  DnsAnswer answer;
  if (mode != DnsVerify::off) {
    answer = co_await ctx_.dns.lookup(name_);
    if (aborted_) co_return aborted_;
  }
  IpAddress target = dial_.value_or(destination_);
  Verification verdict = choose_destination(mode, answer, target, settings_->guard,
                                            sandbox_ ? sandbox_->policy.get() : nullptr, port_);
  if (!verdict.dial) {
    if (mode != DnsVerify::off) ctx_.metrics.dns_verification("refused");
    decision_ = Decision{Verdict::deny, verdict.refusal, verdict.rule, std::nullopt};
    rule_ = std::string(verdict.rule);
    co_return verdict.refusal;
  }
  if (mode != DnsVerify::off) {
    ctx_.metrics.dns_verification(*verdict.dial == destination_ ? "original" : "redirected");
  }
  dial_ = *verdict.dial;
  if (live_) live_->set_dialed(*dial_);
  co_return std::nullopt;
}

// Audit mode, after a protocol refusal (not TLS, not HTTP, no name, timeout): the bytes go to
// the original destination as they are, if the guard and the address rules let them.
asio::awaitable<void> Session::pass_through_audited(std::span<const uint8_t> pending) {
  Decision decision = decide_now(nullptr);
  if (decision.verdict == Verdict::deny) co_return co_await deny(decision.reason);
  leave_peek();
  dial_.reset();
  if (!co_await connect_upstream()) co_return;
  if (!pending.empty()) {
    auto [error, written] = co_await asio::async_write(
        upstream_, asio::buffer(pending.data(), pending.size()), use_nothrow);
    if (error) {
      reset_both(client_, upstream_);
      co_return;
    }
    bytes_up_ += written;
    ctx_.metrics.bytes_up(static_cast<double>(written));
  }
  start_relay();
}

asio::awaitable<void> Session::run_fast_path() {
  Decision decision = decide_now(nullptr);
  if (decision.verdict == Verdict::deny) co_return co_await deny(decision.reason);
  if (!co_await connect_upstream()) co_return;
  start_relay();
}

asio::awaitable<bool> Session::connect_upstream() {
  phase_.enter(Phase::connect);
  tcp::endpoint target(to_asio(dial_.value_or(destination_)), port_);
  asio::error_code error;
  upstream_.open(target.protocol(), error);
  if (!error) upstream_.non_blocking(true, error);
  if (!error) {
    // connect(2) by hand: Asio's async_connect polls the descriptor once more before reading
    // SO_ERROR; here readiness for writing is enough.
    set_nodelay(upstream_);
    Deadline deadline(upstream_, settings_->connect_ms);
    if (::connect(upstream_.native_handle(), target.data(), target.size()) != 0) {
      if (errno != EINPROGRESS) {
        error = asio::error_code(errno, asio::system_category());
      } else {
        std::tie(error) = co_await upstream_.async_wait(tcp::socket::wait_write, use_nothrow);
        int failure = 0;
        socklen_t size = sizeof(failure);
        if (!error &&
            ::getsockopt(upstream_.native_handle(), SOL_SOCKET, SO_ERROR, &failure, &size) == 0 &&
            failure != 0)
          error = asio::error_code(failure, asio::system_category());
      }
    }
  }
  if (error) {
    reset_and_close(client_);
    asio::error_code ignored;
    upstream_.close(ignored);
    finish(aborted_.value_or(Reason::connect_failed));
    co_return false;
  }
  co_return true;
}

// TLS and fast-path connections are relayed by two callback-driven splice directions: the
// coroutines that decided the connection end here, and the session lives on in the handlers.
void Session::start_relay() {
  phase_.enter(Phase::relay);
  relaying_ = true;
  Metrics& metrics = ctx_.metrics;
  up_.emplace(client_, upstream_, ctx_.pipes, [this, &metrics](size_t n) {
    bytes_up_ += n;
    metrics.bytes_up(static_cast<double>(n));
  });
  down_.emplace(upstream_, client_, ctx_.pipes, [this, &metrics](size_t n) {
    bytes_down_ += n;
    metrics.bytes_down(static_cast<double>(n));
  });
  up_->pair_with(*down_);  // direction_done() closes both sockets once both have ended
  directions_open_ = 2;
  auto self = shared_from_this();
  // Usually neither side has more yet (the client waits for the server's answer): wait before
  // reading. Waiting re-arms the descriptor, so bytes already there are reported at once.
  up_->start(
      self, [this](DirectionEnd) { direction_done(); }, true);
  down_->start(
      self, [this](DirectionEnd) { direction_done(); }, true);
}

void Session::direction_done() {
  if (--directions_open_ > 0) return;
  asio::error_code ignored;
  client_.close(ignored);
  upstream_.close(ignored);
  finish(aborted_.value_or(decision_.reason));
}

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

}  // namespace

asio::awaitable<void> run_session(SessionContext& context, tcp::socket client, tcp::endpoint peer) {
  auto session = std::make_shared<Session>(context, std::move(client));
  co_await session->run(peer);
}

}  // namespace egressd
