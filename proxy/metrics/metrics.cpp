#include "metrics/metrics.hpp"

#include <dirent.h>
#include <sys/resource.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <fstream>
#include <sstream>

#include <prometheus/collectable.h>
#include <prometheus/metric_family.h>

#include "build_info.hpp"

namespace egressd {
namespace {

// The standard process metrics (the Prometheus client libraries' names), read from /proc at
// each scrape: an fd-bound proxy must show its descriptors next to their limit.
class ProcessCollector : public prometheus::Collectable {
 public:
  ProcessCollector() {
    // Start time: boot time + the process's start in clock ticks since boot.
    double boot = 0;
    std::ifstream stat("/proc/stat");
    for (std::string line; std::getline(stat, line);)
      if (line.rfind("btime ", 0) == 0) boot = std::stod(line.substr(6));
    auto fields = self_stat();
    if (fields.size() > 21) start_ = boot + std::stod(fields[21]) / ticks_;
  }

  std::vector<prometheus::MetricFamily> Collect() const override {
    std::vector<prometheus::MetricFamily> out;
    auto gauge = [&](const char* name, const char* help, double value) {
      prometheus::MetricFamily family{name, help, prometheus::MetricType::Gauge, {}};
      prometheus::ClientMetric metric;
      metric.gauge.value = value;
      family.metric.push_back(metric);
      out.push_back(std::move(family));
    };
    auto fields = self_stat();
    if (fields.size() > 23) {
      double cpu = (std::stod(fields[13]) + std::stod(fields[14])) / ticks_;
      prometheus::MetricFamily family{"process_cpu_seconds_total",
                                      "Total user and system CPU time spent in seconds.",
                                      prometheus::MetricType::Counter,
                                      {}};
      prometheus::ClientMetric metric;
      metric.counter.value = cpu;
      family.metric.push_back(metric);
      out.push_back(std::move(family));
      gauge("process_virtual_memory_bytes", "Virtual memory size in bytes.", std::stod(fields[22]));
      gauge("process_resident_memory_bytes", "Resident memory size in bytes.",
            std::stod(fields[23]) * static_cast<double>(page_));
    }
    gauge("process_open_fds", "Number of open file descriptors.", open_fds());
    rlimit limit{};
    if (getrlimit(RLIMIT_NOFILE, &limit) == 0)
      gauge("process_max_fds", "Maximum number of open file descriptors.",
            static_cast<double>(limit.rlim_cur));
    gauge("process_start_time_seconds", "Start time of the process since unix epoch in seconds.",
          start_);
    return out;
  }

 private:
  // /proc/self/stat with the command name (which may hold spaces) skipped: field N of proc(5)
  // (1-based) is fields[N - 1]; the first two are left empty.
  static std::vector<std::string> self_stat() {
    std::ifstream in("/proc/self/stat");
    std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    std::vector<std::string> fields{"", ""};
    auto close = text.rfind(')');
    if (close == std::string::npos) return {};
    std::istringstream rest(text.substr(close + 2));
    for (std::string field; rest >> field;) fields.push_back(field);
    return fields;
  }
  static double open_fds() {
    DIR* dir = ::opendir("/proc/self/fd");
    if (!dir) return 0;
    double n = 0;
    while (dirent* entry = ::readdir(dir))
      if (entry->d_name[0] != '.') ++n;
    ::closedir(dir);
    return n - 1;  // the directory's own descriptor
  }
  double ticks_ = static_cast<double>(sysconf(_SC_CLK_TCK));
  long page_ = sysconf(_SC_PAGESIZE);
  double start_ = 0;
};

// What /healthz and /readyz serve: one line, so a probe's 200 carries something to read.
class ProbeCollector : public prometheus::Collectable {
 public:
  std::vector<prometheus::MetricFamily> Collect() const override {
    prometheus::MetricFamily family{
        "egressd_up", "egressd is serving", prometheus::MetricType::Gauge, {}};
    prometheus::ClientMetric metric;
    metric.gauge.value = 1;
    family.metric.push_back(metric);
    return {family};
  }
};

}  // namespace

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
  auto seconds_buckets = prometheus::Histogram::BucketBoundaries{
      1e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 1e-2, 2.5e-2, 0.1, 0.5, 1, 5};
  auto histogram = [&](const char* name, const char* help) {
    return &prometheus::BuildHistogram()
                .Name(name)
                .Help(help)
                .Register(*registry_)
                .Add({}, seconds_buckets);
  };
  peek_ = histogram("egressd_peek_duration_seconds",
                    "From accept to the decided ClientHello or first request head");
  connect_ = histogram("egressd_connect_duration_seconds",
                       "Time to connect to the origin (TCP; refused and timed-out included)");
  dns_lookup_ = histogram("egressd_dns_lookup_duration_seconds",
                          "DNS lookups sent upstream, from query to answer (cache hits excluded)");
  auto& unlogged =
      prometheus::BuildCounter()
          .Name("egressd_kernel_unlogged_total")
          .Help(
              "fast_path kernel: refusals at SYN without an access-log line (over "
              "fp_refuse's log limit or lost on the NFLOG socket), and overruns of the "
              "conntrack event socket (each lost the lines of one or more finished "
              "kernel flows)")
          .Register(*registry_);
  unlogged_refusals_ = &unlogged.Add({{"what", "refusal"}});
  event_overruns_ = &unlogged.Add({{"what", "flow_event_overrun"}});
  reload_ok_ = &prometheus::BuildGauge()
                    .Name("egressd_config_last_reload_successful")
                    .Help("1 when the last configuration load (start or SIGHUP) succeeded")
                    .Register(*registry_)
                    .Add({});
  reload_ok_->Set(1);  // a start that got this far loaded its configuration
  reload_time_ = &prometheus::BuildGauge()
                      .Name("egressd_config_last_reload_success_timestamp_seconds")
                      .Help("When the configuration was last loaded successfully")
                      .Register(*registry_)
                      .Add({});
  reload_time_->SetToCurrentTime();
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
  process_ = std::make_shared<ProcessCollector>();
  exposer_->RegisterCollectable(process_);
  health_ = std::make_shared<ProbeCollector>();
  exposer_->RegisterCollectable(health_, "/healthz");
  if (ready_) exposer_->RegisterCollectable(health_, "/readyz");
}

void Metrics::set_ready(bool ready) {
  if (ready == ready_) return;
  ready_ = ready;
  if (!exposer_) return;  // expose() registers /readyz when it comes
  if (ready) {
    exposer_->RegisterCollectable(health_, "/readyz");
  } else {
    exposer_->RemoveCollectable(health_, "/readyz");
  }
}

void Metrics::config_reload(bool ok) {
  reload_ok_->Set(ok ? 1 : 0);
  if (ok) reload_time_->SetToCurrentTime();
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
