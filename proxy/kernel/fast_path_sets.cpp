#include "kernel/fast_path_sets.hpp"

#include <algorithm>
#include <cstdio>
#include <optional>
#include <tuple>
#include <variant>

namespace egressd {
namespace {

uint128 family_max(Family family) {
  return family == Family::v4 ? uint128(0xFFFFFFFFu) : ~uint128(0);
}

uint128 prefix_high(const IpPrefix& prefix) {
  return prefix.address.bits |
         (~prefix_mask(prefix.address.width(), prefix.length) & family_max(prefix.address.family));
}

// ::ffff:0:0/96: IPv4-mapped destinations, which the proxy matches as IPv4.
const IpPrefix kMapped{IpAddress{Family::v6, uint128(0xFFFF) << 32}, 96};

// The family's whole space cut at every boundary of `prefixes`: consecutive inclusive ranges.
std::vector<std::pair<uint128, uint128>> address_cells(const std::vector<IpPrefix>& prefixes,
                                                       Family family) {
  const uint128 max = family_max(family);
  std::vector<uint128> cuts = {0};
  for (const IpPrefix& prefix : prefixes) {
    if (prefix.address.family != family) continue;
    cuts.push_back(prefix.address.bits);
    uint128 high = prefix_high(prefix);
    if (high != max) cuts.push_back(high + 1);
  }
  std::sort(cuts.begin(), cuts.end());
  cuts.erase(std::unique(cuts.begin(), cuts.end()), cuts.end());
  std::vector<std::pair<uint128, uint128>> cells;
  for (size_t i = 0; i < cuts.size(); ++i)
    cells.emplace_back(cuts[i], i + 1 < cuts.size() ? cuts[i + 1] - 1 : max);
  return cells;
}

// Ports 1-65535 cut at every boundary of `ranges` and around every inspected port; the
// inspected ports themselves are left out (port 0 is never a destination).
std::vector<PortRange> port_cells(const std::vector<PortRange>& ranges,
                                  const std::vector<uint16_t>& inspected) {
  std::vector<uint32_t> cuts = {1, 65536};
  for (const PortRange& range : ranges) {
    cuts.push_back(range.low);
    cuts.push_back(uint32_t(range.high) + 1);
  }
  for (uint16_t port : inspected) {
    cuts.push_back(port);
    cuts.push_back(uint32_t(port) + 1);
  }
  std::sort(cuts.begin(), cuts.end());
  cuts.erase(std::unique(cuts.begin(), cuts.end()), cuts.end());
  std::vector<PortRange> cells;
  for (size_t i = 0; i + 1 < cuts.size(); ++i) {
    if (cuts[i] == 0) continue;
    PortRange cell{static_cast<uint16_t>(cuts[i]), static_cast<uint16_t>(cuts[i + 1] - 1)};
    bool is_inspected = cell.low == cell.high &&
                        std::find(inspected.begin(), inspected.end(), cell.low) != inspected.end();
    if (!is_inspected) cells.push_back(cell);
  }
  return cells;
}

// Adjacent ranges merged.
void append_range(std::vector<AddressRange>& out, Family family, uint128 low, uint128 high) {
  if (!out.empty() && out.back().high.bits + 1 == low) {
    out.back().high.bits = high;
    return;
  }
  out.push_back({IpAddress{family, low}, IpAddress{family, high}});
}

// The guard's cells that it covers, merged.
std::vector<AddressRange> guard_ranges(const Guard& guard, Family family) {
  std::vector<AddressRange> out;
  for (auto [low, high] : address_cells(guard.prefixes(), family)) {
    if (!guard.covering(IpAddress{family, low}).empty()) append_range(out, family, low, high);
  }
  return out;
}

// The address rules and any-address rules of a policy (the only ones that decide a
// connection without a name), as prefixes and port ranges to cut at.
void rule_boundaries(const CompiledPolicy& policy, std::vector<IpPrefix>& prefixes,
                     std::vector<PortRange>& ports) {
  for (bool allow : {true, false}) {
    for (const std::string& text : policy.rule_texts(allow)) {
      auto parsed = parse_rule(text);
      const Rule* rule = std::get_if<Rule>(&parsed);
      if (!rule || (rule->kind != RuleKind::address && rule->kind != RuleKind::any)) continue;
      if (rule->kind == RuleKind::address) prefixes.push_back(rule->prefix);
      ports.push_back(rule->ports);
    }
  }
}

// What one sandbox may reach in one family on ports that are not inspected: every
// (destination cell, port cell) decided by the policy (the guard is step 1, before), allowed
// runs merged along ports, then along destinations with identical rows.
std::vector<Allowed> allowed(const Sandbox& sandbox, Family family,
                             const std::vector<uint16_t>& inspected) {
  std::vector<IpPrefix> prefixes;
  std::vector<PortRange> port_ranges;
  rule_boundaries(*sandbox.policy, prefixes, port_ranges);
  if (family == Family::v6) prefixes.push_back(kMapped);
  const auto cells = address_cells(prefixes, family);
  const auto ports = port_cells(port_ranges, inspected);
  std::vector<Allowed> out;
  std::vector<PortRange> previous_row, row;
  uint128 row_low = 0, row_high = 0;
  auto flush = [&] {
    for (const PortRange& run : previous_row)
      out.push_back({{IpAddress{family, row_low}, IpAddress{family, row_high}}, run});
  };
  bool first = true;
  for (auto [low, high] : cells) {
    row.clear();
    bool mapped = family == Family::v6 && kMapped.contains(IpAddress{family, low});
    for (const PortRange& cell : ports) {
      if (mapped || sandbox.policy->decide(nullptr, IpAddress{family, low}, cell.low).verdict !=
                        Verdict::allow)
        continue;
      if (!row.empty() && uint32_t(row.back().high) + 1 == cell.low) {
        row.back().high = cell.high;
      } else {
        row.push_back(cell);
      }
    }
    if (!first && row == previous_row) {
      row_high = high;
      continue;
    }
    if (!first) flush();
    previous_row = row;
    row_low = low;
    row_high = high;
    first = false;
  }
  flush();
  return out;
}

// A stable chain name for a sandbox id (ids may hold characters nft names may not).
std::string chain_name(std::string_view id) {
  uint64_t hash = 0xcbf29ce484222325ULL;
  for (unsigned char c : id) hash = (hash ^ c) * 0x100000001b3ULL;
  char text[24];
  std::snprintf(text, sizeof(text), "sb_%016llx", static_cast<unsigned long long>(hash));
  return text;
}

bool in_range(const AddressRange& range, const IpAddress& address) {
  return range.low.family == address.family && range.low.bits <= address.bits &&
         address.bits <= range.high.bits;
}

std::string range_text(const AddressRange& range) {
  return range.low == range.high ? range.low.to_string()
                                 : range.low.to_string() + "-" + range.high.to_string();
}

std::string ports_text(const PortRange& ports) {
  return ports.low == ports.high ? std::to_string(ports.low)
                                 : std::to_string(ports.low) + "-" + std::to_string(ports.high);
}

}  // namespace

size_t KernelSets::allow_elements() const {
  size_t total = 0;
  for (const SandboxSets& sandbox : sandboxes)
    total += sandbox.allow4.size() + sandbox.allow6.size();
  return total;
}

KernelSets compile_kernel_sets(const StoreSnapshot& store, const Guard& guard,
                               Verdict unknown_source, const std::vector<uint16_t>& inspected) {
  KernelSets sets;
  sets.refuse_unknown_sources = unknown_source == Verdict::deny;
  sets.inspected = inspected;
  std::sort(sets.inspected.begin(), sets.inspected.end());
  sets.inspected.erase(std::unique(sets.inspected.begin(), sets.inspected.end()),
                       sets.inspected.end());
  sets.guard4 = guard_ranges(guard, Family::v4);
  sets.guard6 = guard_ranges(guard, Family::v6);
  std::vector<IpPrefix> sources;
  store.for_each([&](const Sandbox& sandbox) {
    sources.insert(sources.end(), sandbox.sources.begin(), sandbox.sources.end());
    if (sandbox.policy->mode() == Mode::audit || !sandbox.policy->gateway().empty()) {
      ++sets.sandboxes_left_to_proxy;
      return;
    }
    SandboxSets entry;
    entry.chain = chain_name(sandbox.id);
    for (const IpPrefix& source : sandbox.sources)
      entry.sources.push_back(
          {source.address, IpAddress{source.address.family, prefix_high(source)}});
    entry.allow4 = allowed(sandbox, Family::v4, sets.inspected);
    entry.allow6 = allowed(sandbox, Family::v6, sets.inspected);
    sets.sandboxes.push_back(std::move(entry));
  });
  std::sort(sets.sandboxes.begin(), sets.sandboxes.end(),
            [](const SandboxSets& a, const SandboxSets& b) { return a.chain < b.chain; });
  // Two ids with one chain name (a 64-bit hash collision): the second stays with the proxy.
  for (size_t i = 1; i < sets.sandboxes.size();) {
    if (sets.sandboxes[i].chain == sets.sandboxes[i - 1].chain) {
      sets.sandboxes.erase(sets.sandboxes.begin() + static_cast<std::ptrdiff_t>(i));
      ++sets.sandboxes_left_to_proxy;
    } else {
      ++i;
    }
  }
  // Sources never overlap (the store refuses it): sorted, adjacent ones merged.
  std::sort(sources.begin(), sources.end(), [](const IpPrefix& a, const IpPrefix& b) {
    return std::pair(a.address.family, a.address.bits) <
           std::pair(b.address.family, b.address.bits);
  });
  for (const IpPrefix& source : sources) {
    auto& out = source.address.family == Family::v4 ? sets.sources4 : sets.sources6;
    append_range(out, source.address.family, source.address.bits, prefix_high(source));
  }
  return sets;
}

std::optional<Verdict> kernel_verdict(const KernelSets& sets, const IpAddress& source,
                                      const IpAddress& destination, uint16_t port) {
  bool v4 = source.family == Family::v4;
  for (const AddressRange& range : v4 ? sets.guard4 : sets.guard6)
    if (in_range(range, destination)) return Verdict::deny;
  const auto& known = v4 ? sets.sources4 : sets.sources6;
  bool is_known = std::any_of(known.begin(), known.end(),
                              [&](const AddressRange& range) { return in_range(range, source); });
  if (!is_known) return sets.refuse_unknown_sources ? std::optional(Verdict::deny) : std::nullopt;
  for (const SandboxSets& sandbox : sets.sandboxes) {
    bool mine = std::any_of(sandbox.sources.begin(), sandbox.sources.end(),
                            [&](const AddressRange& range) { return in_range(range, source); });
    if (!mine) continue;
    if (std::binary_search(sets.inspected.begin(), sets.inspected.end(), port)) return std::nullopt;
    if (!v4 && kMapped.contains(destination)) return std::nullopt;
    size_t matches = 0;
    for (const Allowed& allowed : v4 ? sandbox.allow4 : sandbox.allow6)
      if (in_range(allowed.destination, destination) && allowed.ports.contains(port)) ++matches;
    if (matches > 1) return std::nullopt;  // overlapping intervals: nft would refuse the set
    return matches ? Verdict::allow : Verdict::deny;
  }
  return std::nullopt;  // a sandbox the proxy decides
}

namespace {

constexpr size_t kRulesPerChain = 16;

void append_set(std::string& out, const std::string& name, const char* type,
                const std::vector<std::string>& elements, bool interval = true) {
  out += "  set " + name + " {\n    type " + type + "\n";
  if (interval) out += "    flags interval\n";
  if (!elements.empty()) {
    out += "    elements = { ";
    for (size_t i = 0; i < elements.size(); ++i) {
      if (i) out += i % 64 ? ", " : ",\n      ";
      out += elements[i];
    }
    out += " }\n";
  }
  out += "  }\n";
}

std::vector<std::string> range_texts(const std::vector<AddressRange>& ranges) {
  std::vector<std::string> out;
  for (const AddressRange& range : ranges) out.push_back(range_text(range));
  return out;
}

std::vector<std::string> allowed_texts(const std::vector<Allowed>& list) {
  std::vector<std::string> out;
  for (const Allowed& a : list)
    out.push_back(range_text(a.destination) + " . " + ports_text(a.ports));
  return out;
}

// A sandbox chain's rules; a long allow list becomes a set, declared into `sets` (or, when
// null, filled by flush and add element commands returned first in `commands`).
// A short allow list is a few rules: a set per sandbox costs the kernel far more to create
// (10,000 concatenated-interval sets: minutes here) than rules do.
std::vector<std::string> chain_rules(const SandboxSets& sandbox, std::string* sets,
                                     std::string* commands = nullptr, std::string_view table = {}) {
  std::vector<std::string> rules = {"tcp dport @inspected return",
                                    "ip6 daddr ::ffff:0:0/96 return"};
  for (auto [family, list] :
       {std::pair("ip", &sandbox.allow4), std::pair("ip6", &sandbox.allow6)}) {
    const bool v4 = list == &sandbox.allow4;
    const std::string set_name = sandbox.chain + (v4 ? "_4" : "_6");
    if (list->size() > kRulesPerChain) {
      if (sets) {
        append_set(*sets, set_name, v4 ? "ipv4_addr . inet_service" : "ipv6_addr . inet_service",
                   allowed_texts(*list));
      } else if (commands) {
        *commands += "flush set inet " + std::string(table) + " " + set_name + "\n";
        *commands += "add element inet " + std::string(table) + " " + set_name + " { ";
        auto texts = allowed_texts(*list);
        for (size_t i = 0; i < texts.size(); ++i) *commands += (i ? ", " : "") + texts[i];
        *commands += " }\n";
      }
      rules.push_back(std::string(family) + " daddr . tcp dport @" + set_name + " goto fast_allow");
      continue;
    }
    for (const Allowed& allowed : *list)
      rules.push_back(std::string(family) + " daddr " + range_text(allowed.destination) +
                      " tcp dport " + ports_text(allowed.ports) + " goto fast_allow");
  }
  rules.push_back("goto fast_refuse");
  return rules;
}

}  // namespace

std::string nft_sandbox_update(const SandboxSets& sandbox, std::string_view table) {
  std::string commands;
  std::vector<std::string> rules = chain_rules(sandbox, nullptr, &commands, table);
  commands += "flush chain inet " + std::string(table) + " " + sandbox.chain + "\n";
  for (const std::string& rule : rules)
    commands += "add rule inet " + std::string(table) + " " + sandbox.chain + " " + rule + "\n";
  return commands;
}

std::string nft_transaction(const KernelSets& sets, std::string_view table,
                            const std::vector<std::string>& interfaces, int priority,
                            uint32_t mark) {
  const std::string name(table);
  std::string out = "table inet " + name + " {\n}\ndelete table inet " + name + "\n";
  out += "table inet " + name + " {\n";
  append_set(out, "guard4", "ipv4_addr", range_texts(sets.guard4));
  append_set(out, "guard6", "ipv6_addr", range_texts(sets.guard6));
  append_set(out, "sources4", "ipv4_addr", range_texts(sets.sources4));
  append_set(out, "sources6", "ipv6_addr", range_texts(sets.sources6));
  std::vector<std::string> ports;
  for (uint16_t port : sets.inspected) ports.push_back(std::to_string(port));
  append_set(out, "inspected", "inet_service", ports, false);
  char mark_text[16];
  std::snprintf(mark_text, sizeof(mark_text), "0x%x", mark);
  out += "  chain fast_refuse {\n    reject with tcp reset\n  }\n";
  out += "  chain fast_allow {\n    ct mark set ct mark | " + std::string(mark_text) +
         " accept\n  }\n";
  std::vector<std::string> to_chain4, to_chain6;
  for (const SandboxSets& sandbox : sets.sandboxes) {
    std::string rules;
    for (const std::string& rule : chain_rules(sandbox, &out)) rules += "    " + rule + "\n";
    out += "  chain " + sandbox.chain + " {\n" + rules + "  }\n";
    for (const AddressRange& source : sandbox.sources)
      (source.low.family == Family::v4 ? to_chain4 : to_chain6)
          .push_back(range_text(source) + " : goto " + sandbox.chain);
  }
  for (auto [map, type, list] : {std::tuple("by_source4", "ipv4_addr", &to_chain4),
                                 std::tuple("by_source6", "ipv6_addr", &to_chain6)}) {
    out +=
        "  map " + std::string(map) + " {\n    type " + type + " : verdict\n    flags interval\n";
    if (!list->empty()) {
      out += "    elements = { ";
      for (size_t i = 0; i < list->size(); ++i) out += (i ? ", " : "") + (*list)[i];
      out += " }\n";
    }
    out += "  }\n";
  }
  if (!interfaces.empty()) {
    out += "  chain prerouting {\n    type filter hook prerouting priority " +
           std::to_string(priority) + "; policy accept;\n    iifname != { ";
    for (size_t i = 0; i < interfaces.size(); ++i)
      out += (i ? ", \"" : "\"") + interfaces[i] + "\"";
    out += " } return\n    tcp flags & (syn | ack) != syn return\n";
    out += "    ip daddr @guard4 goto fast_refuse\n    ip6 daddr @guard6 goto fast_refuse\n";
    if (sets.refuse_unknown_sources)
      out +=
          "    meta nfproto ipv4 ip saddr != @sources4 goto fast_refuse\n"
          "    meta nfproto ipv6 ip6 saddr != @sources6 goto fast_refuse\n";
    out += "    ip saddr vmap @by_source4\n    ip6 saddr vmap @by_source6\n  }\n";
  }
  out += "}\n";
  return out;
}

}  // namespace egressd
