#pragma once
// DESIGN.md "Kernel fast path", first part: the fast-path decisions of every sandbox compiled
// into disjoint intervals for nftables sets and verdict maps, and the one transaction that
// loads them. Not wired into the daemon or the firewall yet (fast_path: kernel is refused at
// load); bench/system/kernel_sets.py loads them into a scratch table and measures.
//
// What the kernel would evaluate, in order, for a new TCP connection (SYN) from a sandbox
// interface:
//   1. daddr in guard<F>                       -> refused (TCP reset): the guard holds for all
//   2. saddr not in sources<F>                 -> refused, when unknown_source is deny
//   3. saddr in a kernel-decided sandbox's sources -> that sandbox's chain:
//        dport inspected, or an IPv4-mapped IPv6 destination -> on to TPROXY (egressd decides)
//        daddr . dport in its allow<F> set     -> forwarded by the kernel
//        otherwise                             -> refused (TCP reset)
//   4. otherwise                               -> TPROXY to egressd (the proxy decides)
// Steps 1-3 refuse on every port: none of them depends on a name. The sources map of step 3
// and every allow set hold disjoint intervals (nft needs no priorities), and every point of an
// allow interval is allowed by decide(): the bounds are cut at every prefix and port-range
// boundary of the rules that could decide it, and one point of each cell is decided by the
// code the proxy runs. One small chain and set per sandbox keeps a policy change to that
// sandbox's own elements, and each set small (nft's concatenated interval sets grow
// superlinearly: 250,000 elements in one set did not load in 10 minutes here).
// Sandboxes the kernel cannot decide alone stay with the proxy: audit mode (refusals are only
// logged) and a gateway (dedicated egress address).
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/ip.hpp"
#include "core/reason.hpp"
#include "policy/policy_store.hpp"
#include "policy/rule.hpp"

namespace egressd {

struct AddressRange {
  IpAddress low, high;  // inclusive, same family
  bool operator==(const AddressRange&) const = default;
};

struct Allowed {
  AddressRange destination;
  PortRange ports;
  bool operator==(const Allowed&) const = default;
};

// One kernel-decided sandbox: its chain's name (from its id, stable across changes), its
// sources and what it may reach on ports that are not inspected.
struct SandboxSets {
  std::string chain;
  std::vector<AddressRange> sources;
  std::vector<Allowed> allow4, allow6;
};

struct KernelSets {
  std::vector<AddressRange> guard4, guard6;      // step 1
  std::vector<AddressRange> sources4, sources6;  // step 2: every sandbox's sources
  std::vector<SandboxSets> sandboxes;            // step 3, sorted by chain
  std::vector<uint16_t> inspected;
  bool refuse_unknown_sources = true;
  size_t sandboxes_left_to_proxy = 0;  // audit mode or a gateway
  size_t allow_elements() const;
};

// `inspected`: the inspect.tls and inspect.http ports (never in a fast-path element).
KernelSets compile_kernel_sets(const StoreSnapshot& store, const Guard& guard,
                               Verdict unknown_source, const std::vector<uint16_t>& inspected);

// The verdict the sets give a new connection, evaluated as the kernel would (steps 1-4):
// deny, allow, or nullopt for "TPROXY: the proxy decides". For tests and checks.
std::optional<Verdict> kernel_verdict(const KernelSets& sets, const IpAddress& source,
                                      const IpAddress& destination, uint16_t port);

// One nft transaction (for `nft -f` or libnftables) that replaces table inet `table` whole:
// created if missing, deleted, declared again with every set, map and chain, atomically.
// Its base chain (prerouting, priority `priority`, before the firewall's TPROXY at mangle)
// marks a forwarded SYN's connection with ct mark `mark`, for the firewall to let it pass.
// One sandbox's change, in the table nft_transaction made: its chain's rules replaced (and its
// set's elements, for a long allow list that already had one), atomically.
std::string nft_sandbox_update(const SandboxSets& sandbox, std::string_view table);

// Without `interfaces` there is no base chain: the sets and chains only (for checks).
std::string nft_transaction(const KernelSets& sets, std::string_view table,
                            const std::vector<std::string>& interfaces = {}, int priority = -160,
                            uint32_t mark = 0x4000);

}  // namespace egressd
