#pragma once
// Recent refusals per sandbox, a bounded ring each (GET /v1/denials).
#include <array>
#include <chrono>
#include <deque>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "core/ip.hpp"
#include "core/reason.hpp"

namespace egressd {

struct Denial {
  std::chrono::system_clock::time_point time;
  IpAddress destination;
  uint16_t port = 0;
  std::string name;
  Reason reason = Reason::default_deny;
  std::string rule;
  std::optional<Reason> would_deny;  // audit mode: reason is audit_allow, this what it would be
  std::string src;                   // the client's address:port
  std::string sandbox;               // "" for an unknown source
  std::string proto;                 // "tcp", "tls", "http" or "dns"
  std::string qtype;                 // dns: the query type
};

class DenialLog {
 public:
  static constexpr size_t kPerSandbox = 64;  // unknown sources share one ring, sandbox ""
  static constexpr size_t kHostWide = 256;   // the newest, across every ring
  void record(const std::string& sandbox, Denial denial);
  std::vector<Denial> recent(const std::string& sandbox) const;
  std::vector<Denial> recent_host_wide() const;  // newest first
  void forget(const std::string& sandbox);

 private:
  struct Shard {
    mutable std::mutex mutex;
    std::unordered_map<std::string, std::deque<Denial>> by_sandbox;
  };
  Shard& shard(const std::string& sandbox) const {
    return shards_[std::hash<std::string>{}(sandbox) % shards_.size()];
  }
  mutable std::array<Shard, 16> shards_;
};

}  // namespace egressd
