#include "metrics/metrics.hpp"

#include <cstring>

#include "build_info.hpp"

namespace egressd {

Metrics::Metrics() {
  auto& connections =
      prometheus::BuildCounter()
          .Name("egressd_connections_total")
          .Help("Finished connections by verdict and reason (exactly one reason each)")
          .Register(*registry_);
  for (Reason reason : kAllReasons) {
    if (is_dns_only(reason)) continue;
    connections_[static_cast<size_t>(reason)] =
        &connections.Add({{"verdict", std::string(to_string(verdict_of(reason)))},
                          {"reason", std::string(to_string(reason))}});
  }
  auto& dns_requests =
      prometheus::BuildCounter()
          .Name("egressd_dns_requests_total")
          .Help("DNS filter queries by verdict and reason (exactly one reason each)")
          .Register(*registry_);
  // The DNS reasons (DESIGN.md "DNS for sandboxes") with the verdicts each can have.
  for (Reason reason :
       {Reason::allowed_domain, Reason::default_allow, Reason::audit_allow, Reason::filtered_answer,
        Reason::denied_domain, Reason::default_deny, Reason::unknown_source,
        Reason::budget_exceeded, Reason::malformed_query, Reason::upstream_failure}) {
    for (Verdict verdict : {Verdict::allow, Verdict::deny}) {
      bool possible = reason == Reason::filtered_answer || verdict_of(reason) == verdict;
      if (!possible) continue;
      dns_requests_[static_cast<size_t>(verdict)][static_cast<size_t>(reason)] =
          &dns_requests.Add({{"verdict", std::string(to_string(verdict))},
                             {"reason", std::string(to_string(reason))}});
    }
  }
  dns_request_seconds_ =
      &prometheus::BuildHistogram()
           .Name("egressd_dns_request_duration_seconds")
           .Help("Time from a sandbox's DNS query to egressd's answer")
           .Register(*registry_)
           .Add({}, prometheus::Histogram::BucketBoundaries{1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4,
                                                            1e-3, 5e-3, 2.5e-2, 0.1, 0.5, 2.5});
  gateway_connections_ =
      &prometheus::BuildCounter()
           .Name("egressd_gateway_connections_total")
           .Help("Relayed connections that left through a dedicated egress gateway")
           .Register(*registry_);
  auto& active = prometheus::BuildGauge()
                     .Name("egressd_connections_active")
                     .Help("Live connections by phase")
                     .Register(*registry_);
  active_ = {&active.Add({{"phase", "peek"}}), &active.Add({{"phase", "connect"}}),
             &active.Add({{"phase", "relay"}})};
  auto& bytes = prometheus::BuildCounter()
                    .Name("egressd_bytes_total")
                    .Help("Relayed bytes")
                    .Register(*registry_);
  bytes_up_ = &bytes.Add({{"direction", "up"}});
  bytes_down_ = &bytes.Add({{"direction", "down"}});
  decision_ =
      &prometheus::BuildHistogram()
           .Name("egressd_decision_duration_seconds")
           .Help("Time to decide a connection once its facts are known")
           .Register(*registry_)
           .Add({}, prometheus::Histogram::BucketBoundaries{1e-7, 2.5e-7, 5e-7, 1e-6, 2.5e-6, 5e-6,
                                                            1e-5, 1e-4, 1e-3, 1e-2, 1e-1});
  auto& updates = prometheus::BuildCounter()
                      .Name("egressd_policy_updates_total")
                      .Help("Policy updates by result")
                      .Register(*registry_);
  updates_ok_ = &updates.Add({{"result", "ok"}});
  updates_error_ = &updates.Add({{"result", "error"}});
  sandboxes_ = &prometheus::BuildGauge()
                    .Name("egressd_sandboxes")
                    .Help("Sandboxes in the policy store")
                    .Register(*registry_)
                    .Add({});
  dns_ = &prometheus::BuildCounter()
              .Name("egressd_dns_queries_total")
              .Help("DNS queries for destination verification by result")
              .Register(*registry_);
  for (const char* result : {"ok", "nxdomain", "timeout", "error"}) dns_->Add({{"result", result}});
  dns_cache_ = &prometheus::BuildCounter()
                    .Name("egressd_dns_cache_total")
                    .Help(
                        "DNS cache lookups: hit, miss (a query was sent), joined (waited for a "
                        "query in flight)")
                    .Register(*registry_);
  for (const char* result : {"hit", "miss", "joined"}) dns_cache_->Add({{"result", result}});
  dns_verifications_ =
      &prometheus::BuildCounter()
           .Name("egressd_dns_verifications_total")
           .Help("Destination checks after a domain rule allowed: original, redirected, refused")
           .Register(*registry_);
  for (const char* outcome : {"original", "redirected", "refused"})
    dns_verifications_->Add({{"outcome", outcome}});
  accept_errors_ = &prometheus::BuildCounter()
                        .Name("egressd_accept_errors_total")
                        .Help("accept() failures by errno")
                        .Register(*registry_);
  for (int error_number :
       {EMFILE, ENFILE, ENOBUFS, ENOMEM}) {  // the ones that back off, shown at 0
    accept_errors_->Add({{"errno", strerrorname_np(error_number)}});
  }
  prometheus::BuildGauge()
      .Name("egressd_build_info")
      .Help("Build information")
      .Register(*registry_)
      .Add({{"version", build_info::kVersion}, {"compiler", build_info::kCompiler}})
      .Set(1);
}

void Metrics::expose(const std::string& address) {
  exposer_ = std::make_unique<prometheus::Exposer>(address, 1);
  exposer_->RegisterCollectable(registry_);
}

void Metrics::dns_query(const std::string& result) {
  dns_->Add({{"result", result}}).Increment();
}

void Metrics::dns_cache(const std::string& result) {
  dns_cache_->Add({{"result", result}}).Increment();
}

void Metrics::dns_verification(const std::string& outcome) {
  dns_verifications_->Add({{"outcome", outcome}}).Increment();
}

void Metrics::accept_error(int error_number) {
  const char* name = strerrorname_np(error_number);
  accept_errors_->Add({{"errno", name ? name : std::to_string(error_number)}}).Increment();
}

void Metrics::dns_request(Verdict verdict, Reason reason, double seconds) {
  if (auto* counter = dns_requests_[static_cast<size_t>(verdict)][static_cast<size_t>(reason)])
    counter->Increment();
  dns_request_seconds_->Observe(seconds);
}

void Metrics::declare_gateway(const std::string& gateway) {
  gateway_connections_->Add({{"gateway", gateway}});
}

void Metrics::gateway_connection(const std::string& gateway) {
  gateway_connections_->Add({{"gateway", gateway}}).Increment();
}

}  // namespace egressd
