#pragma once
// Destination verification (DESIGN.md dns.verify): after a domain rule allowed a connection,
// the name is resolved (shared cache, single-flight) and the connection may only go to one of
// its answers, never to a guarded one.
#include <asio/awaitable.hpp>
#include <asio/io_context.hpp>
#include <functional>
#include <optional>

#include "core/modes.hpp"
#include "core/reason.hpp"
#include "dns/resolver.hpp"
#include "metrics/metrics.hpp"
#include "policy/sandbox_policy.hpp"

namespace egressd {

class DnsLookup {
 public:
  DnsLookup(asio::io_context& io, DnsCache& cache, const ResolverOptions& options, Metrics& metrics)
      : io_(io), cache_(cache), channel_(io, options), metrics_(metrics) {}
  const AresChannel& channel() const { return channel_; }
  asio::awaitable<DnsAnswer> lookup(std::string name);
  // The DNS filter's upstream exchange: the message `make_query` writes is sent unless the
  // shared cache holds `key`'s answer ("name/TYPE") or a query for it is in flight (then it
  // is never written). The answer's `message` is the upstream's answer, null when none came.
  asio::awaitable<DnsAnswer> exchange(std::string key,
                                      std::function<std::vector<uint8_t>()> make_query);

 private:
  // Starts one upstream query; its callback gets the answer to cache.
  using Ask = std::function<void(AresChannel::Callback)>;
  // Cache, single-flight and counters around `ask`, shared by lookup() and exchange().
  asio::awaitable<DnsAnswer> through_cache(std::string key, Ask ask);

  asio::io_context& io_;
  DnsCache& cache_;
  AresChannel channel_;
  Metrics& metrics_;
};

struct Verification {
  std::optional<IpAddress> dial;  // where to connect; empty when refused
  Reason refusal = Reason::dns_failure;
  std::string_view rule;  // the guard entry or address deny rule that refused, if one did
};

// Pure: picks where to dial given the answers (dial / strict), or why not. Every address it
// returns passes the guard and `policy`'s address denies on `port` (policy may be null).
Verification choose_destination(DnsVerify mode, const DnsAnswer& answer, const IpAddress& original,
                                const Guard& guard, const CompiledPolicy* policy = nullptr,
                                uint16_t port = 0);

}  // namespace egressd
