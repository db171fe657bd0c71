#pragma once
// Daemon-wide switches that layers below the configuration act on (DESIGN.md "Configuration
// file": dns.verify, on_update).
#include <cstdint>

namespace egressd {

enum class DnsVerify : uint8_t { dial, strict, off };
enum class OnUpdate : uint8_t { revoke, keep };
// DESIGN.md "Kernel fast path": where ports that are not inspected are decided.
enum class FastPath : uint8_t { proxy, kernel };

}  // namespace egressd
