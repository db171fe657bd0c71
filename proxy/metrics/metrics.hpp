#pragma once
// Every metric of DESIGN.md "Observability", created once; reasons pre-registered so a
// dashboard sees zeros rather than missing series. No sandbox or name labels (cardinality).
#include <prometheus/collectable.h>
#include <prometheus/counter.h>
#include <prometheus/exposer.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include <array>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>

#include "core/reason.hpp"

namespace egressd {

enum class Phase : uint8_t { peek, connect, relay };

class Metrics {
 public:
  Metrics();
  // Serves /metrics on `address` ("127.0.0.1:9464"); throws only at startup on a bad bind.
  void expose(const std::string& address);
  void unexpose() { exposer_.reset(); }  // frees the port (a takeover's new process binds it)
  // Probes on the metrics listener (Kubernetes): /healthz answers 200 while the process
  // serves it; /readyz only between set_ready(true) (policy loaded, listeners up) and
  // set_ready(false) (stopping or handed over), 404 otherwise.
  void set_ready(bool ready);

  void connection_finished(Reason reason) {
    connections_[static_cast<size_t>(reason)]->Increment();
  }
  prometheus::Gauge& active(Phase phase) { return *active_[static_cast<size_t>(phase)]; }
  void bytes_up(double n) { bytes_up_->Increment(n); }
  void bytes_down(double n) { bytes_down_->Increment(n); }
  void decision_seconds(double seconds) { decision_->Observe(seconds); }
  void policy_update(bool ok) { (ok ? updates_ok_ : updates_error_)->Increment(); }
  void sandboxes(size_t n) { sandboxes_->Set(static_cast<double>(n)); }
  void dns_query(const std::string& result);
  void dns_cache(const std::string& result);          // hit | miss | joined
  void dns_verification(const std::string& outcome);  // original | redirected | refused
  void accept_error(int error_number);
  // One answered (or dropped) DNS filter query: egressd_dns_requests_total{verdict,reason} and
  // egressd_dns_request_duration_seconds.
  void dns_request(Verdict verdict, Reason reason, double seconds);
  // egressd_gateway_connections_total{gateway}: connections that left through a gateway
  // (gateways are few and named by the operator, so a label is fine).
  void gateway_connection(const std::string& gateway);
  void declare_gateway(const std::string& gateway);  // its series at 0 from the start
  // DESIGN.md "Observability": the time of each phase of a connection, and of DNS lookups
  // that went upstream (cache hits are not lookups).
  void peek_seconds(double seconds) { peek_->Observe(seconds); }
  void connect_seconds(double seconds) { connect_->Observe(seconds); }
  void dns_lookup_seconds(double seconds) { dns_lookup_->Observe(seconds); }
  // egressd_config_last_reload_successful: 1 after a start or a good SIGHUP, 0 while the last
  // SIGHUP's file was refused (an alert keeps firing until a good file is loaded).
  void config_reload(bool ok);
  // egressd_kernel_unlogged_total{what}: what the kernel fast path decided or forwarded and the
  // access log could not show (counted, since lines cannot be: the kernel did not hand them over).
  void kernel_unlogged_refusals(uint64_t n) { unlogged_refusals_->Increment(double(n)); }
  void kernel_event_overruns(uint64_t n) { event_overruns_->Increment(double(n)); }

 private:
  std::shared_ptr<prometheus::Registry> registry_ = std::make_shared<prometheus::Registry>();
  std::unique_ptr<prometheus::Exposer> exposer_;
  std::shared_ptr<prometheus::Collectable> process_;  // the exposer only keeps a weak_ptr
  std::shared_ptr<prometheus::Collectable> health_;
  bool ready_ = false;
  std::array<prometheus::Counter*, std::tuple_size_v<decltype(kAllReasons)>> connections_{};
  std::array<prometheus::Gauge*, 3> active_{};
  prometheus::Counter* bytes_up_ = nullptr;
  prometheus::Counter* bytes_down_ = nullptr;
  prometheus::Histogram* decision_ = nullptr;
  prometheus::Counter* updates_ok_ = nullptr;
  prometheus::Counter* updates_error_ = nullptr;
  prometheus::Gauge* sandboxes_ = nullptr;
  prometheus::Family<prometheus::Counter>* dns_ = nullptr;
  prometheus::Family<prometheus::Counter>* dns_cache_ = nullptr;
  prometheus::Family<prometheus::Counter>* dns_verifications_ = nullptr;
  prometheus::Family<prometheus::Counter>* accept_errors_ = nullptr;
  std::array<std::array<prometheus::Counter*, std::tuple_size_v<decltype(kAllReasons)>>, 2>
      dns_requests_{};
  prometheus::Histogram* dns_request_seconds_ = nullptr;
  prometheus::Family<prometheus::Counter>* gateway_connections_ = nullptr;
  prometheus::Histogram* peek_ = nullptr;
  prometheus::Histogram* connect_ = nullptr;
  prometheus::Histogram* dns_lookup_ = nullptr;
  prometheus::Counter* unlogged_refusals_ = nullptr;
  prometheus::Counter* event_overruns_ = nullptr;
  prometheus::Gauge* reload_ok_ = nullptr;
  prometheus::Gauge* reload_time_ = nullptr;
};

}  // namespace egressd
