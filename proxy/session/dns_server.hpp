#pragma once
// The DNS filter's listeners (DESIGN.md "DNS for sandboxes"): UDP and TCP sockets with
// IP_TRANSPARENT that the firewall redirects every sandbox packet to port 53 to, whatever
// resolver it names. Each query is identified by its source like a connection, planned and
// filtered by dns/filter, sent upstream through the worker's c-ares channel and the shared
// cache, and answered from the address the sandbox asked.
#include <utility>
#include <vector>

#include <asio/awaitable.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/ip/udp.hpp>

#include <memory>
#include <optional>
#include <span>
#include <string>
#include <system_error>
#include <vector>

#include "session/context.hpp"

namespace egressd {

// Answers one query from `source`, sent to `resolver` (the address it named). Nothing when
// the message is not answered at all (a response, or shorter than a DNS header).
asio::awaitable<std::optional<std::vector<uint8_t>>> answer_dns_query(
    SessionContext& context, const IpAddress& source, uint16_t source_port,
    const IpAddress& resolver, uint16_t resolver_port, std::vector<uint8_t> query, bool over_tcp);

class DnsServer {
 public:
  // At most this many queries are being answered at once per server (UDP), and this many TCP
  // clients served; more are dropped (UDP) or closed (TCP) at once.
  static constexpr size_t kMaxInFlight = 4096;
  static constexpr size_t kMaxTcpClients = 512;

  DnsServer(asio::io_context& io, SessionContext& context) : io_(io), context_(context) {}
  ~DnsServer();
  // Opens the UDP socket and the TCP listener of one dns_filter.listen address.
  // With `inherited` (a takeover: the UDP socket and the TCP listener the running egressd
  // served this address with), those are served instead of new ones.
  std::error_code listen(const std::string& host, uint16_t port, std::string& step,
                         std::pair<int, int> inherited = {-1, -1});
  // What a takeover hands over: per listen address, its UDP socket and TCP listener.
  struct Listening {
    std::string address;  // as dns_filter.listen says it
    int udp_fd, tcp_fd;
  };
  std::vector<Listening> listening();
  void start();
  void stop();  // closes the listeners (on the worker's thread)

 private:
  struct Udp;
  asio::awaitable<void> serve_udp(std::shared_ptr<Udp> udp);
  asio::awaitable<void> answer_udp(std::shared_ptr<Udp> udp, std::vector<uint8_t> query,
                                   IpAddress source, uint16_t source_port, IpAddress resolver,
                                   uint16_t resolver_port);
  asio::awaitable<void> serve_tcp(asio::ip::tcp::acceptor& acceptor);
  asio::awaitable<void> serve_tcp_client(asio::ip::tcp::socket socket);
  void send_reply(Udp& udp, std::span<const uint8_t> answer, const IpAddress& source,
                  uint16_t source_port, const IpAddress& resolver, uint16_t resolver_port);

  asio::io_context& io_;
  SessionContext& context_;
  std::vector<std::shared_ptr<Udp>> udp_;
  std::vector<asio::ip::tcp::acceptor> tcp_;
  std::vector<std::string> addresses_;
  size_t in_flight_ = 0;
  size_t tcp_clients_ = 0;
};

}  // namespace egressd
