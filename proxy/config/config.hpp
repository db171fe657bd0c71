#pragma once
// The configuration file (DESIGN.md "Configuration file"), loaded with yaml-cpp. Unknown keys
// are errors; every error carries file:line:col.
#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <variant>
#include <vector>

#include "core/modes.hpp"
#include "policy/sandbox_policy.hpp"

namespace egressd {

// DESIGN.md "Dedicated egress addresses": upstream sockets bind to the source of the
// destination's family (IP_FREEBIND), and/or carry SO_MARK for the host's policy routing.
struct GatewayConfig {
  std::optional<IpAddress> v4;
  std::optional<IpAddress> v6;
  std::optional<uint32_t> mark;
};

struct Config {
  std::string path;
  struct {
    std::vector<std::string> tproxy{"0.0.0.0:15001", "[::]:15001"};
    std::string control = "/run/egressd/control.sock";
    std::optional<std::string> metrics = "127.0.0.1:9464";
  } listen;
  unsigned workers = 0;
  std::string state_dir = "/var/lib/egressd";
  struct {
    std::vector<uint16_t> tls{443};
    std::vector<uint16_t> http{80};
  } inspect;
  struct {
    unsigned peek_ms = 5000;
    unsigned connect_ms = 5000;
  } timeouts;
  struct {
    unsigned max_peek_bytes = 16384;
    unsigned max_connections_per_sandbox = 4096;
    unsigned max_connections = 0;  // 0: from RLIMIT_NOFILE (connections_from_fd_limit)
    unsigned max_peeking_per_sandbox = 256;
  } limits;
  struct {
    std::vector<std::string> servers;
    DnsVerify verify = DnsVerify::dial;
    unsigned timeout_ms = 2000;   // extension: per try, 2 tries
    unsigned min_ttl_s = 5;       // extension: cache floor
    unsigned max_ttl_s = 300;     // extension: cache ceiling
    unsigned negative_ttl_s = 5;  // extension: NXDOMAIN/NODATA
    unsigned cache_size = 100000;
  } dns;
  struct {
    std::vector<std::string> listen;  // empty: the DNS filter is off
    bool answer_nxdomain = false;     // answer_denied: refused (default) | nxdomain
    bool strip_ech = true;
    unsigned queries_per_second = 50;
    unsigned burst = 200;
    unsigned new_names_per_minute = 300;
  } dns_filter;
  std::map<std::string, GatewayConfig> gateways;
  // How long a stopping or replaced (--takeover) egressd lets its connections finish.
  unsigned drain_s = 300;
  FastPath fast_path = FastPath::proxy;
  // DESIGN.md "Request transforms". ca_dir empty: state_dir/ca (the CA lives in memory only
  // when state_dir is empty too). upstream_ca: "system" or a PEM file. Read at start.
  struct {
    std::string ca_dir;
    std::string upstream_ca = "system";
  } intercept;
  std::vector<std::string> guard_deny;   // added to Guard::floor()
  std::vector<std::string> guard_allow;  // floor entries lifted on purpose
  Verdict unknown_source = Verdict::deny;
  OnUpdate on_update = OnUpdate::revoke;
  std::string access_log = "-";
  std::vector<SandboxSpec> sandboxes;
};

// Errors as "file:line:col: message", one per line; empty when the file is good. A good file
// also compiles: every rule, source and guard entry is validated, and sandboxes do not overlap.
std::variant<Config, std::vector<std::string>> load_config(const std::string& path);
std::variant<Config, std::vector<std::string>> load_config_text(const std::string& text,
                                                                const std::string& name);

// Why `name` cannot name a gateway, or nothing.
std::optional<std::string> gateway_name_error(std::string_view name);
std::set<std::string> gateway_names(const Config& config);

// Parses "1.2.3.4:80" / "[::1]:80" listen addresses.
struct HostPort {
  std::string host;
  uint16_t port = 0;
};
std::optional<HostPort> parse_host_port(std::string_view text);

}  // namespace egressd
