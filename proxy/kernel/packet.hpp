#pragma once
// The few bytes of a refused SYN egressd reads (NFLOG hands over the packet as the kernel saw
// it): a pure parser, fuzzed (tests/fuzz/fuzz_packet.cpp).
#include <cstddef>
#include <cstdint>

#include "core/ip.hpp"

namespace egressd {

struct KernelRefusal {
  IpAddress source, destination;
  uint16_t port = 0;
  bool over_limit = false;  // from fp_limit: the sandbox held its most kernel connections
};

// The addresses and TCP destination port of an IPv4 or IPv6 packet: false for anything else
// (another protocol, IPv6 extension headers, a copy too short to hold them).
bool parse_tcp_packet(const uint8_t* data, size_t size, KernelRefusal& out);

}  // namespace egressd
