#include "config/settings.hpp"

#include <sys/resource.h>

#include <algorithm>

namespace egressd {

std::shared_ptr<const Settings> Settings::from(const Config& config) {
  auto settings = std::make_shared<Settings>();
  settings->guard = std::get<Guard>(Guard::compile(config.guard_deny, config.guard_allow));
  for (uint16_t port : config.inspect.tls) settings->tls_ports.set(port);
  for (uint16_t port : config.inspect.http) settings->http_ports.set(port);
  settings->peek_ms = config.timeouts.peek_ms;
  settings->connect_ms = config.timeouts.connect_ms;
  settings->max_peek_bytes = config.limits.max_peek_bytes;
  settings->max_connections_per_sandbox = config.limits.max_connections_per_sandbox;
  settings->max_connections = config.limits.max_connections;
  if (settings->max_connections == 0) {
    // Two descriptors per relayed connection, 10 % kept back for pipes, DNS, the control API
    // and the listeners themselves.
    rlimit limit{};
    uint64_t descriptors = getrlimit(RLIMIT_NOFILE, &limit) == 0 ? limit.rlim_cur : 1024;
    settings->max_connections = static_cast<unsigned>(
        std::max<uint64_t>(1, std::min<uint64_t>(descriptors, 1u << 30) * 9 / 20));
  }
  settings->max_peeking_per_sandbox = config.limits.max_peeking_per_sandbox;
  settings->unknown_source = config.unknown_source;
  settings->on_update = config.on_update;
  settings->dns_verify = config.dns.verify;
  settings->dns_max_ttl_s = config.dns.max_ttl_s;
  settings->dns_answer_nxdomain = config.dns_filter.answer_nxdomain;
  settings->dns_strip_ech = config.dns_filter.strip_ech;
  settings->dns_queries_per_second = config.dns_filter.queries_per_second;
  settings->dns_burst = config.dns_filter.burst;
  settings->dns_new_names_per_minute = config.dns_filter.new_names_per_minute;
  settings->gateways = config.gateways;
  return settings;
}

}  // namespace egressd
