#include "net/socket_options.hpp"

#include <netinet/tcp.h>
#include <sys/socket.h>

namespace egressd {

void reset_and_close(asio::ip::tcp::socket& socket) {
  if (!socket.is_open()) return;
  linger option{1, 0};
  ::setsockopt(socket.native_handle(), SOL_SOCKET, SO_LINGER, &option, sizeof(option));
  asio::error_code ignored;
  socket.close(ignored);
}

IpAddress to_ip(const asio::ip::address& address) {
  if (address.is_v4()) return IpAddress{Family::v4, address.to_v4().to_uint()};
  uint128 bits = 0;
  for (uint8_t byte : address.to_v6().to_bytes()) bits = (bits << 8) | byte;
  return IpAddress{Family::v6, bits}.unmapped();
}

asio::ip::address to_asio(const IpAddress& address) {
  if (address.family == Family::v4)
    return asio::ip::address_v4(static_cast<uint32_t>(address.bits));
  asio::ip::address_v6::bytes_type bytes;
  for (int i = 15; i >= 0; --i) bytes[i] = static_cast<uint8_t>(address.bits >> (8 * (15 - i)));
  return asio::ip::address_v6(bytes);
}

void set_nodelay(asio::ip::tcp::socket& socket) {
  int one = 1;
  ::setsockopt(socket.native_handle(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

}  // namespace egressd
