#pragma once
// What sessions share: the settings a reload can change, the policy store, metrics, the
// access log, the registry of live connections; and what each worker thread owns.
#include <asio/io_context.hpp>

#include <atomic>
#include <bitset>
#include <memory>

#include "control/denials.hpp"
#include "dns/verifier.hpp"
#include "metrics/metrics.hpp"
#include "net/relay.hpp"
#include "policy/config.hpp"
#include "policy/policy_store.hpp"
#include "session/access_log.hpp"
#include "session/connection_registry.hpp"
#include "util/published.hpp"

namespace egressd {

// The part of the configuration a SIGHUP can change, validated before it is published.
struct Settings {
  Guard guard;
  std::bitset<65536> tls_ports;
  std::bitset<65536> http_ports;
  unsigned peek_ms = 5000;
  unsigned connect_ms = 5000;
  unsigned max_peek_bytes = 16384;
  unsigned max_connections_per_sandbox = 4096;
  unsigned max_connections = 0;  // daemon-wide, never 0 once built
  unsigned max_peeking_per_sandbox = 256;
  Verdict unknown_source = Verdict::deny;
  OnUpdate on_update = OnUpdate::revoke;
  DnsVerify dns_verify = DnsVerify::dial;

  static std::shared_ptr<const Settings> from(const Config& config);
};

struct Shared {
  explicit Shared(std::shared_ptr<const Settings> initial, DnsCacheLimits cache_limits = {},
                  ResolverOptions resolver = {})
      : settings(std::move(initial)),
        dns_cache(cache_limits),
        resolver_options(std::move(resolver)) {}
  Published<Settings> settings;
  DnsCache dns_cache;
  ResolverOptions resolver_options;
  PolicyStore store;
  Metrics metrics;
  AccessLog access_log;
  ConnectionRegistry registry;
  DenialLog denials;
  std::atomic<uint64_t> next_serial{1};
  std::atomic<bool> draining{false};
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
};

}  // namespace egressd
