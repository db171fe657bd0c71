#pragma once
// What a session needs from the daemon, and nothing more. Declared here, built by app/ once
// per worker thread (each reader is that thread's own), so the session layer never reaches
// up into the daemon's wiring.
#include <atomic>
#include <cstdint>

#include "config/settings.hpp"
#include "dns/budget.hpp"
#include "dns/verifier.hpp"
#include "metrics/metrics.hpp"
#include "net/relay.hpp"
#include "policy/policy_store.hpp"
#include "record/access_log.hpp"
#include "record/connection_registry.hpp"
#include "record/denials.hpp"
#include "tls/authority.hpp"
#include "util/published.hpp"

namespace egressd {

// Where a finished connection's one Reason goes: the counters, the access log and, for a
// refusal (or one audit mode let through), the sandbox's denials. Once per connection.
class OutcomeSink {
 public:
  OutcomeSink(Metrics& metrics, AccessLog& access_log, DenialLog& denials)
      : metrics_(metrics), access_log_(access_log), denials_(denials) {}
  void finished(const AccessRecord& record, const IpAddress& destination);
  // A DNS query's: egressd_dns_requests_total and the latency histogram instead of the
  // connection counters.
  void dns_finished(const AccessRecord& record, const IpAddress& destination, double seconds);

 private:
  Metrics& metrics_;
  AccessLog& access_log_;
  DenialLog& denials_;
};

// DESIGN.md "Request transforms": the CA that issues the certificates egressd shows a sandbox
// on an intercepted connection, and the context that verifies the origin behind it.
struct Interception {
  std::shared_ptr<CertificateAuthority> ca;
  std::shared_ptr<UpstreamTls> upstream;
};

struct SessionContext {
  // (answers: what the DNS filter gave each sandbox; dns.verify accepts them without a lookup)
  Published<Settings>::Reader& settings;  // a connection keeps the snapshot it started with
  SnapshotReader& policies;
  DnsLookup& dns;
  AnswerMemory& answers;
  DnsBudget& budget;  // the DNS filter's per-sandbox budgets
  PipePool& pipes;
  ConnectionRegistry& registry;
  Metrics& metrics;  // bytes, phases, decision time, DNS verification
  OutcomeSink& outcomes;
  std::atomic<uint64_t>& next_serial;  // connection serials, daemon-wide
  std::atomic<size_t>& active;         // this worker's live sessions
  const Interception& intercept;
};

}  // namespace egressd
