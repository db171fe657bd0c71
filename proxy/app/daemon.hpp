#pragma once
// The daemon's wiring (app/ only): the state every thread shares, and what each worker thread
// owns. Sessions and the control API never see these types; they get the narrow contexts
// declared in their own layers (session/context.hpp, control/context.hpp), built here.
#include <asio/io_context.hpp>

#include <atomic>
#include <memory>

#include "config/settings.hpp"
#include "control/context.hpp"
#include "dns/verifier.hpp"
#include "metrics/metrics.hpp"
#include "net/relay.hpp"
#include "policy/policy_store.hpp"
#include "record/access_log.hpp"
#include "record/connection_registry.hpp"
#include "record/denials.hpp"
#include "session/context.hpp"
#include "util/published.hpp"

namespace egressd {

struct Shared {
  explicit Shared(std::shared_ptr<const Settings> initial, DnsCacheLimits cache_limits = {},
                  ResolverOptions resolver = {})
      : settings(std::move(initial)),
        dns_cache(cache_limits),
        resolver_options(std::move(resolver)) {}
  Published<Settings> settings;
  DnsCache dns_cache;
  ResolverOptions resolver_options;
  AnswerMemory dns_answers;
  DnsBudget dns_budget;
  PolicyStore store;
  Metrics metrics;
  AccessLog access_log;
  ConnectionRegistry registry;
  DenialLog denials;
  OutcomeSink outcomes{metrics, access_log, denials};
  std::atomic<uint64_t> next_serial{1};
  std::atomic<bool> draining{false};
  Interception intercept;           // set once at start, before any worker runs
  std::function<void()> published;  // fast_path: kernel's sync; set once at start
  std::function<std::vector<KernelFlow>()> kernel_flows;  // fast_path: kernel's live flows

  ControlContext control() {
    return ControlContext{store,     settings,
                          registry,  denials,
                          metrics,   intercept.ca ? intercept.ca->pem() : std::string(),
                          published, kernel_flows};
  }
};

struct Worker {
  explicit Worker(Shared& s)
      : shared(s),
        settings(s.settings),
        policies(s.store),
        dns(io, s.dns_cache, s.resolver_options, s.metrics) {}
  Shared& shared;
  asio::io_context io{1};
  Published<Settings>::Reader settings;
  SnapshotReader policies;
  PipePool pipes;
  DnsLookup dns;
  std::atomic<size_t> active{0};  // live sessions (counted by Session itself)
  SessionContext context{settings,
                         policies,
                         dns,
                         shared.dns_answers,
                         shared.dns_budget,
                         pipes,
                         shared.registry,
                         shared.metrics,
                         shared.outcomes,
                         shared.next_serial,
                         active,
                         shared.intercept};
};

}  // namespace egressd
