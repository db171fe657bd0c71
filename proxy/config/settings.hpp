#pragma once
// The part of the configuration a SIGHUP can change, validated before it is published: what
// every new connection reads (through a Published<Settings>::Reader) and the control API
// publishes on reload.
#include <bitset>
#include <memory>

#include "config/config.hpp"
#include "core/modes.hpp"
#include "core/reason.hpp"
#include "policy/sandbox_policy.hpp"

namespace egressd {

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
  unsigned dns_max_ttl_s = 300;  // how long the DNS filter's answers count for dns.verify at most
  // dns_filter (its listen addresses are not here: they need a restart).
  bool dns_answer_nxdomain = false;
  bool dns_strip_ech = true;
  unsigned dns_queries_per_second = 50;
  unsigned dns_burst = 200;
  unsigned dns_new_names_per_minute = 300;
  std::map<std::string, GatewayConfig> gateways;  // egress.gateway names one of these

  // From a loaded (so validated) configuration; limits.max_connections 0 becomes a share of
  // RLIMIT_NOFILE.
  static std::shared_ptr<const Settings> from(const Config& config);
};

}  // namespace egressd
