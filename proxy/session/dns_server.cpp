#include "session/dns_server.hpp"

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/read.hpp>
#include <asio/steady_timer.hpp>
#include <asio/write.hpp>
#include <chrono>
#include <cstring>
#include <unordered_map>

#include "dns/filter.hpp"
#include "net/listener.hpp"
#include "net/socket_options.hpp"
#include "util/asio_tokens.hpp"

namespace egressd {
namespace {

using Clock = std::chrono::steady_clock;

// sockaddr of an address and port; returns its length.
socklen_t to_sockaddr(const IpAddress& address, uint16_t port, sockaddr_storage& out) {
  std::memset(&out, 0, sizeof(out));
  if (address.family == Family::v4) {
    auto* in = reinterpret_cast<sockaddr_in*>(&out);
    in->sin_family = AF_INET;
    in->sin_port = htons(port);
    in->sin_addr.s_addr = htonl(static_cast<uint32_t>(address.bits));
    return sizeof(sockaddr_in);
  }
  auto* in6 = reinterpret_cast<sockaddr_in6*>(&out);
  in6->sin6_family = AF_INET6;
  in6->sin6_port = htons(port);
  for (int i = 0; i < 16; ++i)
    in6->sin6_addr.s6_addr[i] = static_cast<uint8_t>(address.bits >> (8 * (15 - i)));
  return sizeof(sockaddr_in6);
}

uint16_t port_of(const sockaddr_storage& address) {
  return address.ss_family == AF_INET
             ? ntohs(reinterpret_cast<const sockaddr_in*>(&address)->sin_port)
             : ntohs(reinterpret_cast<const sockaddr_in6*>(&address)->sin6_port);
}

// A UDP socket that may send from (and bind to) an address that is not the host's.
int transparent_udp_socket(Family family) {
  int fd = ::socket(family == Family::v4 ? AF_INET : AF_INET6,
                    SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  int one = 1;
  bool ok = ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) == 0;
  if (family == Family::v4) {
    ok = ok && ::setsockopt(fd, SOL_IP, IP_TRANSPARENT, &one, sizeof(one)) == 0;
  } else {
    ok = ok && ::setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one)) == 0 &&
         ::setsockopt(fd, SOL_IPV6, IPV6_TRANSPARENT, &one, sizeof(one)) == 0;
  }
  if (!ok) {
    ::close(fd);
    return -1;
  }
  return fd;
}

}  // namespace

asio::awaitable<std::optional<std::vector<uint8_t>>> answer_dns_query(
    SessionContext& context, const IpAddress& source, uint16_t source_port,
    const IpAddress& resolver, uint16_t resolver_port, std::vector<uint8_t> query, bool over_tcp) {
  auto started = Clock::now();
  std::shared_ptr<const Settings> settings = context.settings.share();
  std::shared_ptr<const Sandbox> sandbox = context.policies.get()->share_by_source(source);
  const CompiledPolicy* policy = sandbox ? sandbox->policy.get() : nullptr;
  DnsFilterOptions options{static_cast<uint8_t>(settings->dns_answer_nxdomain ? LDNS_RCODE_NXDOMAIN
                                                                              : LDNS_RCODE_REFUSED),
                           settings->dns_strip_ech};
  ParsedQuery parsed = parse_query(query);
  AccessRecord record;
  record.sandbox = sandbox ? sandbox->id : std::string();
  record.src = endpoint_text(source, source_port);
  record.dst = resolver.to_string();
  record.port = resolver_port;
  record.proto = "dns";
  record.name = parsed.query.name;
  record.qtype = parsed.shape == QueryShape::ok ? qtype_name(parsed.query.qtype) : "-";
  record.bytes_up = query.size();
  auto finish = [&](std::optional<std::vector<uint8_t>> answer) {
    record.bytes_down = answer ? answer->size() : 0;
    double seconds = std::chrono::duration<double>(Clock::now() - started).count();
    record.duration_ms = seconds * 1000;
    if (record.reason != Reason::audit_allow) record.would_deny.reset();
    context.outcomes.dns_finished(record, resolver, seconds);
    return answer;
  };

  QueryPlan plan = plan_query(parsed, policy, settings->unknown_source, options);
  record.rule = plan.rule;
  if (plan.action == QueryPlan::Action::ignore) {
    record.reason = Reason::malformed_query;
    record.verdict = Verdict::deny;
    co_return finish(std::nullopt);
  }
  // Budgets, per sandbox: every query costs a token; a name that will be answered from
  // upstream counts against its registrable domain's new names this minute.
  if (sandbox && parsed.shape == QueryShape::ok) {
    DnsBudgetLimits limits{settings->dns_queries_per_second, settings->dns_burst,
                           settings->dns_new_names_per_minute};
    bool within = context.budget.take_query(sandbox->id, limits);
    if (within && plan.action == QueryPlan::Action::ask)
      within = context.budget.admit_name(sandbox->id, parsed.query.name, limits);
    if (!within) {
      if (policy->mode() == Mode::audit) {
        if (!plan.would_deny) plan.would_deny = Reason::budget_exceeded;
        plan.reason = Reason::audit_allow;
      } else {
        record.reason = Reason::budget_exceeded;
        record.verdict = Verdict::deny;
        record.rule.clear();
        co_return finish(build_error(parsed.query, LDNS_RCODE_REFUSED));
      }
    }
  }
  if (plan.action == QueryPlan::Action::reply) {
    record.reason = plan.reason;
    record.verdict = plan.verdict;
    co_return finish(std::move(plan.reply));
  }
  std::string key = parsed.query.name + "/" + std::to_string(parsed.query.qtype);
  if (parsed.query.qclass != LDNS_RR_CLASS_IN)
    key += "/class" + std::to_string(parsed.query.qclass);
  if (parsed.query.dnssec_ok) key += "/do";
  const DnsQuery& asked = parsed.query;
  DnsAnswer upstream = co_await context.dns.exchange(
      std::move(key), [&asked] { return build_upstream_query(asked); });
  uint32_t age = 0;
  if (upstream.message) {
    age = static_cast<uint32_t>(
        std::chrono::duration_cast<std::chrono::seconds>(Clock::now() - upstream.received).count());
  }
  FilteredAnswer filtered = filter_answer(parsed.query, plan, upstream.message.get(), policy,
                                          settings->guard, options, age);
  if (sandbox && filtered.verdict == Verdict::allow && !filtered.addresses.empty()) {
    context.answers.remember(sandbox->id, parsed.query.name, filtered.addresses,
                             std::min(filtered.address_ttl, settings->dns_max_ttl_s));
  }
  size_t limit = over_tcp            ? 65535
                 : parsed.query.edns ? std::min<size_t>(parsed.query.udp_size, kMaxUdpAnswerBytes)
                                     : kClassicUdpBytes;
  record.reason = filtered.reason;
  record.verdict = filtered.verdict;
  record.would_deny = filtered.would_deny;
  record.ech = filtered.ech_stripped;
  record.answers = filtered.given;
  co_return finish(answer_wire(parsed.query, filtered, limit));
}

struct DnsServer::Udp {
  explicit Udp(asio::io_context& io) : socket(io) {}
  ~Udp() {
    for (auto& [key, fd] : reply_fds) ::close(fd);
  }
  asio::ip::udp::socket socket;
  IpAddress bound;
  uint16_t port = 0;
  // Sockets bound to the resolver addresses sandboxes asked (IP_TRANSPARENT), so an answer
  // comes from the address and port the query went to.
  std::unordered_map<std::string, int> reply_fds;
};

DnsServer::~DnsServer() = default;

std::error_code DnsServer::listen(const std::string& host, uint16_t port, std::string& step,
                                  std::pair<int, int> inherited) {
  auto address = IpAddress::parse(host);
  if (!address) {
    step = "address";
    return std::make_error_code(std::errc::invalid_argument);
  }
  auto udp = std::make_shared<Udp>(io_);
  udp->bound = *address;
  udp->port = port;
  std::string text = address->family == Family::v6 ? "[" + host + "]:" + std::to_string(port)
                                                   : host + ":" + std::to_string(port);
  if (inherited.first >= 0 && inherited.second >= 0) {
    asio::error_code error;
    udp->socket.assign(address->family == Family::v4 ? asio::ip::udp::v4() : asio::ip::udp::v6(),
                       inherited.first, error);
    asio::ip::tcp::acceptor acceptor(io_);
    if (!error)
      acceptor.assign(address->family == Family::v4 ? asio::ip::tcp::v4() : asio::ip::tcp::v6(),
                      inherited.second, error);
    if (error) {
      step = "adopting the inherited sockets";
      return error;
    }
    udp_.push_back(std::move(udp));
    tcp_.push_back(std::move(acceptor));
    addresses_.push_back(text);
    return {};
  }
  int fd = transparent_udp_socket(address->family);
  auto fail = [&](const char* what) {
    std::error_code error(errno, std::generic_category());
    step = what;
    if (fd >= 0) ::close(fd);
    return error;
  };
  if (fd < 0) return fail("UDP socket with IP_TRANSPARENT (needs CAP_NET_ADMIN)");
  int one = 1;
  if (address->family == Family::v4) {
    if (::setsockopt(fd, SOL_IP, IP_RECVORIGDSTADDR, &one, sizeof(one)) != 0)
      return fail("IP_RECVORIGDSTADDR");
  } else if (::setsockopt(fd, SOL_IPV6, IPV6_RECVORIGDSTADDR, &one, sizeof(one)) != 0) {
    return fail("IPV6_RECVORIGDSTADDR");
  }
  sockaddr_storage local{};
  socklen_t length = to_sockaddr(*address, port, local);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&local), length) != 0) return fail("UDP bind");
  asio::error_code error;
  udp->socket.assign(address->family == Family::v4 ? asio::ip::udp::v4() : asio::ip::udp::v6(), fd,
                     error);
  if (error) {
    step = "UDP assign";
    ::close(fd);
    return error;
  }
  udp_.push_back(std::move(udp));
  std::error_code tcp_error;
  auto acceptor = open_tproxy_listener(io_, host, port, tcp_error, step);
  if (tcp_error) {
    step = "TCP " + step;
    return tcp_error;
  }
  tcp_.push_back(std::move(acceptor));
  addresses_.push_back(text);
  return {};
}

std::vector<DnsServer::Listening> DnsServer::listening() {
  std::vector<Listening> out;
  for (size_t i = 0; i < udp_.size() && i < tcp_.size() && i < addresses_.size(); ++i)
    out.push_back(
        Listening{addresses_[i], udp_[i]->socket.native_handle(), tcp_[i].native_handle()});
  return out;
}

void DnsServer::start() {
  for (auto& udp : udp_) asio::co_spawn(io_, serve_udp(udp), asio::detached);
  for (auto& acceptor : tcp_) asio::co_spawn(io_, serve_tcp(acceptor), asio::detached);
}

void DnsServer::stop() {
  asio::error_code ignored;
  for (auto& udp : udp_) udp->socket.close(ignored);
  for (auto& acceptor : tcp_) acceptor.close(ignored);
}

asio::awaitable<void> DnsServer::serve_udp(std::shared_ptr<Udp> udp) {
  std::vector<uint8_t> buffer(kMaxQueryBytes + 1);
  for (;;) {
    auto [error] = co_await udp->socket.async_wait(asio::ip::udp::socket::wait_read, use_nothrow);
    if (error || !udp->socket.is_open()) co_return;
    for (int burst = 0; burst < 64; ++burst) {
      sockaddr_storage peer{};
      alignas(cmsghdr) char control[256];
      iovec io{buffer.data(), buffer.size()};
      msghdr message{};
      message.msg_name = &peer;
      message.msg_namelen = sizeof(peer);
      message.msg_iov = &io;
      message.msg_iovlen = 1;
      message.msg_control = control;
      message.msg_controllen = sizeof(control);
      ssize_t got = ::recvmsg(udp->socket.native_handle(), &message, MSG_DONTWAIT);
      if (got < 0) break;  // EAGAIN: wait again; anything else too
      auto source = IpAddress::from_sockaddr(reinterpret_cast<sockaddr*>(&peer));
      if (!source) continue;
      IpAddress resolver = udp->bound;
      uint16_t resolver_port = udp->port;
      for (cmsghdr* c = CMSG_FIRSTHDR(&message); c; c = CMSG_NXTHDR(&message, c)) {
        bool v4 = c->cmsg_level == SOL_IP && c->cmsg_type == IP_ORIGDSTADDR;
        bool v6 = c->cmsg_level == SOL_IPV6 && c->cmsg_type == IPV6_ORIGDSTADDR;
        if (!v4 && !v6) continue;
        sockaddr_storage original{};
        std::memcpy(&original, CMSG_DATA(c),
                    std::min<size_t>(c->cmsg_len - CMSG_LEN(0), sizeof(original)));
        if (auto address = IpAddress::from_sockaddr(reinterpret_cast<sockaddr*>(&original))) {
          resolver = *address;
          resolver_port = port_of(original);
        }
      }
      if (in_flight_ >= kMaxInFlight) continue;  // overloaded: the client will retry
      size_t size = static_cast<size_t>(got);
      if (message.msg_flags & MSG_TRUNC) size = buffer.size();  // over kMaxQueryBytes: FORMERR
      ++in_flight_;
      asio::co_spawn(io_,
                     answer_udp(udp, std::vector<uint8_t>(buffer.begin(), buffer.begin() + size),
                                *source, port_of(peer), resolver, resolver_port),
                     asio::detached);
    }
  }
}

asio::awaitable<void> DnsServer::answer_udp(std::shared_ptr<Udp> udp, std::vector<uint8_t> query,
                                            IpAddress source, uint16_t source_port,
                                            IpAddress resolver, uint16_t resolver_port) {
  auto answer = co_await answer_dns_query(context_, source, source_port, resolver, resolver_port,
                                          std::move(query), false);
  --in_flight_;
  if (answer && udp->socket.is_open())
    send_reply(*udp, *answer, source, source_port, resolver, resolver_port);
}

void DnsServer::send_reply(Udp& udp, std::span<const uint8_t> answer, const IpAddress& source,
                           uint16_t source_port, const IpAddress& resolver,
                           uint16_t resolver_port) {
  sockaddr_storage to{};
  socklen_t to_length = to_sockaddr(source, source_port, to);
  int fd = udp.socket.native_handle();
  if (resolver != udp.bound || resolver_port != udp.port) {
    std::string key = endpoint_text(resolver, resolver_port);
    auto found = udp.reply_fds.find(key);
    if (found == udp.reply_fds.end()) {
      if (udp.reply_fds.size() >= 256) {
        for (auto& [k, reply_fd] : udp.reply_fds) ::close(reply_fd);
        udp.reply_fds.clear();
      }
      int reply_fd = transparent_udp_socket(resolver.family);
      sockaddr_storage from{};
      socklen_t from_length = to_sockaddr(resolver, resolver_port, from);
      if (reply_fd >= 0 && ::bind(reply_fd, reinterpret_cast<sockaddr*>(&from), from_length) != 0) {
        ::close(reply_fd);
        reply_fd = -1;
      }
      if (reply_fd < 0) return;  // cannot answer from there; the client times out
      found = udp.reply_fds.emplace(key, reply_fd).first;
    }
    fd = found->second;
  }
  ::sendto(fd, answer.data(), answer.size(), MSG_DONTWAIT, reinterpret_cast<sockaddr*>(&to),
           to_length);
}

asio::awaitable<void> DnsServer::serve_tcp(asio::ip::tcp::acceptor& acceptor) {
  for (;;) {
    asio::ip::tcp::socket socket(io_);
    auto [error] = co_await acceptor.async_accept(socket, use_nothrow);
    if (error == asio::error::operation_aborted || !acceptor.is_open()) co_return;
    if (error) {
      context_.metrics.accept_error(error.value());
      asio::steady_timer pause(io_, std::chrono::milliseconds(50));
      co_await pause.async_wait(use_nothrow);
      continue;
    }
    if (tcp_clients_ >= kMaxTcpClients) continue;  // closed as it goes out of scope
    ++tcp_clients_;
    asio::co_spawn(io_, serve_tcp_client(std::move(socket)), asio::detached);
  }
}

asio::awaitable<void> DnsServer::serve_tcp_client(asio::ip::tcp::socket socket) {
  struct Count {
    size_t& n;
    ~Count() { --n; }
  } count{tcp_clients_};
  asio::error_code error;
  auto remote = socket.remote_endpoint(error);
  auto local = socket.local_endpoint(error);  // the resolver the sandbox named (TPROXY)
  if (error) co_return;
  IpAddress source = to_ip(remote.address()), resolver = to_ip(local.address());
  asio::steady_timer idle(io_);
  bool timed_out = false;
  auto arm = [&] {
    idle.expires_after(std::chrono::seconds(10));
    idle.async_wait([&](const asio::error_code& e) {
      if (e) return;
      timed_out = true;
      asio::error_code ignored;
      socket.cancel(ignored);
    });
  };
  std::vector<uint8_t> message;
  for (int queries = 0; queries < 1000 && !timed_out; ++queries) {
    arm();
    uint8_t prefix[2];
    auto [read_error, n] = co_await asio::async_read(socket, asio::buffer(prefix), use_nothrow);
    if (read_error) break;
    size_t length = static_cast<size_t>(prefix[0] << 8 | prefix[1]);
    if (length == 0 || length > kMaxQueryBytes) break;  // not a query egressd reads: close
    message.resize(length);
    auto [body_error, m] = co_await asio::async_read(socket, asio::buffer(message), use_nothrow);
    if (body_error) break;
    idle.cancel();
    auto answer = co_await answer_dns_query(context_, source, remote.port(), resolver, local.port(),
                                            message, true);
    if (!answer || answer->size() > 65535) break;
    std::vector<uint8_t> framed;
    framed.reserve(answer->size() + 2);
    framed.push_back(static_cast<uint8_t>(answer->size() >> 8));
    framed.push_back(static_cast<uint8_t>(answer->size()));
    framed.insert(framed.end(), answer->begin(), answer->end());
    arm();
    auto [write_error, w] = co_await asio::async_write(socket, asio::buffer(framed), use_nothrow);
    idle.cancel();
    if (write_error) break;
  }
  idle.cancel();
  socket.close(error);
}

}  // namespace egressd
