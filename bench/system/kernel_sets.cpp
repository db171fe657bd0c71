// Loads the kernel fast-path table of a configuration (or of N generated sandboxes x 100
// rules) into nftables through libnftables, times the compile and the transactions (whole
// table, one sandbox's chain), and checks sampled points of the compiled allow lists against
// the proxy's decide(); what the kernel then does with real packets is the e2e test's part.
// Prints one JSON line. Run inside a network namespace made for it
// (bench/system/kernel_sets.py, tests/e2e): it creates table inet TABLE.
//
// usage: kernel_sets (--config FILE | --generate N) --table NAME [--check N] [--keep]
//                    [--iface IF]... [--print] [--compare ROUNDS]
// --iface: with the table's base chain (refusals at SYN); --print: the transaction, not loaded;
// --compare: ROUNDS random policy changes applied to the table through nft text and to a twin
// (NAME_nl) through netlink batches (kernel/nft_netlink.hpp); after each, both listings must
// be the same (differences are counted and the first shown). --netlink-only: the table filled
// only as egressd fills it (one netlink batch), without the nft text fill and replacement.
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <random>
#include <string>
#include <variant>
#include <vector>

#include "config/config.hpp"
#include "kernel/fast_path_sets.hpp"
#include "kernel/netfilter.hpp"
#include "kernel/nft_netlink.hpp"

using namespace egressd;

namespace {

// The shape of bench/system/run.py's scale test: 96 name rules, *.example, two address rules
// with ports and one /24 per sandbox; sandbox 0 is 10.200.1.2.
std::vector<SandboxSpec> generated(size_t count) {
  std::vector<SandboxSpec> specs;
  for (size_t i = 0; i < count; ++i) {
    SandboxSpec spec;
    spec.id = "s" + std::to_string(i);
    spec.sources = {i == 0 ? std::string("10.200.1.2")
                           : "10." + std::to_string(201 + i / 65536) + "." +
                                 std::to_string((i / 256) % 256) + "." + std::to_string(i % 256)};
    for (int r = 0; r < 96; ++r) {
      std::string name =
          "svc" + std::to_string(r) + ".team" + std::to_string(i % 97) + ".corp.test";
      spec.allow.push_back(r % 3 ? name : "*." + name);
    }
    spec.allow.push_back("*.example");
    spec.allow.push_back("198.18.0.10:9000-9002");
    spec.allow.push_back("198.19." + std::to_string(i % 256) + ".0/24");
    spec.allow.push_back("10.0.0.7:5432");
    spec.deny.push_back("denied.example");
    specs.push_back(std::move(spec));
  }
  return specs;
}

double millis_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start)
      .count();
}

IpAddress v4(uint32_t bits) {
  return {Family::v4, bits};
}
IpAddress v6(uint128 bits) {
  return {Family::v6, bits};
}

// One to three random changes of the kind policy updates make: allow lists that grow (past the
// set threshold too) or shrink, sandboxes that arrive, leave, move to the proxy, change their
// sources; sources at the end of the address space once.
KernelSets mutated(const KernelSets& sets, std::mt19937& random, size_t round) {
  KernelSets next = sets;
  auto pick = [&](size_t size) { return static_cast<size_t>(random() % size); };
  // Never overlapping (a set refuses overlaps; compile_kernel_sets makes them disjoint).
  static uint32_t serial = 0;
  auto allowed4 = [&]() {
    uint32_t low = 0x0A640000u + 4 * (serial++ % 16000);  // 10.100.x.y: no generated rule
    uint16_t port = static_cast<uint16_t>(1 + random() % 60000);
    return Allowed{{v4(low), v4(low + random() % 3)},
                   {port, static_cast<uint16_t>(port + random() % 2 * 100)}};
  };
  auto allowed6 = [&]() {
    uint128 low = (uint128(0xfd000198) << 96) + 2 * serial++;  // fd00:198::/32
    uint16_t port = static_cast<uint16_t>(1 + random() % 60000);
    return Allowed{{v6(low), v6(low + random() % 2)}, {port, port}};
  };
  for (size_t changes = 1 + pick(3); changes > 0; --changes) {
    size_t kind = pick(8);
    if (round % 40 == 7 && changes == 1) kind = 7;
    if (next.sandboxes.empty()) kind = 3;
    size_t at = next.sandboxes.empty() ? 0 : pick(next.sandboxes.size());
    // Compiled sandboxes are shared and constant: a changed one is a new object.
    auto copy = next.sandboxes.empty() ? std::make_shared<SandboxSets>()
                                       : std::make_shared<SandboxSets>(*next.sandboxes[at]);
    SandboxSets& some = *copy;
    if (!next.sandboxes.empty()) next.sandboxes[at] = copy;
    uint32_t unique = static_cast<uint32_t>(round * 4 + changes);
    switch (kind) {
      case 0:  // v4 allow list: one more (often: past 16, then a set) or one fewer
        if (!some.allow4.empty() && random() % 3 == 0)
          some.allow4.pop_back();
        else
          for (size_t n = random() % 2 ? 1 : 14; n > 0; --n) some.allow4.push_back(allowed4());
        break;
      case 1:
        if (!some.allow6.empty() && random() % 2)
          some.allow6.pop_back();
        else
          some.allow6.push_back(allowed6());
        // and its connection limit (the connlimit rule) changed, now and then dropped
        some.connection_limit = random() % 4 ? static_cast<uint32_t>(1 + random() % 100000) : 0;
        break;
      case 2:
        next.sandboxes.erase(next.sandboxes.begin() + static_cast<std::ptrdiff_t>(at));
        break;
      case 3: {
        SandboxSets fresh;
        fresh.id = "new" + std::to_string(unique);
        fresh.chain = "fp_sb_new" + std::to_string(unique);
        fresh.sources = {{v4(0x0ADC0000u + unique), v4(0x0ADC0000u + unique)}};  // 10.220.x.y
        if (random() % 2) {
          uint128 base = (uint128(0xfd000220) << 96) + (uint128(unique) << 8);
          fresh.sources.push_back({v6(base), v6(base + 255)});
        }
        fresh.allow4 = {allowed4()};
        if (random() % 2) fresh.allow6 = {allowed6()};
        fresh.connection_limit = 4096;
        next.sandboxes.push_back(std::make_shared<SandboxSets>(std::move(fresh)));
        break;
      }
      case 4:  // audit mode or a gateway: the proxy decides it
        next.proxied.push_back({some.id, some.sources});
        next.sandboxes.erase(next.sandboxes.begin() + static_cast<std::ptrdiff_t>(at));
        break;
      case 5:
        if (!next.proxied.empty())
          next.proxied.erase(next.proxied.begin() + pick(next.proxied.size()));
        break;
      case 6:  // new sources (10.221.x.y/28)
        some.sources = {{v4(0x0ADD0000u + unique * 16), v4(0x0ADD0000u + unique * 16 + 15)}};
        break;
      default:  // the last addresses of both families (every 40th round)
      {
        some.sources = {{v4(0xFFFFFFF0u), v4(0xFFFFFFFFu)},
                        {v6(~uint128(0) - 15), v6(~uint128(0))}};
        for (auto& other : next.sandboxes) {  // no one else holds them
          if (other.get() == &some) continue;
          auto changed = std::make_shared<SandboxSets>(*other);
          std::erase_if(changed->sources, [](const AddressRange& r) {
            return r.high == v4(0xFFFFFFFFu) || r.high == v6(~uint128(0));
          });
          if (changed->sources != other->sources) other = changed;
        }
        for (ProxiedSandbox& other : next.proxied)
          std::erase_if(other.sources, [](const AddressRange& r) {
            return r.high == v4(0xFFFFFFFFu) || r.high == v6(~uint128(0));
          });
      } break;
    }
  }
  std::sort(next.sandboxes.begin(), next.sandboxes.end(),
            [](const auto& a, const auto& b) { return a->chain < b->chain; });
  return next;
}

}  // namespace

int main(int argc, char** argv) {
  std::string config_path, table;
  size_t generate = 0, checks = 0, compare_rounds = 0;
  bool keep = false, print = false;     // --print: the transaction on stdout, nothing loaded
  std::vector<std::string> interfaces;  // --iface: with the base chain (refusals at SYN)
  bool netlink_only = false;            // --netlink-only: no nft text fills (the e2e test's)
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    const char* value = i + 1 < argc ? argv[i + 1] : nullptr;
    if (arg == "--config" && value)
      config_path = value, ++i;
    else if (arg == "--generate" && value)
      generate = std::stoul(value), ++i;
    else if (arg == "--table" && value)
      table = value, ++i;
    else if (arg == "--check" && value)
      checks = std::stoul(value), ++i;
    else if (arg == "--keep")
      keep = true;
    else if (arg == "--print")
      print = true;
    else if (arg == "--iface" && value)
      interfaces.push_back(value), ++i;
    else if (arg == "--compare" && value)
      compare_rounds = std::stoul(value), ++i;
    else if (arg == "--netlink-only")
      netlink_only = true;
    else {
      std::cerr << "usage: kernel_sets (--config FILE | --generate N) --table NAME [--check N] "
                   "[--keep] [--iface IF]... [--print] [--compare ROUNDS] [--netlink-only]\n";
      return 2;
    }
  }
  if (table.empty() || (config_path.empty() == (generate == 0))) {
    std::cerr << "kernel_sets: --table and one of --config, --generate\n";
    return 2;
  }
  Config config;
  if (!config_path.empty()) {
    auto loaded = load_config(config_path);
    if (auto* errors = std::get_if<std::vector<std::string>>(&loaded)) {
      for (const auto& line : *errors) std::cerr << line << "\n";
      return 2;
    }
    config = std::get<Config>(loaded);
  } else {
    config.sandboxes = generated(generate);
  }
  PolicyStore store;
  std::set<std::string> gateway_names;
  for (const auto& [name, gateway] : config.gateways) gateway_names.insert(name);
  store.set_gateways(gateway_names);
  auto started = std::chrono::steady_clock::now();
  if (auto error = store.replace_all(config.sandboxes)) {
    std::cerr << "kernel_sets: " << error->error.field << ": " << error->error.message << "\n";
    return 2;
  }
  double store_ms = millis_since(started);
  Guard guard = std::get<Guard>(Guard::compile(config.guard_deny, config.guard_allow));
  std::vector<uint16_t> inspected = config.inspect.tls;
  inspected.insert(inspected.end(), config.inspect.http.begin(), config.inspect.http.end());
  auto snapshot = store.snapshot();

  started = std::chrono::steady_clock::now();
  uint32_t limit = config.limits.max_connections_per_sandbox;
  KernelSets sets =
      compile_kernel_sets(*snapshot, guard, config.unknown_source, inspected, nullptr, limit);
  double compile_ms = millis_since(started);
  // What a policy change costs before any transaction: the compile that reuses every unchanged
  // sandbox, and the plan of what changed (nothing, here).
  started = std::chrono::steady_clock::now();
  KernelSets again =
      compile_kernel_sets(*snapshot, guard, config.unknown_source, inspected, &sets, limit);
  double recompile_ms = millis_since(started);
  started = std::chrono::steady_clock::now();
  bool nothing = plan_change(sets, again).empty();
  double plan_ms = millis_since(started);
  if (!nothing) {
    std::cerr << "kernel_sets: compiling the same store again changed the table\n";
    return 1;
  }
  started = std::chrono::steady_clock::now();
  // What firewall.sh --fast-path declares, then egressd's fill of it.
  std::string skeleton = nft_skeleton(table, interfaces);
  std::string transaction = nft_fill(sets, table, {});
  double text_ms = millis_since(started);

  if (print) {
    std::fwrite(skeleton.data(), 1, skeleton.size(), stdout);
    std::fwrite(transaction.data(), 1, transaction.size(), stdout);
    return 0;
  }
  Nft nft;
  std::string out;
  if (!(out = nft.run(skeleton)).empty()) {
    std::cerr << "kernel_sets: the table was refused: " << out.substr(0, 2000);
    return 1;
  }
  // The first fill, then a whole replacement of it (atomic), as egressd's start does.
  double load_ms[2] = {0, 0};
  for (double& ms : load_ms) {
    if (netlink_only) break;  // the fill below, as egressd does it
    started = std::chrono::steady_clock::now();
    if (&ms == &load_ms[1]) {
      std::string listing;
      nft.run("list table inet " + table + "\n", &listing);
      transaction = nft_fill(sets, table, listed_objects(listing));
    }
    if (!(out = nft.run(transaction)).empty()) {
      std::cerr << "kernel_sets: the transaction was refused: " << out.substr(0, 2000);
      nft.run("delete table inet " + table);
      return 1;
    }
    ms = millis_since(started);
  }
  // The replacement as egressd sends it when no sandbox has a set: one netlink batch.
  double replace_netlink_ms = 0;
  if (!sets.any_set()) {
    started = std::chrono::steady_clock::now();
    if (!(out = nft_fill_netlink(sets, table)).empty()) {
      std::cerr << "kernel_sets: the netlink fill was refused: " << out << "\n";
      nft.run("delete table inet " + table);
      return 1;
    }
    replace_netlink_ms = millis_since(started);
  }

  // One sandbox's change: its chain (and set) written again, what a PUT sends, through nft
  // text and as egressd sends it (a netlink batch), each there and back.
  double one_sandbox_ms = 0, one_sandbox_netlink_ms = 0;
  if (!sets.sandboxes.empty() && !sets.sandboxes.front()->allow4.empty()) {
    KernelSets changed = sets;
    auto first = std::make_shared<SandboxSets>(*sets.sandboxes.front());
    first->allow4.pop_back();
    changed.sandboxes.front() = first;
    for (bool netlink : {false, true}) {
      started = std::chrono::steady_clock::now();
      if (!(out = netlink ? nft_apply(plan_change(sets, changed), table)
                          : nft.run(nft_change(sets, changed, table)))
               .empty()) {
        std::cerr << "kernel_sets: a one-sandbox change was refused: " << out << "\n";
        return 1;
      }
      (netlink ? one_sandbox_netlink_ms : one_sandbox_ms) = millis_since(started);
      if (!(out = nft.run(nft_change(changed, sets, table))).empty()) {  // and back
        std::cerr << "kernel_sets: undoing the one-sandbox change was refused: " << out;
        return 1;
      }
    }
  }
  // Random changes through both paths, listings compared (each path's own table).
  size_t compared = 0, differences = 0, netlink_changes = 0;
  if (compare_rounds) {
    std::string twin = table + "_nl";
    // The twin is filled as egressd fills it (a netlink batch, when no sandbox has a set).
    if (!(out = nft.run(nft_skeleton(twin, {}))).empty() ||
        !(out = sets.any_set() ? nft.run(nft_fill(sets, twin, {})) : nft_fill_netlink(sets, twin))
             .empty()) {
      std::cerr << "kernel_sets: the twin table was refused: " << out.substr(0, 2000);
      return 1;
    }
    auto listing = [&](const std::string& name) {
      std::string text;
      nft.run("list table inet " + name + "\n", &text);
      size_t at = text.find("table inet " + name + " {");
      return at == std::string::npos ? text : text.substr(at + 11 + name.size());
    };
    auto compare = [&](const std::string& when, const std::string& what) {
      ++compared;
      if (std::string a = listing(table), b = listing(twin); a != b && ++differences == 1)
        std::cerr << when << ": the listings differ\n--- nft text:\n"
                  << a.substr(0, 4000) << "\n--- netlink:\n"
                  << b.substr(0, 4000) << "\n"
                  << what;
    };
    compare("the first fill", "");
    std::mt19937 random(7);
    KernelSets current = sets;
    for (size_t round = 0; round < compare_rounds; ++round) {
      KernelSets next = mutated(current, random, round);
      ChangePlan plan = plan_change(current, next);
      std::string problem = nft.run(nft_change(plan, table));
      if (problem.empty())
        problem = plan.uses_sets() ? nft.run(nft_change(plan, twin)) : nft_apply(plan, twin);
      if (!problem.empty()) {
        std::cerr << "kernel_sets: round " << round << " was refused: " << problem << "\n"
                  << nft_change(plan, table);
        nft.run("delete table inet " + twin);
        return 1;
      }
      netlink_changes += !plan.uses_sets() && !plan.empty();
      compare("round " + std::to_string(round), nft_change(plan, table));
      current = std::move(next);
    }
    // A whole refill over what the rounds left (their chains and sets removed first), each
    // path's way; long allow lists cut to 16 so that the netlink fill may take it.
    for (auto& sandbox : current.sandboxes) {
      if (!has_set(*sandbox)) continue;
      auto shorter = std::make_shared<SandboxSets>(*sandbox);
      shorter->allow4.resize(std::min<size_t>(shorter->allow4.size(), 16));
      shorter->allow6.resize(std::min<size_t>(shorter->allow6.size(), 16));
      sandbox = shorter;
    }
    std::string text_listing;
    nft.run("list table inet " + table + "\n", &text_listing);
    if (!(out = nft.run(nft_fill(current, table, listed_objects(text_listing)))).empty() ||
        !(out = nft_fill_netlink(current, twin)).empty()) {
      std::cerr << "kernel_sets: the refill was refused: " << out.substr(0, 2000) << "\n";
      nft.run("delete table inet " + twin);
      return 1;
    }
    compare("the refill", "");
    nft.run("delete table inet " + twin);
  }
  // Sampled points: the kernel's answer must be the compiled element's, and that the proxy's.
  std::vector<IpAddress> sources;
  snapshot->for_each([&](const Sandbox& sandbox) {
    for (const IpPrefix& prefix : sandbox.sources)
      if (prefix.address.family == Family::v4) sources.push_back(prefix.address);
  });
  std::vector<IpAddress> destinations;
  for (const char* text :
       {"198.18.0.10", "198.18.0.9", "198.18.0.11", "10.0.0.7", "10.0.0.8", "198.19.0.1",
        "198.19.7.255", "198.19.200.3", "169.254.169.254", "127.0.0.1", "8.8.8.8"})
    destinations.push_back(*IpAddress::parse(text));
  const uint16_t ports[] = {1, 22, 5431, 5432, 5433, 8999, 9000, 9001, 9002, 9003, 65535};
  std::mt19937 random(1);
  size_t checked = 0, mismatches = 0, allowed_points = 0;
  for (size_t i = 0; i < checks && !sources.empty(); ++i) {
    IpAddress source = sources[random() % sources.size()];
    IpAddress destination = destinations[random() % destinations.size()];
    uint16_t port = ports[random() % std::size(ports)];
    if (port == 80 || port == 443) continue;
    // The library's own evaluation of the sets (steps 1-4) against the proxy's full decision.
    std::optional<Verdict> kernel = kernel_verdict(sets, source, destination, port);
    if (!kernel) continue;  // left to the proxy
    bool compiled = *kernel == Verdict::allow;
    allowed_points += compiled;
    DecisionInput input;
    input.destination = destination;
    input.port = port;
    const Sandbox* sandbox = snapshot->find_by_source(source);
    bool proxy =
        decide(guard, sandbox ? sandbox->policy.get() : nullptr, config.unknown_source, input)
            .verdict == Verdict::allow;
    ++checked;
    if (compiled != proxy && ++mismatches <= 5)
      std::cerr << "mismatch: " << source.to_string() << " -> " << destination.to_string() << ":"
                << port << " compiled " << compiled << " proxy " << proxy << "\n";
  }
  if (!keep) nft.run("delete table inet " + table);
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  std::printf(
      "{\"sandboxes\": %zu, \"in_kernel\": %zu, \"left_to_proxy\": %zu, "
      "\"allow_elements\": %zu, \"guard4\": %zu, \"sources4\": %zu, \"store_ms\": %.1f, "
      "\"compile_ms\": %.1f, \"recompile_ms\": %.1f, \"plan_ms\": %.1f, \"text_ms\": %.1f, "
      "\"text_bytes\": %zu, \"first_load_ms\": %.1f, "
      "\"replace_ms\": %.1f, \"replace_netlink_ms\": %.1f, \"one_sandbox_ms\": %.2f, "
      "\"one_sandbox_netlink_ms\": %.2f, "
      "\"max_rss_kib\": %ld, \"checked\": %zu, \"allowed_points\": %zu, \"mismatches\": %zu, "
      "\"compared\": %zu, \"netlink_changes\": %zu, \"differences\": %zu}\n",
      snapshot->size(), sets.sandboxes.size(), sets.proxied.size(), sets.allow_elements(),
      sets.guard4.size(), sets.sources4.size(), store_ms, compile_ms, recompile_ms, plan_ms,
      text_ms, transaction.size(), load_ms[0], load_ms[1], replace_netlink_ms, one_sandbox_ms,
      one_sandbox_netlink_ms, usage.ru_maxrss, checked, allowed_points, mismatches, compared,
      netlink_changes, differences);
  return mismatches == 0 && differences == 0 ? 0 : 1;
}
