#pragma once
// DESIGN.md "Kernel fast path", first part: the fast-path decisions of every sandbox compiled
// into disjoint intervals for nftables sets and verdict maps, and the one transaction that
// loads them (app/kernel_path.cpp runs them for fast_path: kernel; bench/system/kernel_sets.py
// loads them into a scratch table and measures).
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
#include <memory>
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
  std::string id;
  uint64_t generation = 0;  // the store's: a sandbox with the same one compiles the same
  std::string chain;
  std::vector<AddressRange> sources;
  std::vector<Allowed> allow4, allow6;
  // The most kernel-forwarded connections it may hold at once (its chain counts them, conntrack's
  // connlimit; beyond, a reset at SYN with reason connection_limit); 0: no limit.
  uint32_t connection_limit = 0;
};

// A sandbox the proxy decides (audit mode, a gateway): its sources go back to TPROXY.
struct ProxiedSandbox {
  std::string id;
  std::vector<AddressRange> sources;
};

struct KernelSets {
  std::vector<AddressRange> guard4, guard6;      // step 1
  std::vector<AddressRange> sources4, sources6;  // step 2: every sandbox's sources
  // Step 3, sorted by chain. Shared and never changed once compiled: a sandbox a policy change
  // did not touch is the same object in the next compile (plan_change skips it by address).
  std::vector<std::shared_ptr<const SandboxSets>> sandboxes;
  std::vector<ProxiedSandbox> proxied;  // step 4: audit mode, a gateway
  std::vector<uint16_t> inspected;
  bool refuse_unknown_sources = true;
  size_t allow_elements() const;
  bool any_set() const;  // a sandbox with a set (has_set): its fill is nft text's
};

// `inspected`: the inspect.tls and inspect.http ports (never in a fast-path element).
// `previous`: sets compiled before, whose sandboxes of the same generation are taken as they
// are (a policy change compiles only the sandbox that changed). `connection_limit`: each
// sandbox's (limits.max_connections_per_sandbox; 0: none, for a table without fp_limit).
KernelSets compile_kernel_sets(const StoreSnapshot& store, const Guard& guard,
                               Verdict unknown_source, const std::vector<uint16_t>& inspected,
                               const KernelSets* previous = nullptr, uint32_t connection_limit = 0);

// The verdict the sets give a new connection, evaluated as the kernel would (steps 1-4):
// deny, allow, or nullopt for "TPROXY: the proxy decides". For tests and checks.
std::optional<Verdict> kernel_verdict(const KernelSets& sets, const IpAddress& source,
                                      const IpAddress& destination, uint16_t port);

// --- The nftables side. deploy/firewall.sh up --fast-path declares, in its table inet egressd
// (nft_skeleton writes the same for a scratch table): the sets fp_mark (the ct/packet mark bit
// of a kernel-forwarded flow), fp_guard4/6, fp_inspected, the verdict maps fp_by_source4/6, the
// chains fp_refuse (TCP reset), fp_allow (marks the connection and lets it through) and an empty
// fast_path, which its sandbox chain jumps to for every TCP SYN before TPROXY. egressd fills
// them and owns the per-sandbox chains and sets (fp_sb_*): an empty fast_path sends everything
// to TPROXY (the proxy decides), so a firewall reload or a stopped egressd never lets more
// through than the proxy would.

// egressd's per-sandbox chains and sets found in a `list table` output (what a full load
// removes first: they may be a previous process's).
struct TableObjects {
  std::vector<std::string> chains, sets;
};
TableObjects listed_objects(std::string_view listing);

// One transaction filling the table: everything `existing` named removed, every set, map and
// chain written again, fast_path last.
std::string nft_fill(const KernelSets& sets, std::string_view table, const TableObjects& existing);
// One rule of a sandbox chain, in its order: written as nft text (rule_text) or as netlink
// expressions (kernel/nft_netlink.cpp) from this one list.
struct ChainRule {
  enum class Kind {
    inspected,  // tcp dport @fp_inspected return
    mapped,     // ip6 daddr ::ffff:0:0/96 return
    allow,      // ip[6] daddr RANGE tcp dport PORTS goto fp_allow
    allow_set,  // ip[6] daddr . tcp dport @SET goto fp_allow
    refuse,     // goto fp_refuse
    limit,      // ct count over LIMIT goto fp_limit
  } kind;
  bool v4 = true;
  Allowed allowed{};
  std::string set;
  uint32_t limit = 0;
};
std::vector<ChainRule> chain_rules(const SandboxSets& sandbox);
// A long allow list (more than 16 intervals of a family) is kept in a set of its own.
bool has_set(const SandboxSets& sandbox);
std::string rule_text(const ChainRule& rule);

// One element of fp_by_source4/6: a sandbox's source range and its chain (empty: `return`, back
// to TPROXY).
struct SourceEntry {
  AddressRange range;
  std::string chain;
};
std::vector<SourceEntry> source_entries(const KernelSets& sets);

// What a change from `loaded` to `next` does to the table, in this order: map elements leave;
// gone chains are emptied, then deleted with their sets; new or changed chains are written
// (add, flush, rules; their sets first); sets no rule uses any more go; map elements enter.
// Pointers are into `loaded` (gone) and `next` (written); both sorted by chain.
struct ChangePlan {
  std::vector<SourceEntry> leave;
  std::vector<const SandboxSets*> gone;
  std::vector<const SandboxSets*> written;
  std::vector<std::string> sets_dropped;
  std::vector<SourceEntry> enter;
  bool empty() const {
    return leave.empty() && gone.empty() && written.empty() && sets_dropped.empty() &&
           enter.empty();
  }
  bool uses_sets() const;  // a touched sandbox has a set (a long allow list)
};
ChangePlan plan_change(const KernelSets& loaded, const KernelSets& next);

// One transaction from what was loaded to `next`, touching only the sandboxes that changed
// (their map elements, chains and sets). Only when same_globals(loaded, next); else nft_fill.
std::string nft_change(const ChangePlan& plan, std::string_view table);
std::string nft_change(const KernelSets& loaded, const KernelSets& next, std::string_view table);
bool same_globals(const KernelSets& a, const KernelSets& b);
// Empties fast_path: every new connection goes to TPROXY again (a stopping egressd).
std::string nft_clear(std::string_view table);
// What firewall.sh --fast-path declares, as a table of its own (for tools and tests); with
// `interfaces`, a prerouting chain that sends their TCP SYNs through fast_path.
std::string nft_skeleton(std::string_view table, const std::vector<std::string>& interfaces,
                         uint32_t mark = 0x40000000, uint16_t log_group = 15001);

}  // namespace egressd
