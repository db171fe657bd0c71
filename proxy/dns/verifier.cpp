#include "dns/verifier.hpp"

#include <chrono>

#include <asio/post.hpp>
#include <asio/use_awaitable.hpp>
#include <climits>

#include "dns/message.hpp"

namespace egressd {

namespace {

// The DNS filter's upstream message as a cache entry: its status decides how long it is kept.
DnsAnswer answer_of_message(int status, std::span<const uint8_t> wire) {
  DnsAnswer answer;
  answer.received = std::chrono::steady_clock::now();
  PacketPtr message = parse_answer(wire);
  if (!message) {
    answer.status = status == ARES_ETIMEOUT ? DnsStatus::timeout : DnsStatus::error;
    return answer;
  }
  auto rcode = ldns_pkt_get_rcode(message.get());
  const ldns_rr_list* records = ldns_pkt_answer(message.get());
  size_t count = records ? ldns_rr_list_rr_count(records) : 0;
  if (rcode == LDNS_RCODE_NOERROR && count > 0) {
    answer.status = DnsStatus::ok;
    unsigned ttl = UINT32_MAX;
    for (size_t i = 0; i < count; ++i)
      ttl = std::min<unsigned>(ttl, ldns_rr_ttl(ldns_rr_list_rr(records, i)));
    answer.ttl_seconds = ttl;
  } else if (rcode == LDNS_RCODE_NOERROR || rcode == LDNS_RCODE_NXDOMAIN) {
    answer.status = DnsStatus::nxdomain;  // cached for the negative TTL
  } else {
    answer.status = DnsStatus::error;  // SERVFAIL and the like: never cached
  }
  answer.message = SharedPacket(message.release(), LdnsPacketFree{});
  return answer;
}

}  // namespace

asio::awaitable<DnsAnswer> DnsLookup::through_cache(std::string key, Ask ask) {
  // A named initiation: GCC 12 destroys temporaries inside co_await expressions twice.
  auto initiation = [this, key, ask](auto handler) {
    auto shared = std::make_shared<decltype(handler)>(std::move(handler));
    auto executor = io_.get_executor();
    DnsCache::Waiter waiter = [shared, executor](const DnsAnswer& answer) {
      asio::post(executor, [shared, answer]() mutable { (*shared)(std::move(answer)); });
    };
    DnsAnswer hit;
    switch (cache_.lookup(key, waiter, hit)) {
      case DnsCache::Lookup::hit:
        metrics_.dns_cache("hit");
        waiter(hit);
        break;
      case DnsCache::Lookup::joined:
        metrics_.dns_cache("joined");
        break;
      case DnsCache::Lookup::query:
        metrics_.dns_cache("miss");
        ask([this, key, asked = std::chrono::steady_clock::now()](DnsAnswer answer) {
          metrics_.dns_query(to_string(answer.status));
          metrics_.dns_lookup_seconds(
              std::chrono::duration<double>(std::chrono::steady_clock::now() - asked).count());
          cache_.complete(key, answer);
        });
        break;
    }
  };
  DnsAnswer answer = co_await asio::async_initiate<const asio::use_awaitable_t<>, void(DnsAnswer)>(
      initiation, asio::use_awaitable);
  co_return answer;
}

asio::awaitable<DnsAnswer> DnsLookup::lookup(std::string name) {
  Ask ask = [this, name](AresChannel::Callback done) { channel_.resolve(name, std::move(done)); };
  DnsAnswer answer = co_await through_cache(name, std::move(ask));
  co_return answer;
}

asio::awaitable<DnsAnswer> DnsLookup::exchange(std::string key,
                                               std::function<std::vector<uint8_t>()> make_query) {
  Ask ask = [this, make_query](AresChannel::Callback done) {
    channel_.send(make_query(), [done = std::move(done)](int status, std::vector<uint8_t> wire) {
      done(answer_of_message(status, wire));
    });
  };
  DnsAnswer answer = co_await through_cache(std::move(key), std::move(ask));
  co_return answer;
}

Verification choose_destination(DnsVerify mode, const DnsAnswer& answer, const IpAddress& original,
                                const Guard& guard, const CompiledPolicy* policy, uint16_t port) {
  // Why `address` may not be dialled, or nothing.
  auto refusal_of = [&](const IpAddress& address) -> std::optional<Verification> {
    if (auto entry = guard.covering(address); !entry.empty())
      return Verification{std::nullopt, Reason::guarded_destination, entry};
    if (policy) {
      if (auto rule = policy->address_denial(address, port); !rule.empty())
        return Verification{std::nullopt, Reason::denied_address, rule};
    }
    return std::nullopt;
  };
  if (mode == DnsVerify::off) {
    if (auto refused = refusal_of(original)) return *refused;
    return Verification{original, {}, {}};
  }
  if (answer.status != DnsStatus::ok) return Verification{std::nullopt, Reason::dns_failure, {}};
  std::optional<Verification> first_refusal;
  bool any_dialable = false;
  for (const IpAddress& address : answer.addresses) {
    if (auto refused = refusal_of(address)) {
      // A policy deny says more about the sandbox's intent than the guard does.
      if (!first_refusal || (refused->refusal == Reason::denied_address &&
                             first_refusal->refusal != Reason::denied_address))
        first_refusal = refused;
      continue;
    }
    any_dialable = true;
    if (address == original) return Verification{original, {}, {}};
  }
  if (!any_dialable) return *first_refusal;  // answers were non-empty (status ok)
  if (mode == DnsVerify::strict) return Verification{std::nullopt, Reason::dns_mismatch, {}};
  for (bool same_family : {true, false}) {
    for (const IpAddress& address : answer.addresses) {
      if ((address.family == original.family) == same_family && !refusal_of(address))
        return Verification{address, {}, {}};
    }
  }
  return *first_refusal;
}

}  // namespace egressd
