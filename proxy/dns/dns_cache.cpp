#include "dns/dns_cache.hpp"

#include <algorithm>

namespace egressd {

const char* to_string(DnsStatus status) {
  switch (status) {
    case DnsStatus::ok:
      return "ok";
    case DnsStatus::nxdomain:
      return "nxdomain";
    case DnsStatus::timeout:
      return "timeout";
    default:
      return "error";
  }
}

DnsCache::Lookup DnsCache::lookup(const std::string& name, Waiter waiter, DnsAnswer& answer,
                                  Clock::time_point now) {
  std::lock_guard lock(mutex_);
  if (auto found = entries_.find(name); found != entries_.end()) {
    if (found->second.expires > now) {
      answer = found->second.answer;
      return Lookup::hit;
    }
    entries_.erase(found);
  }
  auto [flight, first] = in_flight_.try_emplace(name);
  flight->second.push_back(std::move(waiter));
  return first ? Lookup::query : Lookup::joined;
}

void DnsCache::complete(const std::string& name, const DnsAnswer& answer, Clock::time_point now) {
  std::vector<Waiter> waiters;
  {
    std::lock_guard lock(mutex_);
    unsigned ttl = 0;
    if (answer.status == DnsStatus::ok) {
      ttl = std::clamp(answer.ttl_seconds, limits_.min_ttl_s, limits_.max_ttl_s);
    } else if (answer.status == DnsStatus::nxdomain) {
      ttl = limits_.negative_ttl_s;
    }  // timeouts and errors are not cached: the next asker tries again
    if (ttl > 0) {
      if (entries_.size() >= limits_.max_entries) {
        std::erase_if(entries_, [&](const auto& entry) { return entry.second.expires <= now; });
        if (entries_.size() >= limits_.max_entries) entries_.erase(entries_.begin());
      }
      entries_[name] = Entry{answer, now + std::chrono::seconds(ttl)};
    }
    if (auto flight = in_flight_.find(name); flight != in_flight_.end()) {
      waiters = std::move(flight->second);
      in_flight_.erase(flight);
    }
  }
  for (auto& waiter : waiters) waiter(answer);
}

size_t DnsCache::size() const {
  std::lock_guard lock(mutex_);
  return entries_.size();
}

}  // namespace egressd
