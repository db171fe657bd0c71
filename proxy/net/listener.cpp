#include "net/listener.hpp"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

namespace egressd {

asio::ip::tcp::acceptor open_tproxy_listener(asio::io_context& io, const std::string& host,
                                             uint16_t port, std::error_code& error,
                                             std::string& step) {
  asio::ip::tcp::acceptor acceptor(io);
  asio::ip::tcp::endpoint endpoint(asio::ip::make_address(host), port);
  auto fail = [&](const char* what) {
    if (!error) error = std::error_code(errno, std::generic_category());
    step = what;
    asio::error_code ignored;
    acceptor.close(ignored);
    return std::move(acceptor);
  };
  acceptor.open(endpoint.protocol(), error);
  if (error) return fail("socket");
  int fd = acceptor.native_handle();
  int one = 1;
  if (::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0)
    return fail("SO_REUSEADDR");
  if (::setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) != 0)
    return fail("SO_REUSEPORT");
  // Accepted sockets inherit TCP_NODELAY from the listener: one setsockopt less per connection.
  if (::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) != 0)
    return fail("TCP_NODELAY");
  if (endpoint.address().is_v6()) {
    if (::setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one)) != 0)
      return fail("IPV6_V6ONLY");
    if (::setsockopt(fd, SOL_IPV6, IPV6_TRANSPARENT, &one, sizeof(one)) != 0)
      return fail("IPV6_TRANSPARENT");
  } else {
    if (::setsockopt(fd, SOL_IP, IP_TRANSPARENT, &one, sizeof(one)) != 0)
      return fail("IP_TRANSPARENT");
  }
  acceptor.bind(endpoint, error);
  if (error) return fail("bind");
  acceptor.listen(4096, error);
  if (error) return fail("listen");
  acceptor.non_blocking(true, error);
  return acceptor;
}

}  // namespace egressd
