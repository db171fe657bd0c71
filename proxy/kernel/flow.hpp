#pragma once
// What egressd knows of a connection the kernel fast path forwards (from conntrack): shared by
// the kernel I/O (kernel/netfilter.hpp) and the control API that lists them.
#include <chrono>
#include <cstdint>

#include "core/ip.hpp"

namespace egressd {

// One TCP connection the kernel forwarded, as conntrack knows it (original direction: the
// sandbox's). Bytes need net.netfilter.nf_conntrack_acct=1, times nf_conntrack_timestamp=1.
struct KernelFlow {
  IpAddress source, destination;
  uint16_t source_port = 0, port = 0;
  uint64_t bytes_up = 0, bytes_down = 0;
  std::chrono::system_clock::time_point start{};  // epoch: unknown
  std::chrono::system_clock::time_point stop{};
  bool closed = false;        // TIME_WAIT or CLOSE: over, conntrack just remembers it a while
  uint32_t conntrack_id = 0;  // conntrack's id of the entry, unique while it lives
  uint64_t serial = 0;        // egressd's connection id, once /v1/connections listed it
};

}  // namespace egressd
