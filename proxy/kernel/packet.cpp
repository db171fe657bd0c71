#include "kernel/packet.hpp"

namespace egressd {

constexpr uint8_t kTcp = 6;  // IPPROTO_TCP

// Hand-written: libnetfilter_log hands over the packet's bytes and no library in use parses
// IP headers. Only the fixed headers are read, each length checked first:
//   IPv4: version/IHL(0) ... protocol(9) ... source(12..16) destination(16..20), TCP at IHL*4
//   IPv6: version(0) ... next header(6) ... source(8..24) destination(24..40), TCP at 40
//   TCP:  source port(0..2) destination port(2..4)
bool parse_tcp_packet(const uint8_t* data, size_t size, KernelRefusal& out) {
  if (size < 1) return false;
  auto address = [&](size_t at, size_t bytes, Family family) {
    uint128 bits = 0;
    for (size_t i = 0; i < bytes; ++i) bits = (bits << 8) | data[at + i];
    return IpAddress{family, bits};
  };
  size_t tcp = 0;
  if (data[0] >> 4 == 4) {
    if (size < 20 || data[9] != kTcp) return false;
    tcp = size_t(data[0] & 0x0f) * 4;
    if (tcp < 20) return false;
    out.source = address(12, 4, Family::v4);
    out.destination = address(16, 4, Family::v4);
  } else if (data[0] >> 4 == 6) {
    if (size < 40 || data[6] != kTcp) return false;
    tcp = 40;
    out.source = address(8, 16, Family::v6);
    out.destination = address(24, 16, Family::v6);
  } else {
    return false;
  }
  if (size < tcp + 4) return false;
  out.port = static_cast<uint16_t>(data[tcp + 2] << 8 | data[tcp + 3]);
  return true;
}

}  // namespace egressd
