#include "session/refusal.hpp"

#include <sys/ioctl.h>

#include <asio/experimental/as_tuple.hpp>
#include <asio/use_awaitable.hpp>
#include <asio/write.hpp>

#include "inspect/client_hello.hpp"
#include "net/socket_options.hpp"
#include "util/asio_tokens.hpp"

namespace egressd {
namespace {}

const char* to_string(Proto proto) {
  switch (proto) {
    case Proto::tls:
      return "tls";
    case Proto::http:
      return "http";
    default:
      return "tcp";
  }
}

std::string http_forbidden(Reason reason, std::string host) {
  std::string body = "egressd: access to " +
                     (host.empty() ? std::string("this destination") : host) + " is denied (" +
                     std::string(to_string(reason)) + ")\n";
  return "HTTP/1.1 403 Forbidden\r\nContent-Type: text/plain\r\nContent-Length: " +
         std::to_string(body.size()) +
         "\r\nConnection: close\r\nX-Egress-Denied: " + std::string(to_string(reason)) +
         "\r\n\r\n" + body;
}

asio::awaitable<void> refuse(asio::ip::tcp::socket& client, Proto proto, Reason reason,
                             std::string host) {
  if (proto == Proto::tcp) {
    reset_and_close(client);
    co_return;
  }
  std::string answer = proto == Proto::tls
                           ? std::string(kTlsAccessDeniedAlert.begin(), kTlsAccessDeniedAlert.end())
                           : http_forbidden(reason, host);
  co_await asio::async_write(client, asio::buffer(answer), use_nothrow);
  asio::error_code ignored;
  client.shutdown(asio::ip::tcp::socket::shutdown_send, ignored);
  // Discard what the client already sent so the close is a FIN, not a RST over our answer.
  int unread = 0;
  if (::ioctl(client.native_handle(), FIONREAD, &unread) == 0 && unread > 0) {
    std::vector<char> sink(static_cast<size_t>(std::min(unread, 65536)));
    client.read_some(asio::buffer(sink), ignored);
  }
  client.close(ignored);
}

}  // namespace egressd
