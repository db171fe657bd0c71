#pragma once
// Per-sandbox state of the DNS filter, shared by every worker: the query budgets
// (DESIGN.md dns_filter.budget) and the answers each sandbox was given, which dns.verify: dial
// accepts without another lookup. Both bounded; sharded by sandbox so workers rarely meet.
#include <array>
#include <chrono>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "core/ip.hpp"

namespace egressd {

struct DnsBudgetLimits {
  unsigned queries_per_second = 50;
  unsigned burst = 200;
  unsigned new_names_per_minute = 300;  // per registrable domain
};

class DnsBudget {
 public:
  using Clock = std::chrono::steady_clock;
  // Names remembered per sandbox in one minute, whatever the domains: past it every new name
  // is over budget (the query budget keeps honest sandboxes far below it).
  static constexpr size_t kNamesPerSandbox = 20000;

  // One query: false when the sandbox's token bucket (queries_per_second, burst) is empty.
  bool take_query(const std::string& sandbox, const DnsBudgetLimits& limits,
                  Clock::time_point now = Clock::now());
  // A name about to be answered: false when its registrable domain already had
  // new_names_per_minute other names in this sandbox's current minute.
  bool admit_name(const std::string& sandbox, std::string_view name, const DnsBudgetLimits& limits,
                  Clock::time_point now = Clock::now());
  void forget(const std::string& sandbox);

 private:
  struct State {
    double tokens = -1;  // < 0: not started (a full bucket)
    Clock::time_point refilled;
    Clock::time_point window_start;
    size_t names = 0;
    std::unordered_map<std::string, std::unordered_set<std::string>> by_domain;
  };
  struct Shard {
    std::mutex mutex;
    std::unordered_map<std::string, State> sandboxes;
  };
  Shard& shard(const std::string& sandbox) {
    return shards_[std::hash<std::string>{}(sandbox) % shards_.size()];
  }
  std::array<Shard, 16> shards_;
};

class AnswerMemory {
 public:
  using Clock = std::chrono::steady_clock;
  static constexpr size_t kNamesPerSandbox = 4096;

  void remember(const std::string& sandbox, const std::string& name,
                std::span<const IpAddress> addresses, unsigned ttl_s,
                Clock::time_point now = Clock::now());
  // Whether `address` is among the answers `sandbox` was given for `name` and still in TTL.
  bool gave(const std::string& sandbox, const std::string& name, const IpAddress& address,
            Clock::time_point now = Clock::now());
  void forget(const std::string& sandbox);
  size_t names(const std::string& sandbox);

 private:
  struct Entry {
    std::vector<IpAddress> addresses;
    Clock::time_point expires;
  };
  struct Shard {
    std::mutex mutex;
    std::unordered_map<std::string, std::unordered_map<std::string, Entry>> sandboxes;
  };
  Shard& shard(const std::string& sandbox) {
    return shards_[std::hash<std::string>{}(sandbox) % shards_.size()];
  }
  std::array<Shard, 16> shards_;
};

}  // namespace egressd
