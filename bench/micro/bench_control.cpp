// Control plane: PUT round trip (validate, fsync to state_dir, publish) with 10,000 sandboxes
// loaded, what the fsync alone costs on this disk, and replacements per second.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>

#include "app/daemon.hpp"
#include "control/api.hpp"

using namespace egressd;
using Clock = std::chrono::steady_clock;

namespace {

double percentile(std::vector<double> values, double p) {
  std::sort(values.begin(), values.end());
  return values[std::min(values.size() - 1, static_cast<size_t>(p * values.size()))];
}

std::string body(int index, int variant) {
  std::string allow;
  for (int r = 0; r < 100; ++r) {
    allow += (r ? "," : "") + std::string("\"") + (r % 3 == 0 ? "*." : "") + "svc" +
             std::to_string(r + variant) + ".team" + std::to_string(index % 97) + ".example.com\"";
  }
  return R"({"sources":["10.)" + std::to_string(200 + index / 65536) + "." +
         std::to_string((index / 256) % 256) + "." + std::to_string(index % 256) +
         R"("],"egress":{"default":"deny","allow":[)" + allow + "]}}";
}

}  // namespace

int main(int argc, char** argv) {
  std::string dir = argc > 1 ? argv[1] : "build/bench-state";
  std::filesystem::remove_all(dir);
  Config config;
  Shared shared(Settings::from(config));
  StateDir state(dir);
  if (!state.prepare().empty()) return 1;
  ControlApi api(shared.control(), state);
  auto loading = Clock::now();
  for (int i = 0; i < 10000; ++i) {
    SandboxSpec spec;
    spec.id = "sbx-" + std::to_string(i);
    spec.sources = {"10." + std::to_string(200 + i / 65536) + "." +
                    std::to_string((i / 256) % 256) + "." + std::to_string(i % 256)};
    spec.allow = {"*.example.com", "pypi.org"};
    shared.store.put(spec);
  }
  std::printf("loaded 10,000 sandboxes in %.2f s\n",
              std::chrono::duration<double>(Clock::now() - loading).count());
  std::vector<double> round_trips, fsyncs;
  auto started = Clock::now();
  for (int i = 0; i < 500; ++i) {
    int index = (i * 37) % 10000;
    ControlRequest request{"PUT", "/v1/sandboxes/sbx-" + std::to_string(index), {}, body(index, i)};
    auto start = Clock::now();
    ControlResponse response = api.handle(request);
    round_trips.push_back(std::chrono::duration<double, std::micro>(Clock::now() - start).count());
    if (response.status != 200) {
      std::printf("PUT failed: %d %s\n", response.status, response.body.c_str());
      return 1;
    }
  }
  double elapsed = std::chrono::duration<double>(Clock::now() - started).count();
  SandboxSpec spec = spec_of(*shared.store.snapshot()->find_by_id("sbx-1"));
  for (int i = 0; i < 500; ++i) {
    auto start = Clock::now();
    state.save(spec, 1);
    fsyncs.push_back(std::chrono::duration<double, std::micro>(Clock::now() - start).count());
  }
  std::printf(
      "PUT round trip (100 rules, validate + fsync + publish), 10,000 loaded: p50 %.0f us, p99 "
      "%.0f us\n",
      percentile(round_trips, 0.5), percentile(round_trips, 0.99));
  std::printf(
      "of which the durable write alone (temp file, fsync, rename, fsync dir): p50 %.0f us, p99 "
      "%.0f us\n",
      percentile(fsyncs, 0.5), percentile(fsyncs, 0.99));
  std::printf("sustained: %.0f replacements/s (one writer, no traffic)\n", 500 / elapsed);
  std::filesystem::remove_all(dir);
  return 0;
}
