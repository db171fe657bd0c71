#include <doctest/doctest.h>

#include <memory>
#include <vector>

#include "record/connection_registry.hpp"

using namespace egressd;

namespace {

struct Tenant {
  std::string id;
  std::vector<std::shared_ptr<LiveConnection>> held;
};

// Opens connections for `tenant` until one is refused or `attempts` ran out; returns how many.
size_t fill(ConnectionRegistry& registry, Tenant& tenant, const ConnectionLimits& limits,
            size_t attempts, bool peeking = false) {
  static uint64_t serial = 1;
  size_t admitted = 0;
  for (size_t i = 0; i < attempts; ++i) {
    auto c = std::make_shared<LiveConnection>();
    c->serial = serial++;
    c->sandbox = tenant.id;
    if (!registry.admit(c, limits, peeking)) break;
    tenant.held.push_back(c);
    ++admitted;
  }
  return admitted;
}

}  // namespace

TEST_CASE("Registry: a greedy sandbox cannot take the last quarter from the others") {
  ConnectionRegistry registry;
  ConnectionLimits limits{4096, 100, 256};
  Tenant greedy{"greedy", {}}, polite{"polite", {}}, third{"third", {}};
  CHECK(fill(registry, greedy, limits, 1000) == 75);  // stops at 3/4 (fair share 100/2)
  CHECK(fill(registry, polite, limits, 1) == 1);
  // Near the limit each sandbox is held to max / (sandboxes holding connections + 1).
  CHECK(fill(registry, polite, limits, 1000) == 24);  // up to 25 = 100 / (2 + 1) + ...
  CHECK(registry.total() == 100);
  CHECK(fill(registry, third, limits, 1) == 0);  // the hard limit holds for everyone
  for (auto& c : greedy.held) registry.remove(*c);
  greedy.held.clear();
  CHECK(registry.total() == 25);
  CHECK(fill(registry, third, limits, 1) == 1);
}

TEST_CASE("Registry: per-sandbox and peek-phase caps; peek_done frees a peek slot") {
  ConnectionRegistry registry;
  ConnectionLimits limits{10, 1000, 3};
  Tenant a{"a", {}};
  CHECK(fill(registry, a, limits, 100, true) == 3);
  registry.peek_done(*a.held[0]);
  registry.peek_done(*a.held[0]);  // twice is harmless
  CHECK(fill(registry, a, limits, 100, true) == 1);
  CHECK(fill(registry, a, limits, 100, false) == 6);  // the per-sandbox cap of 10
  for (auto& c : a.held) registry.remove(*c);
  CHECK(registry.total() == 0);
  CHECK(fill(registry, a, limits, 100, true) == 3);  // peek slots were given back on remove
}
