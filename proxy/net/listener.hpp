#pragma once
// TPROXY listening sockets: IP_TRANSPARENT / IPV6_TRANSPARENT (without it the kernel silently
// drops redirected SYNs), SO_REUSEPORT so every worker has its own accept queue, IPV6_V6ONLY.
#include <asio/ip/tcp.hpp>

#include <string>
#include <system_error>

namespace egressd {

// Opens, configures, binds and listens; the error names the step that failed.
asio::ip::tcp::acceptor open_tproxy_listener(asio::io_context& io, const std::string& host,
                                             uint16_t port, std::error_code& error,
                                             std::string& step);

}  // namespace egressd
