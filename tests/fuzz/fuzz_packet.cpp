// The refused-SYN parser (kernel/packet.hpp), on any bytes. Invariants:
//  - it reads only what it was given (ASan), and says yes only for a copy long enough to hold
//    the IP header and the TCP ports;
//  - what it returns is what the bytes say, read again here the simplest way: the family from
//    the version nibble, the addresses at their fixed offsets, the port after the IP header;
//  - the same bytes with one more byte after them parse the same (nothing depends on the end).
#include <cstdlib>
#include <vector>

#include "kernel/packet.hpp"

using namespace egressd;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  KernelRefusal got;
  bool ok = parse_tcp_packet(data, size, got);
  std::vector<uint8_t> longer(data, data + size);
  longer.push_back(0xAB);
  KernelRefusal again;
  bool ok_longer = parse_tcp_packet(longer.data(), longer.size(), again);
  if (ok && (!ok_longer || !(again.source == got.source) ||
             !(again.destination == got.destination) || again.port != got.port))
    abort();
  if (!ok) return 0;
  bool v4 = data[0] >> 4 == 4;
  size_t header = v4 ? size_t(data[0] & 0x0f) * 4 : 40;
  if (size < header + 4 || (v4 && (size < 20 || header < 20 || data[9] != 6)) ||
      (!v4 && (data[0] >> 4 != 6 || data[6] != 6)))
    abort();
  if (got.source.family != (v4 ? Family::v4 : Family::v6)) abort();
  size_t at = v4 ? 12 : 8, width = v4 ? 4 : 16;
  uint128 source = 0, destination = 0;
  for (size_t i = 0; i < width; ++i) {
    source = source << 8 | data[at + i];
    destination = destination << 8 | data[at + width + i];
  }
  if (got.source.bits != source || got.destination.bits != destination) abort();
  if (got.port != (data[header + 2] << 8 | data[header + 3])) abort();
  return 0;
}
