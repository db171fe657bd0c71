#pragma once
// Thin wrappers over the socket options the data path needs.
#include <asio/ip/tcp.hpp>

#include <optional>

#include "core/ip.hpp"

namespace egressd {

// Closes with SO_LINGER 0 so the peer sees a RST, not a FIN.
void reset_and_close(asio::ip::tcp::socket& socket);
// The address and port of an endpoint in the policy's representation (v4-mapped unmapped).
IpAddress to_ip(const asio::ip::address& address);
asio::ip::address to_asio(const IpAddress& address);
void set_nodelay(asio::ip::tcp::socket& socket);

}  // namespace egressd
