// decide() on a store of 10,000 sandboxes x 100 rules (names, wildcards, prefixes), the
// store's memory, and the time to replace one sandbox's policy with 10,000 loaded.
// Prints figures; targets (DESIGN/issue 1/7): <= 250 ns per decision for a 5-label name,
// <= 200 MB for the store, <= 100 us to replace one sandbox.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include "policy/policy_store.hpp"

using namespace egressd;

namespace {

constexpr int kSandboxes = 10000;
constexpr int kRulesPerSandbox = 100;

SandboxSpec make_sandbox(int index, int variant = 0) {
  SandboxSpec spec;
  spec.id = "sbx-" + std::to_string(index);
  spec.sources = {"10." + std::to_string(200 + index / 65536) + "." +
                  std::to_string((index / 256) % 256) + "." + std::to_string(index % 256)};
  for (int r = 0; r < kRulesPerSandbox; ++r) {
    std::string base =
        "svc" + std::to_string(r + variant) + ".team" + std::to_string(index % 97) + ".example.com";
    switch (r % 5) {
      case 0:
        spec.allow.push_back(base);
        break;
      case 1:
        spec.allow.push_back("*." + base);
        break;
      case 2:
        spec.deny.push_back("." + base + ":8443");
        break;
      case 3:
        spec.allow.push_back("198.18." + std::to_string(r) + ".0/24");
        break;
      case 4:
        spec.deny.push_back("[fd00:198:" + std::to_string(r) + "::/48]:443");
        break;
    }
  }
  spec.deny.push_back("0.0.0.0/0");
  return spec;
}

long rss_kib() {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::stol(line.substr(6));
  }
  return 0;
}

PolicyStore& loaded_store() {
  static PolicyStore* store = [] {
    auto* s = new PolicyStore();  // lives for the whole benchmark process
    long before = rss_kib();
    auto start = std::chrono::steady_clock::now();
    for (int i = 0; i < kSandboxes; ++i) s->put(make_sandbox(i));
    double load_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    long after = rss_kib();
    size_t compiled = 0;
    s->snapshot()->for_each(
        [&](const Sandbox& sandbox) { compiled += sandbox.policy->memory_bytes(); });
    std::printf(
        "store: %d sandboxes x %d rules loaded in %.2f s; RSS +%.1f MB (compiled policies %.1f "
        "MB)\n",
        kSandboxes, kRulesPerSandbox, load_s, (after - before) / 1024.0, compiled / 1e6);
    return s;
  }();
  return *store;
}

const Guard& guard() {
  static Guard g =
      std::get<Guard>(Guard::compile({"169.254.0.0/16", "127.0.0.0/8", "::1/128", "fe80::/10"}));
  return g;
}

void decide_named(benchmark::State& state, const char* name_text, const char* ip) {
  PolicyStore& store = loaded_store();
  SnapshotReader reader(store);
  std::string name = name_text;
  DecisionInput input;
  input.name = &name;
  input.destination = IpAddress::parse(ip);
  input.port = 443;
  auto source = *IpAddress::parse("10.200.19.136");  // sandbox 5000
  for (auto _ : state) {
    const auto& snapshot = reader.get();
    const Sandbox* sandbox = snapshot->find_by_source(source);
    Decision d = decide(guard(), sandbox->policy.get(), Verdict::deny, input);
    benchmark::DoNotOptimize(d);
  }
}

// 5 labels, matched by "*.svc1.team53.example.com" below a deeper name.
void BM_decide_5_labels_wildcard(benchmark::State& state) {
  decide_named(state, "api.svc1.team53.example.com", "198.19.0.1");
}
void BM_decide_5_labels_exact(benchmark::State& state) {
  decide_named(state, "svc0.team53.example.com", "198.19.0.1");
}
void BM_decide_5_labels_no_name_match(benchmark::State& state) {
  decide_named(state, "a.b.c.nowhere.example", "198.18.3.9");
}
void BM_decide_address_only(benchmark::State& state) {
  PolicyStore& store = loaded_store();
  SnapshotReader reader(store);
  DecisionInput input;
  input.destination = IpAddress::parse("198.18.8.9");
  input.port = 5432;
  auto source = *IpAddress::parse("10.200.19.136");
  for (auto _ : state) {
    const Sandbox* sandbox = reader.get()->find_by_source(source);
    benchmark::DoNotOptimize(decide(guard(), sandbox->policy.get(), Verdict::deny, input));
  }
}

void BM_replace_one_sandbox(benchmark::State& state) {
  PolicyStore& store = loaded_store();
  int variant = 0;
  SandboxSpec spec = make_sandbox(1234, 1);
  SandboxSpec spec2 = make_sandbox(1234, 2);
  for (auto _ : state) {
    store.put(++variant % 2 ? spec : spec2);
  }
}

BENCHMARK(BM_decide_5_labels_wildcard)->Repetitions(5)->ReportAggregatesOnly(true);
BENCHMARK(BM_decide_5_labels_exact)->Repetitions(5)->ReportAggregatesOnly(true);
BENCHMARK(BM_decide_5_labels_no_name_match)->Repetitions(5)->ReportAggregatesOnly(true);
BENCHMARK(BM_decide_address_only)->Repetitions(5)->ReportAggregatesOnly(true);
BENCHMARK(BM_replace_one_sandbox)
    ->Repetitions(5)
    ->ReportAggregatesOnly(true)
    ->Unit(benchmark::kMicrosecond);

}  // namespace

int main(int argc, char** argv) {
  loaded_store();
  benchmark::Initialize(&argc, argv);
  benchmark::RunSpecifiedBenchmarks();
  return 0;
}
