#include "session/session.hpp"

#include <sys/socket.h>

#include <cerrno>
#include <cstring>
#include <iostream>
#include <mutex>
#include <set>

#include <asio/co_spawn.hpp>
#include <asio/experimental/as_tuple.hpp>
#include <asio/use_awaitable.hpp>
#include <asio/write.hpp>

#include "core/log.hpp"
#include "net/socket_options.hpp"
#include "session/connection.hpp"
#include "util/asio_tokens.hpp"

// The connection core every protocol shares: identify the sandbox, admit, decide, verify the
// destination, connect, relay, and finish with exactly one reason.
namespace egressd {
namespace session_detail {

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
  if (!peek_observed_ && proto_ != Proto::tcp) {
    peek_observed_ = true;
    ctx_.metrics.peek_seconds(
        std::chrono::duration<double>(std::chrono::steady_clock::now() - started_).count());
  }
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
  record.via = via_;
  record.intercepted = intercepted_;
  record.id = live_ ? live_->serial : 0;
  record.start = started_wall_;
  record.connect_ms = connect_ms_;
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
  IpAddress target = dial_.value_or(destination_);
  if (mode != DnsVerify::off && sandbox_ && ctx_.answers.gave(sandbox_->id, name_, target)) {
    // The DNS filter gave this sandbox that address for that name, within its TTL: no
    // lookup, and no redirect when a CDN has rotated its answers since.
    answer = DnsAnswer{DnsStatus::ok, {target}, 0};
  } else if (mode != DnsVerify::off) {
    answer = co_await ctx_.dns.lookup(name_);
    if (aborted_) co_return aborted_;
  }
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

asio::awaitable<bool> Session::connect_upstream() {
  phase_.enter(Phase::connect);
  auto connect_started = std::chrono::steady_clock::now();
  // The connect's time goes to the histogram and the access log (connect_ms), failed or not.
  struct Timed {
    Session& session;
    std::chrono::steady_clock::time_point started;
    ~Timed() {
      std::chrono::duration<double> took = std::chrono::steady_clock::now() - started;
      session.ctx_.metrics.connect_seconds(took.count());
      session.connect_ms_ = took.count() * 1000;
    }
  } timed{*this, connect_started};
  tcp::endpoint target(to_asio(dial_.value_or(destination_)), port_);
  asio::error_code error;
  upstream_.open(target.protocol(), error);
  if (!error) upstream_.non_blocking(true, error);
  if (!error && sandbox_ && !sandbox_->policy->gateway().empty()) error = apply_gateway(target);
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
  if (!via_.empty()) ctx_.metrics.gateway_connection(via_);
  co_return true;
}

namespace {

// One line per gateway and problem, so a misconfigured gateway is said once, not per connection.
void log_gateway_problem(const std::string& gateway, const std::string& problem) {
  static std::mutex mutex;
  static std::set<std::string> said;
  std::lock_guard lock(mutex);
  if (said.size() < 1024 && said.insert(gateway + "\n" + problem).second)
    log_line("gateway " + gateway + " " + problem);
}

}  // namespace

asio::error_code Session::apply_gateway(const tcp::endpoint& target) {
  const std::string& name = sandbox_->policy->gateway();
  via_ = name;
  auto failed = [&](const std::string& problem, int code) {
    log_gateway_problem(name, problem);
    return asio::error_code(code, asio::system_category());
  };
  auto found = settings_->gateways.find(name);
  if (found == settings_->gateways.end())
    return failed("is not configured: connections through it fail (connect_failed)", EINVAL);
  const GatewayConfig& gateway = found->second;
  int fd = upstream_.native_handle();
  if (gateway.mark) {
    uint32_t mark = *gateway.mark;
    if (::setsockopt(fd, SOL_SOCKET, SO_MARK, &mark, sizeof(mark)) != 0)
      return failed(std::string("cannot set SO_MARK: ") + std::strerror(errno), errno);
  }
  bool v6 = target.address().is_v6();
  const std::optional<IpAddress>& source = v6 ? gateway.v6 : gateway.v4;
  if (!source) {
    if (gateway.v4 || gateway.v6) {  // never a silent fallback to the host's default address
      return failed(std::string("has no ") + (v6 ? "IPv6" : "IPv4") +
                        " source address: its sandboxes' connections to " + (v6 ? "IPv6" : "IPv4") +
                        " destinations fail (connect_failed)",
                    EADDRNOTAVAIL);
    }
    return {};  // a mark-only gateway
  }
  int one = 1;
  // IP_FREEBIND: the address may be configured after egressd starts; IP_BIND_ADDRESS_NO_PORT:
  // the port is chosen at connect, per destination, so binding costs no ephemeral ports.
  ::setsockopt(fd, SOL_IP, IP_FREEBIND, &one, sizeof(one));
  ::setsockopt(fd, SOL_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof(one));
  asio::error_code error;
  upstream_.bind(tcp::endpoint(to_asio(*source), 0), error);
  if (error)
    return failed("cannot bind " + source->to_string() + ": " + error.message(), error.value());
  return {};
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

}  // namespace session_detail

asio::awaitable<void> run_session(SessionContext& context, asio::ip::tcp::socket client,
                                  asio::ip::tcp::endpoint peer) {
  auto session = std::make_shared<session_detail::Session>(context, std::move(client));
  co_await session->run(peer);
}

}  // namespace egressd
