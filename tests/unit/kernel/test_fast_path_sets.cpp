#include <doctest/doctest.h>

#include <random>

#include "kernel/fast_path_sets.hpp"

using namespace egressd;

namespace {

SandboxSpec spec(std::string id, std::vector<std::string> sources, std::vector<std::string> allow,
                 std::vector<std::string> deny = {}, Verdict fallback = Verdict::deny) {
  SandboxSpec s;
  s.id = std::move(id);
  s.sources = std::move(sources);
  s.allow = std::move(allow);
  s.deny = std::move(deny);
  s.default_verdict = fallback;
  return s;
}

IpAddress ip(const char* text) {
  return *IpAddress::parse(text);
}

const std::vector<uint16_t> kInspected = {80, 443};

// The proxy's decision for a fast-path connection (what Session::decide_now computes).
Verdict proxy_verdict(const StoreSnapshot& store, const Guard& guard, Verdict unknown,
                      const IpAddress& source, const IpAddress& destination, uint16_t port) {
  const Sandbox* sandbox = store.find_by_source(source);
  DecisionInput input;
  input.destination = destination;
  input.port = port;
  return decide(guard, sandbox ? sandbox->policy.get() : nullptr, unknown, input).verdict;
}

}  // namespace

TEST_CASE("Kernel sets: every point the kernel decides, it decides as the proxy does") {
  PolicyStore store;
  std::vector<SandboxSpec> specs = {
      spec("a", {"10.200.1.2", "fd00:200:1::2"},
           {"198.18.0.10:9000-9002", "198.18.0.0/24:22", "[fd00:198::/48]:9000", "*.example"},
           {"198.18.0.128/25"}),
      spec("b", {"10.200.2.0/24"}, {"0.0.0.0/0", "::/0"}, {"198.18.0.0/16:25", "198.19.0.0/16"},
           Verdict::deny),
      spec("c", {"10.200.3.0/28", "fd00:200:3::/64"}, {"*:22", "198.18.0.10"}, {"198.18.0.10:23"},
           Verdict::allow),
      spec("d", {"10.200.4.9"}, {}, {}, Verdict::deny),
  };
  auto refused = store.replace_all(specs);
  REQUIRE_MESSAGE(!refused, (refused ? refused->error.field + ": " + refused->error.message : ""));
  Guard guard = std::get<Guard>(Guard::compile({"198.18.7.0/24"}));
  auto snapshot = store.snapshot();
  for (Verdict unknown : {Verdict::deny, Verdict::allow}) {
    KernelSets sets = compile_kernel_sets(*snapshot, guard, unknown, kInspected);
    CHECK(sets.sandboxes.size() == 4);
    CHECK(sets.proxied.empty());
    std::mt19937 random(7);
    const std::vector<const char*> sources = {"10.200.1.2",     "10.200.2.77",  "10.200.3.5",
                                              "10.200.4.9",     "10.200.9.9",   "fd00:200:1::2",
                                              "fd00:200:3::77", "fd00:200:9::1"};
    const std::vector<const char*> destinations = {
        "198.18.0.10",        "198.18.0.9",         "198.18.0.127",  "198.18.0.128",
        "198.18.0.255",       "198.18.1.1",         "198.18.7.1",    "198.19.4.4",
        "169.254.169.254",    "127.0.0.1",          "10.0.0.7",      "0.0.0.0",
        "255.255.255.255",    "fd00:198::10",       "fd00:198:1::1", "::1",
        "::ffff:198.18.0.10", "64:ff9b::a9fe:a9fe", "2001:db8::1"};
    const std::vector<uint16_t> ports = {1,   21,   22,   23,   25,   79,   81,   442,
                                         444, 8999, 9000, 9001, 9002, 9003, 65535};
    size_t decided = 0, proxied = 0;
    for (const char* source_text : sources) {
      for (const char* destination_text : destinations) {
        IpAddress source = ip(source_text), destination = ip(destination_text);
        if (source.family != destination.family) continue;
        for (uint16_t port : ports) {
          auto kernel = kernel_verdict(sets, source, destination, port);
          Verdict proxy = proxy_verdict(*snapshot, guard, unknown, source, destination, port);
          if (!kernel) {
            ++proxied;
            // Only where the kernel may not decide: a source of no sandbox (unknown_source
            // allow) or an IPv4-mapped destination.
            bool mapped = destination.family == Family::v6 && destination.unmapped() != destination;
            bool unknown_allowed = unknown == Verdict::allow && !snapshot->find_by_source(source);
            CHECK_MESSAGE((mapped || unknown_allowed),
                          source_text << " -> " << destination_text << ":" << port);
            continue;
          }
          ++decided;
          CHECK_MESSAGE(*kernel == proxy, source_text << " -> " << destination_text << ":" << port);
        }
      }
    }
    CHECK(decided > 500);
    // Random points across the whole IPv4 space and every port, the same comparison.
    std::uniform_int_distribution<uint32_t> any32;
    std::uniform_int_distribution<int> any_port(1, 65535);
    for (int i = 0; i < 20000; ++i) {
      IpAddress source = ip(sources[i % 5]);
      IpAddress destination{Family::v4, any32(random) & (i % 2 ? 0xFFFFFFFFu : 0xC612FFFFu)};
      auto port = static_cast<uint16_t>(any_port(random));
      if (port == 80 || port == 443) continue;
      auto kernel = kernel_verdict(sets, source, destination, port);
      if (!kernel) {
        CHECK((unknown == Verdict::allow && snapshot->find_by_source(source) == nullptr));
        continue;
      }
      CHECK(*kernel == proxy_verdict(*snapshot, guard, unknown, source, destination, port));
    }
  }
}

TEST_CASE("Kernel sets: intervals are disjoint and inspected ports never in them") {
  PolicyStore store;
  REQUIRE_FALSE(store.replace_all(
      {spec("a", {"10.200.1.0/25", "10.200.1.128/25"}, {"198.18.0.0/15", "198.18.0.0/24:443"})}));
  auto sets = compile_kernel_sets(*store.snapshot(), std::get<Guard>(Guard::compile({})),
                                  Verdict::deny, kInspected);
  REQUIRE(sets.sandboxes.size() == 1);
  const auto& allow = sets.sandboxes[0]->allow4;
  REQUIRE_FALSE(allow.empty());
  for (size_t i = 0; i < allow.size(); ++i) {
    CHECK_FALSE(allow[i].ports.contains(80));
    CHECK_FALSE(allow[i].ports.contains(443));
    for (size_t j = i + 1; j < allow.size(); ++j) {
      bool addresses = allow[i].destination.low.bits <= allow[j].destination.high.bits &&
                       allow[j].destination.low.bits <= allow[i].destination.high.bits;
      bool ports =
          allow[i].ports.low <= allow[j].ports.high && allow[j].ports.low <= allow[i].ports.high;
      CHECK_FALSE((addresses && ports));
    }
  }
  // Merged: one allowed /15 is three port runs (around 80 and 443); its /24:443 adds nothing.
  CHECK(allow.size() == 3);
  CHECK(sets.sources4.size() == 1);  // the two halves, adjacent: one range
  CHECK(sets.allow_elements() == 3);
}

TEST_CASE("Kernel sets: audit and gateway sandboxes stay with the proxy") {
  PolicyStore store;
  store.set_gateways({"gw"});
  auto audit = spec("audit", {"10.200.1.2"}, {"198.18.0.10"});
  audit.mode = Mode::audit;
  auto gateway = spec("gw-user", {"10.200.1.3"}, {"198.18.0.10"});
  gateway.gateway = "gw";
  REQUIRE_FALSE(store.replace_all({audit, gateway, spec("plain", {"10.200.1.4"}, {})}));
  auto sets = compile_kernel_sets(*store.snapshot(), std::get<Guard>(Guard::compile({})),
                                  Verdict::deny, kInspected);
  CHECK(sets.sandboxes.size() == 1);
  CHECK(sets.proxied.size() == 2);
  CHECK_FALSE(kernel_verdict(sets, ip("10.200.1.2"), ip("198.18.0.99"), 9000));  // proxy
  CHECK_FALSE(kernel_verdict(sets, ip("10.200.1.3"), ip("198.18.0.10"), 9000));  // proxy
  CHECK(kernel_verdict(sets, ip("10.200.1.4"), ip("198.18.0.10"), 9000) == Verdict::deny);
  // The guard holds for all of them, audit included, and for unknown sources.
  CHECK(kernel_verdict(sets, ip("10.200.1.2"), ip("169.254.169.254"), 9000) == Verdict::deny);
  CHECK(kernel_verdict(sets, ip("10.200.9.9"), ip("198.18.0.10"), 9000) == Verdict::deny);
}

TEST_CASE("Kernel sets: a fill removes what was there, then writes every set, chain and map") {
  PolicyStore store;
  REQUIRE_FALSE(store.replace_all(
      {spec("a", {"10.200.1.2", "fd00:200:1::2"}, {"198.18.0.10:9000-9002", "fd00:198::10"})}));
  auto sets = compile_kernel_sets(*store.snapshot(), std::get<Guard>(Guard::compile({})),
                                  Verdict::deny, kInspected);
  TableObjects stale = listed_objects(
      "table inet egressd {\n\tset fp_sb_00000000000000aa_4 {\n\t\ttype ipv4_addr . inet_service\n"
      "\t}\n\tchain fp_sb_00000000000000aa {\n\t}\n\tchain sandbox {\n\t}\n}\n");
  REQUIRE(stale.chains == std::vector<std::string>{"fp_sb_00000000000000aa"});
  REQUIRE(stale.sets == std::vector<std::string>{"fp_sb_00000000000000aa_4"});
  std::string text = nft_fill(sets, "egressd", stale);
  // The stale chain is emptied before it is deleted, and deleted before its set.
  CHECK(text.find("flush chain inet egressd fast_path\n") == 0);
  CHECK(text.find("flush chain inet egressd fp_sb_00000000000000aa\n") <
        text.find("delete chain inet egressd fp_sb_00000000000000aa\n"));
  CHECK(text.find("delete chain inet egressd fp_sb_00000000000000aa\n") <
        text.find("delete set inet egressd fp_sb_00000000000000aa_4\n"));
  const std::string chain = sets.sandboxes[0]->chain;
  CHECK(chain.rfind("fp_sb_", 0) == 0);
  CHECK(text.find("add rule inet egressd " + chain +
                  " ip daddr 198.18.0.10 tcp dport 9000-9002 goto fp_allow\n") !=
        std::string::npos);
  CHECK(text.find("add rule inet egressd " + chain +
                  " ip6 daddr fd00:198::10 tcp dport 1-79 goto fp_allow\n") != std::string::npos);
  CHECK(text.find("add rule inet egressd " + chain + " goto fp_refuse\n") != std::string::npos);
  CHECK(text.find("169.254.0.0-169.254.255.255") != std::string::npos);  // the guard's floor
  CHECK(text.find("add element inet egressd fp_by_source4 { 10.200.1.2 : goto " + chain + " }") !=
        std::string::npos);
  CHECK(text.find("add element inet egressd fp_inspected { 80, 443 }") != std::string::npos);
  // fast_path is written last, so nothing refers to a chain before it exists.
  CHECK(text.rfind("add rule inet egressd fast_path goto fp_refuse\n") ==
        text.size() - std::string("add rule inet egressd fast_path goto fp_refuse\n").size());
  auto allowing = compile_kernel_sets(*store.snapshot(), std::get<Guard>(Guard::compile({})),
                                      Verdict::allow, kInspected);
  CHECK(nft_fill(allowing, "egressd", {}).find("fast_path goto fp_refuse") == std::string::npos);
  std::string skeleton = nft_skeleton("t", {"eth1"}, 0x40000000);
  CHECK(skeleton.find("set fp_mark { type mark; elements = { 0x40000000 } }") != std::string::npos);
  CHECK(skeleton.find("tcp flags & (syn | ack) == syn jump fast_path") != std::string::npos);
  CHECK(nft_skeleton("t", {}).find("prerouting") == std::string::npos);
}

TEST_CASE("Kernel sets: a change touches only the sandboxes that changed") {
  PolicyStore store;
  std::vector<std::string> many;
  for (int i = 0; i < 20; ++i) many.push_back("198.18.1." + std::to_string(i * 2) + ":22");
  REQUIRE_FALSE(store.replace_all({spec("a", {"10.200.1.2"}, {"198.18.0.10:9000"}),
                                   spec("b", {"10.200.2.0/24"}, many),
                                   spec("c", {"10.200.3.2"}, {"198.18.0.11:9000"})}));
  Guard guard = std::get<Guard>(Guard::compile({}));
  auto before = compile_kernel_sets(*store.snapshot(), guard, Verdict::deny, kInspected);
  CHECK(nft_change(before, before, "egressd").empty());
  // a changes its rules, b moves to audit (proxy) and drops its set, c goes, d arrives.
  auto b_audit = spec("b", {"10.200.2.0/24"}, many);
  b_audit.mode = Mode::audit;
  REQUIRE_FALSE(store.replace_all({spec("a", {"10.200.1.2"}, {"198.18.0.10:9001"}), b_audit,
                                   spec("d", {"10.200.4.2"}, {"198.18.0.12:9000"})}));
  auto after = compile_kernel_sets(*store.snapshot(), guard, Verdict::deny, kInspected, &before);
  REQUIRE(same_globals(before, after));
  auto chain_of = [](const KernelSets& sets, const char* id) {
    for (const auto& s : sets.sandboxes)
      if (s->id == id) return s->chain;
    return std::string();
  };
  std::string a = chain_of(before, "a"), b = chain_of(before, "b"), c = chain_of(before, "c"),
              d = chain_of(after, "d");
  REQUIRE(!a.empty());
  REQUIRE(!d.empty());
  std::string text = nft_change(before, after, "egressd");
  auto at = [&](const std::string& line) { return text.find(line + "\n"); };
  const auto npos = std::string::npos;
  CHECK(at("delete element inet egressd fp_by_source4 { 10.200.3.2 }") != npos);
  CHECK(at("delete element inet egressd fp_by_source4 { 10.200.2.0-10.200.2.255 }") != npos);
  CHECK(at("add element inet egressd fp_by_source4 { 10.200.2.0-10.200.2.255 : return }") != npos);
  CHECK(at("add element inet egressd fp_by_source4 { 10.200.4.2 : goto " + d + " }") != npos);
  CHECK(text.find("10.200.1.2") == npos);  // a's source and verdict did not change
  CHECK(at("flush chain inet egressd " + a) != npos);
  CHECK(at("add rule inet egressd " + a + " ip daddr 198.18.0.10 tcp dport 9001 goto fp_allow") !=
        npos);
  // Gone chains: unreferenced (their map elements deleted first), emptied, then deleted, and a
  // set after its chain.
  CHECK(at("delete element inet egressd fp_by_source4 { 10.200.3.2 }") <
        at("delete chain inet egressd " + c));
  CHECK(at("flush chain inet egressd " + b) < at("delete chain inet egressd " + b));
  CHECK(at("delete chain inet egressd " + b) < at("delete set inet egressd " + b + "_4"));
  CHECK(at("add chain inet egressd " + d) <
        at("add element inet egressd fp_by_source4 { 10.200.4.2 : goto " + d + " }"));
  // Unchanged sandboxes are taken from the previous compile as they were.
  CHECK(after.sandboxes.size() == 2);
  // A change of the guard is a change of globals: a whole fill.
  auto guarded =
      compile_kernel_sets(*store.snapshot(), std::get<Guard>(Guard::compile({"198.18.9.0/24"})),
                          Verdict::deny, kInspected, &after);
  CHECK_FALSE(same_globals(after, guarded));
}

TEST_CASE("Kernel sets: each sandbox chain counts its kernel connections against the limit") {
  PolicyStore store;
  REQUIRE_FALSE(store.replace_all({spec("a", {"10.200.1.2"}, {"198.18.0.10:9000"}),
                                   spec("c", {"10.200.3.2"}, {"198.18.0.11:9000"})}));
  Guard guard = std::get<Guard>(Guard::compile({}));
  auto none = compile_kernel_sets(*store.snapshot(), guard, Verdict::deny, kInspected);
  CHECK(nft_fill(none, "egressd", {}).find("ct count") == std::string::npos);
  auto limited =
      compile_kernel_sets(*store.snapshot(), guard, Verdict::deny, kInspected, &none, 40);
  for (const auto& sandbox : limited.sandboxes) {
    auto rules = chain_rules(*sandbox);
    // After the returns to TPROXY (the proxy counts its own), before any allow or refusal.
    REQUIRE(rules.size() >= 4);
    CHECK(rule_text(rules[2]) == "ct count over 40 goto fp_limit");
  }
  // A new limit is a new rule in every chain: no sandbox is reused unchanged.
  ChangePlan plan = plan_change(none, limited);
  CHECK(plan.written.size() == 2);
  auto again =
      compile_kernel_sets(*store.snapshot(), guard, Verdict::deny, kInspected, &limited, 40);
  CHECK(plan_change(limited, again).empty());
  CHECK(nft_skeleton("t", {}).find("chain fp_limit {") != std::string::npos);
}
