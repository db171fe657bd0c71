#pragma once
// A policy change to the kernel fast path's table as one nf_tables batch, built with libnftnl
// and sent on a netlink socket of this process: no ruleset read back first. libnftables (the
// nft text path, kernel/netfilter.hpp) reads the table's chains, sets and map elements into its
// cache before each transaction: at 10,000 sandboxes that was 80-160 ms per policy change
// (bench/RESULTS.md), spent while the control API's writer waits. The whole fill and the
// sandboxes with sets (long allow lists) stay on the text path.
#include <cstddef>
#include <cstdint>
#include <string>

#include "kernel/fast_path_sets.hpp"

namespace egressd {

// Applies `plan` (no sandbox in it with a set: plan.uses_sets() is false) to `table` (family
// inet) as one transaction, exactly as nft_change(plan, table) would. Empty on success, else
// the kernel's error and the operation it refused; on error nothing changed.
std::string nft_apply(const ChangePlan& plan, const std::string& table);

// What nft_fill(sets, table, <the table's own fp_sb_* objects>) does, as one netlink batch:
// the sandbox chains and sets already there are found by a dump of their names (not a read of
// the whole table) and removed; the same result in `nft list`. Refuses (changing nothing) when
// a sandbox has a set: that fill is nft_fill's.
std::string nft_fill_netlink(const KernelSets& sets, const std::string& table);

// The number of rules in `chain` of `table` (inet), or the error: what tells egressd that a
// firewall reload emptied fast_path, without reading the rest of the table.
std::string nft_rule_count(const std::string& table, const std::string& chain, size_t& count);

// The packets named counter `counter` of `table` (inet) has counted, or the error (a table from
// an older firewall.sh has no such counter).
std::string nft_counter_packets(const std::string& table, const std::string& counter,
                                uint64_t& packets);

}  // namespace egressd
