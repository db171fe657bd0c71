#pragma once
// Answers shared by every worker (destination verification's A/AAAA under the name, the DNS
// filter's upstream messages under "name/TYPE"): TTLs honoured within a floor and a ceiling,
// negative answers cached briefly, bounded in size, and single-flight: while a name is being
// resolved, every other asker waits for that one query.
#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "core/ip.hpp"

struct ldns_struct_pkt;  // ldns's packet (dns/message.hpp)

namespace egressd {

enum class DnsStatus : uint8_t { ok, nxdomain, timeout, error };
const char* to_string(DnsStatus status);

struct DnsAnswer {
  DnsStatus status = DnsStatus::error;
  std::vector<IpAddress> addresses;
  unsigned ttl_seconds = 0;  // as the server said (before floor/ceiling)
  // A DNS filter answer (keys "name/TYPE"): the upstream message as received, and when.
  std::shared_ptr<const ldns_struct_pkt> message;
  std::chrono::steady_clock::time_point received{};
};

struct DnsCacheLimits {
  unsigned min_ttl_s = 5;
  unsigned max_ttl_s = 300;
  unsigned negative_ttl_s = 5;
  size_t max_entries = 100000;
};

class DnsCache {
 public:
  using Clock = std::chrono::steady_clock;
  using Waiter = std::function<void(const DnsAnswer&)>;
  enum class Lookup { hit, joined, query };

  explicit DnsCache(DnsCacheLimits limits = {}) : limits_(limits) {}

  // hit: `answer` is filled. joined: `waiter` runs when the query in flight completes.
  // query: the caller must resolve and call complete(); `waiter` runs then too.
  Lookup lookup(const std::string& name, Waiter waiter, DnsAnswer& answer,
                Clock::time_point now = Clock::now());
  void complete(const std::string& name, const DnsAnswer& answer,
                Clock::time_point now = Clock::now());
  size_t size() const;

 private:
  struct Entry {
    DnsAnswer answer;
    Clock::time_point expires;
  };
  DnsCacheLimits limits_;
  mutable std::mutex mutex_;
  std::unordered_map<std::string, Entry> entries_;
  std::unordered_map<std::string, std::vector<Waiter>> in_flight_;
};

}  // namespace egressd
