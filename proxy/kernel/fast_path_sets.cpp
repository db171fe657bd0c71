#include "kernel/fast_path_sets.hpp"

#include <algorithm>
#include <cstdio>
#include <map>
#include <optional>
#include <tuple>
#include <unordered_map>
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
  char text[32];
  std::snprintf(text, sizeof(text), "fp_sb_%016llx", static_cast<unsigned long long>(hash));
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
  for (const auto& sandbox : sandboxes) total += sandbox->allow4.size() + sandbox->allow6.size();
  return total;
}

KernelSets compile_kernel_sets(const StoreSnapshot& store, const Guard& guard,
                               Verdict unknown_source, const std::vector<uint16_t>& inspected,
                               const KernelSets* previous, uint32_t connection_limit) {
  KernelSets sets;
  sets.refuse_unknown_sources = unknown_source == Verdict::deny;
  sets.inspected = inspected;
  std::sort(sets.inspected.begin(), sets.inspected.end());
  sets.inspected.erase(std::unique(sets.inspected.begin(), sets.inspected.end()),
                       sets.inspected.end());
  sets.guard4 = guard_ranges(guard, Family::v4);
  sets.guard6 = guard_ranges(guard, Family::v6);
  std::unordered_map<std::string_view, const std::shared_ptr<const SandboxSets>*> reusable;
  if (previous && previous->inspected == sets.inspected) {
    reusable.reserve(previous->sandboxes.size());
    for (const auto& sandbox : previous->sandboxes) reusable[sandbox->id] = &sandbox;
  }
  std::vector<IpPrefix> sources;
  auto source_ranges = [](const Sandbox& sandbox) {
    std::vector<AddressRange> out;
    for (const IpPrefix& source : sandbox.sources)
      out.push_back({source.address, IpAddress{source.address.family, prefix_high(source)}});
    return out;
  };
  store.for_each([&](const Sandbox& sandbox) {
    sources.insert(sources.end(), sandbox.sources.begin(), sandbox.sources.end());
    if (sandbox.policy->mode() == Mode::audit || !sandbox.policy->gateway().empty()) {
      sets.proxied.push_back({sandbox.id, source_ranges(sandbox)});
      return;
    }
    if (auto same = reusable.find(sandbox.id);
        same != reusable.end() && (*same->second)->generation == sandbox.generation &&
        (*same->second)->connection_limit == connection_limit) {
      sets.sandboxes.push_back(*same->second);
      return;
    }
    auto entry = std::make_shared<SandboxSets>();
    entry->id = sandbox.id;
    entry->generation = sandbox.generation;
    entry->chain = chain_name(sandbox.id);
    entry->sources = source_ranges(sandbox);
    entry->allow4 = allowed(sandbox, Family::v4, sets.inspected);
    entry->allow6 = allowed(sandbox, Family::v6, sets.inspected);
    entry->connection_limit = connection_limit;
    sets.sandboxes.push_back(std::move(entry));
  });
  std::sort(sets.sandboxes.begin(), sets.sandboxes.end(),
            [](const auto& a, const auto& b) { return a->chain < b->chain; });
  // Two ids with one chain name (a 64-bit hash collision): the second stays with the proxy.
  for (size_t i = 1; i < sets.sandboxes.size();) {
    if (sets.sandboxes[i]->chain == sets.sandboxes[i - 1]->chain) {
      sets.proxied.push_back({sets.sandboxes[i]->id, sets.sandboxes[i]->sources});
      sets.sandboxes.erase(sets.sandboxes.begin() + static_cast<std::ptrdiff_t>(i));
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
  for (const auto& pointer : sets.sandboxes) {
    const SandboxSets& sandbox = *pointer;
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

std::string elements_text(const std::vector<std::string>& elements) {
  std::string out;
  for (size_t i = 0; i < elements.size(); ++i) {
    if (i) out += i % 64 ? ", " : ",\n    ";
    out += elements[i];
  }
  return out;
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

// Writes the commands of one transaction against one table ("add rule inet T C ...").
struct Commands {
  std::string table;
  std::string text;
  void line(const std::string& verb, const std::string& rest) {
    text += verb + " inet " + table + " " + rest + "\n";
  }
  // Replaces a set's or map's elements (nothing added when there are none).
  void fill(const char* kind, const std::string& name, const std::vector<std::string>& elements) {
    line("flush " + std::string(kind), name);
    if (!elements.empty()) line("add element", name + " { " + elements_text(elements) + " }");
  }
};

const char* set_type(bool v4) {
  return v4 ? "ipv4_addr . inet_service" : "ipv6_addr . inet_service";
}

// A sandbox's long allow list of one family, kept in a set of its own (by name), or none.
std::string allow_set(const SandboxSets& sandbox, bool v4) {
  return (v4 ? sandbox.allow4 : sandbox.allow6).size() > kRulesPerChain
             ? sandbox.chain + (v4 ? "_4" : "_6")
             : std::string();
}

}  // namespace

// A sandbox chain's rules. A short allow list is a few rules: a set per sandbox costs the
// kernel far more to create (10,000 concatenated-interval sets: minutes here) than rules do.
std::vector<ChainRule> chain_rules(const SandboxSets& sandbox) {
  std::vector<ChainRule> rules = {{ChainRule::Kind::inspected}, {ChainRule::Kind::mapped, false}};
  // Counts every SYN the chain decides (a refused one's entry is never confirmed: it goes), so
  // only its live kernel flows hold places; the proxy's connections are the proxy's to count.
  if (sandbox.connection_limit)
    rules.push_back({ChainRule::Kind::limit, true, {}, {}, sandbox.connection_limit});
  for (bool v4 : {true, false}) {
    if (std::string set = allow_set(sandbox, v4); !set.empty()) {
      rules.push_back({ChainRule::Kind::allow_set, v4, {}, set});
      continue;
    }
    for (const Allowed& allowed : v4 ? sandbox.allow4 : sandbox.allow6)
      rules.push_back({ChainRule::Kind::allow, v4, allowed, {}});
  }
  rules.push_back({ChainRule::Kind::refuse});
  return rules;
}

bool has_set(const SandboxSets& sandbox) {
  return !allow_set(sandbox, true).empty() || !allow_set(sandbox, false).empty();
}

bool KernelSets::any_set() const {
  return std::any_of(sandboxes.begin(), sandboxes.end(),
                     [](const auto& sandbox) { return has_set(*sandbox); });
}

std::string rule_text(const ChainRule& rule) {
  const char* family = rule.v4 ? "ip" : "ip6";
  switch (rule.kind) {
    case ChainRule::Kind::inspected:
      return "tcp dport @fp_inspected return";
    case ChainRule::Kind::mapped:
      return "ip6 daddr ::ffff:0:0/96 return";
    case ChainRule::Kind::allow:
      return std::string(family) + " daddr " + range_text(rule.allowed.destination) +
             " tcp dport " + ports_text(rule.allowed.ports) + " goto fp_allow";
    case ChainRule::Kind::allow_set:
      return std::string(family) + " daddr . tcp dport @" + rule.set + " goto fp_allow";
    case ChainRule::Kind::limit:
      return "ct count over " + std::to_string(rule.limit) + " goto fp_limit";
    case ChainRule::Kind::refuse:
      break;
  }
  return "goto fp_refuse";
}

std::vector<SourceEntry> source_entries(const KernelSets& sets) {
  std::vector<SourceEntry> out;
  for (const auto& sandbox : sets.sandboxes)
    for (const AddressRange& source : sandbox->sources) out.push_back({source, sandbox->chain});
  for (const ProxiedSandbox& sandbox : sets.proxied)
    for (const AddressRange& source : sandbox.sources) out.push_back({source, {}});
  return out;
}

namespace {

const char* source_map(const AddressRange& range) {
  return range.low.family == Family::v4 ? "fp_by_source4" : "fp_by_source6";
}

std::string entry_text(const SourceEntry& entry) {
  return range_text(entry.range) + " : " + (entry.chain.empty() ? "return" : "goto " + entry.chain);
}

// One sandbox's chain (and sets) created or replaced; the chain exists once this ran.
void write_chain(Commands& out, const SandboxSets& sandbox) {
  for (bool v4 : {true, false}) {
    if (std::string set = allow_set(sandbox, v4); !set.empty()) {
      out.line("add set", set + " { type " + set_type(v4) + "; flags interval; }");
      out.fill("set", set, allowed_texts(v4 ? sandbox.allow4 : sandbox.allow6));
    }
  }
  out.line("add chain", sandbox.chain);
  out.line("flush chain", sandbox.chain);
  for (const ChainRule& rule : chain_rules(sandbox))
    out.line("add rule", sandbox.chain + " " + rule_text(rule));
}

void write_fast_path(Commands& out, const KernelSets& sets) {
  out.line("flush chain", "fast_path");
  for (const char* rule :
       {"ip daddr @fp_guard4 goto fp_refuse", "ip6 daddr @fp_guard6 goto fp_refuse",
        "ip saddr vmap @fp_by_source4", "ip6 saddr vmap @fp_by_source6"})
    out.line("add rule", std::string("fast_path ") + rule);
  if (sets.refuse_unknown_sources) out.line("add rule", "fast_path goto fp_refuse");
}

}  // namespace

bool same_globals(const KernelSets& a, const KernelSets& b) {
  return a.guard4 == b.guard4 && a.guard6 == b.guard6 && a.inspected == b.inspected &&
         a.refuse_unknown_sources == b.refuse_unknown_sources;
}

TableObjects listed_objects(std::string_view listing) {
  TableObjects found;
  for (size_t at = 0; at < listing.size();) {
    size_t end = listing.find('\n', at);
    if (end == std::string_view::npos) end = listing.size();
    std::string_view line = listing.substr(at, end - at);
    at = end + 1;
    while (!line.empty() && (line.front() == ' ' || line.front() == '\t')) line.remove_prefix(1);
    for (auto [keyword, list] :
         {std::pair("chain fp_sb_", &found.chains), std::pair("set fp_sb_", &found.sets)}) {
      std::string_view word(keyword);
      if (line.substr(0, word.size()) != word) continue;
      std::string_view name = line.substr(word.find("fp_sb_"));
      name = name.substr(0, name.find(' '));
      list->emplace_back(name);
    }
  }
  return found;
}

std::string nft_fill(const KernelSets& sets, std::string_view table, const TableObjects& existing) {
  Commands out{std::string(table), {}};
  // Nothing references a sandbox chain once fast_path and the maps are empty, and nothing a
  // sandbox set once its chain is: then both can go.
  out.line("flush chain", "fast_path");
  out.line("flush map", "fp_by_source4");
  out.line("flush map", "fp_by_source6");
  for (const std::string& chain : existing.chains) out.line("flush chain", chain);
  for (const std::string& chain : existing.chains) out.line("delete chain", chain);
  for (const std::string& set : existing.sets) out.line("delete set", set);
  out.fill("set", "fp_guard4", range_texts(sets.guard4));
  out.fill("set", "fp_guard6", range_texts(sets.guard6));
  std::vector<std::string> ports;
  for (uint16_t port : sets.inspected) ports.push_back(std::to_string(port));
  out.fill("set", "fp_inspected", ports);
  for (const auto& sandbox : sets.sandboxes) write_chain(out, *sandbox);
  std::vector<std::string> v4, v6;
  for (const SourceEntry& entry : source_entries(sets))
    (entry.range.low.family == Family::v4 ? v4 : v6).push_back(entry_text(entry));
  out.fill("map", "fp_by_source4", v4);
  out.fill("map", "fp_by_source6", v6);
  write_fast_path(out, sets);
  return out.text;
}

// A walk of both sandbox lists in chain order: a sandbox the compile reused (the same object)
// costs a pointer comparison, so a change at 10,000 sandboxes plans in well under a
// millisecond. A source that moves between sandboxes leaves with one and enters with the other.
ChangePlan plan_change(const KernelSets& loaded, const KernelSets& next) {
  ChangePlan plan;
  auto has = [](const std::vector<AddressRange>& list, const AddressRange& range) {
    return std::find(list.begin(), list.end(), range) != list.end();
  };
  auto sources_of = [&](const SandboxSets* before, const SandboxSets* after) {
    if (before)
      for (const AddressRange& source : before->sources)
        if (!after || !has(after->sources, source)) plan.leave.push_back({source, before->chain});
    if (after)
      for (const AddressRange& source : after->sources)
        if (!before || !has(before->sources, source)) plan.enter.push_back({source, after->chain});
  };
  const auto& old_list = loaded.sandboxes;
  const auto& new_list = next.sandboxes;
  for (size_t i = 0, j = 0; i < old_list.size() || j < new_list.size();) {
    const SandboxSets* before = i < old_list.size() ? old_list[i].get() : nullptr;
    const SandboxSets* after = j < new_list.size() ? new_list[j].get() : nullptr;
    if (before && after && before->chain == after->chain) {
      ++i, ++j;
      if (before == after) continue;
      sources_of(before, after);
      if (before->allow4 == after->allow4 && before->allow6 == after->allow6 &&
          before->connection_limit == after->connection_limit)
        continue;
      plan.written.push_back(after);
      for (bool v4 : {true, false}) {
        std::string had = allow_set(*before, v4);
        if (!had.empty() && allow_set(*after, v4).empty()) plan.sets_dropped.push_back(had);
      }
    } else if (before && (!after || before->chain < after->chain)) {
      ++i;
      sources_of(before, nullptr);
      plan.gone.push_back(before);
    } else {
      ++j;
      sources_of(nullptr, after);
      plan.written.push_back(after);
    }
  }
  // The proxy's sandboxes: their sources map to `return`.
  auto key = [](const AddressRange& r) {
    return std::tuple(r.low.family, r.low.bits, r.high.bits);
  };
  std::map<decltype(key(AddressRange{})), AddressRange> old_proxied, new_proxied;
  for (const ProxiedSandbox& sandbox : loaded.proxied)
    for (const AddressRange& source : sandbox.sources) old_proxied[key(source)] = source;
  for (const ProxiedSandbox& sandbox : next.proxied)
    for (const AddressRange& source : sandbox.sources) new_proxied[key(source)] = source;
  for (const auto& [k, source] : old_proxied)
    if (!new_proxied.count(k)) plan.leave.push_back({source, {}});
  for (const auto& [k, source] : new_proxied)
    if (!old_proxied.count(k)) plan.enter.push_back({source, {}});
  return plan;
}

bool ChangePlan::uses_sets() const {
  if (!sets_dropped.empty()) return true;
  for (const auto* list : {&gone, &written})
    for (const SandboxSets* sandbox : *list)
      if (has_set(*sandbox)) return true;
  return false;
}

std::string nft_change(const ChangePlan& plan, std::string_view table) {
  Commands out{std::string(table), {}};
  // 1. Sources that go or change their verdict leave the maps.
  for (const SourceEntry& entry : plan.leave)
    out.line("delete element",
             std::string(source_map(entry.range)) + " { " + range_text(entry.range) + " }");
  // 2. Chains that go: all emptied first (their sets unreferenced), then deleted with their sets.
  for (const SandboxSets* sandbox : plan.gone) out.line("flush chain", sandbox->chain);
  for (const SandboxSets* sandbox : plan.gone) {
    out.line("delete chain", sandbox->chain);
    for (bool v4 : {true, false})
      if (std::string set = allow_set(*sandbox, v4); !set.empty()) out.line("delete set", set);
  }
  // 3. Chains that are new or changed: written again; a set the new rules no longer use goes.
  for (const SandboxSets* sandbox : plan.written) write_chain(out, *sandbox);
  for (const std::string& set : plan.sets_dropped) out.line("delete set", set);
  // 4. Sources that are new or changed enter the maps.
  for (const SourceEntry& entry : plan.enter)
    out.line("add element",
             std::string(source_map(entry.range)) + " { " + entry_text(entry) + " }");
  return out.text;
}

std::string nft_change(const KernelSets& loaded, const KernelSets& next, std::string_view table) {
  return nft_change(plan_change(loaded, next), table);
}

std::string nft_skeleton(std::string_view table, const std::vector<std::string>& interfaces,
                         uint32_t mark, uint16_t log_group) {
  char mark_text[16];
  std::snprintf(mark_text, sizeof(mark_text), "0x%x", mark);
  const std::string m(mark_text), name(table);
  std::string out = "table inet " + name + " {}\ndelete table inet " + name + "\n";
  out += "table inet " + name + " {\n";
  out += "  set fp_mark { type mark; elements = { " + m + " } }\n";
  out += "  set fp_guard4 { type ipv4_addr; flags interval; }\n";
  out += "  set fp_guard6 { type ipv6_addr; flags interval; }\n";
  out += "  set fp_inspected { type inet_service; }\n";
  out += "  map fp_by_source4 { type ipv4_addr : verdict; flags interval; }\n";
  out += "  map fp_by_source6 { type ipv6_addr : verdict; flags interval; }\n";
  out += "  counter fp_unlogged { }\n";
  out +=
      "  chain fp_refuse { limit rate over 2000/second burst 2000 packets counter name "
      "\"fp_unlogged\" reject with tcp reset; log group " +
      std::to_string(log_group) + "; reject with tcp reset; }\n";
  out +=
      "  chain fp_limit { limit rate over 2000/second burst 2000 packets counter name "
      "\"fp_unlogged\" reject with tcp reset; log prefix \"connection_limit\" group " +
      std::to_string(log_group) + "; reject with tcp reset; }\n";
  out +=
      "  ct timeout fp_close4 { protocol tcp; l3proto ip; policy = { time_wait: 1, close: 1 }; }\n"
      "  ct timeout fp_close6 { protocol tcp; l3proto ip6; policy = { time_wait: 1, close: 1 }; "
      "}\n";
  out +=
      "  chain fp_allow { meta nfproto ipv4 ct timeout set \"fp_close4\"; meta nfproto ipv6 "
      "ct timeout set \"fp_close6\"; ct mark set ct mark | " +
      m + " meta mark set meta mark | " + m + " accept; }\n";
  out += "  chain fast_path { }\n";
  if (!interfaces.empty()) {
    out += "  chain prerouting {\n    type filter hook prerouting priority -160; policy accept;\n";
    out += "    iifname != { ";
    for (size_t i = 0; i < interfaces.size(); ++i)
      out += (i ? ", \"" : "\"") + interfaces[i] + "\"";
    out += " } return\n";
    out += "    meta l4proto tcp ct direction original ct mark & " + m + " == " + m +
           " meta mark set meta mark | " + m + " accept\n";
    out += "    tcp flags & (syn | ack) == syn jump fast_path\n  }\n";
  }
  out += "}\n";
  return out;
}

std::string nft_clear(std::string_view table) {
  return "flush chain inet " + std::string(table) + " fast_path\n";
}

}  // namespace egressd
