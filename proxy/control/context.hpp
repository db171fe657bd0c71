#pragma once
// What the control API needs from the daemon: the store it writes, the settings a reload
// publishes, and the records it reads (live connections, denials, counters). Built by app/.
#include <functional>
#include <vector>

#include "config/settings.hpp"
#include "kernel/flow.hpp"
#include "metrics/metrics.hpp"
#include "policy/policy_store.hpp"
#include "record/connection_registry.hpp"
#include "record/denials.hpp"
#include "util/published.hpp"

namespace egressd {

struct ControlContext {
  PolicyStore& store;
  Published<Settings>& settings;
  ConnectionRegistry& registry;
  DenialLog& denials;
  Metrics& metrics;
  std::string ca_pem = {};  // the interception CA certificate (GET /v1/ca.pem); empty: none
  // After every change of the policies or settings, under the write lock and before the API
  // answers (fast_path: kernel brings the kernel's sets up to date); empty: nothing to do.
  std::function<void()> published = {};
  // fast_path: kernel: the flows the kernel forwards now, listed by GET /v1/connections
  // (egressd holds no socket for them); empty: none.
  std::function<std::vector<KernelFlow>()> kernel_flows = {};
};

}  // namespace egressd
