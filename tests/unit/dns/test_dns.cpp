#include <doctest/doctest.h>

#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <chrono>

#include "../../support/dns_server.hpp"
#include "dns/verifier.hpp"

using namespace egressd;
using namespace std::chrono_literals;

namespace {

IpAddress ip(const char* text) {
  return *IpAddress::parse(text);
}

DnsAnswer answer(std::vector<const char*> addresses, unsigned ttl = 60) {
  DnsAnswer a{DnsStatus::ok, {}, ttl};
  for (const char* text : addresses) a.addresses.push_back(ip(text));
  return a;
}

const Guard& guard() {
  static Guard g =
      std::get<Guard>(Guard::compile({"169.254.0.0/16", "127.0.0.0/8", "10.200.0.0/16"}));
  return g;
}

}  // namespace

TEST_CASE("DNS cache: TTL floor and ceiling, negative caching, errors not cached") {
  DnsCache cache(DnsCacheLimits{5, 300, 7, 100});
  auto now = DnsCache::Clock::now();
  DnsAnswer out;
  CHECK(cache.lookup(
            "a.example", [](const DnsAnswer&) {}, out, now) == DnsCache::Lookup::query);
  cache.complete("a.example", answer({"198.18.0.10"}, 1), now);  // TTL 1 -> floor 5
  CHECK(cache.lookup(
            "a.example", [](const DnsAnswer&) {}, out, now + 4s) == DnsCache::Lookup::hit);
  CHECK(out.addresses.size() == 1);
  CHECK(cache.lookup(
            "a.example", [](const DnsAnswer&) {}, out, now + 6s) == DnsCache::Lookup::query);
  cache.complete("a.example", answer({"198.18.0.10"}, 100000), now);  // ceiling 300
  CHECK(cache.lookup(
            "a.example", [](const DnsAnswer&) {}, out, now + 299s) == DnsCache::Lookup::hit);
  CHECK(cache.lookup(
            "a.example", [](const DnsAnswer&) {}, out, now + 301s) == DnsCache::Lookup::query);
  cache.complete("a.example", DnsAnswer{DnsStatus::nxdomain, {}, 0}, now);
  CHECK(cache.lookup(
            "a.example", [](const DnsAnswer&) {}, out, now + 6s) == DnsCache::Lookup::hit);
  CHECK(out.status == DnsStatus::nxdomain);
  CHECK(cache.lookup(
            "a.example", [](const DnsAnswer&) {}, out, now + 8s) == DnsCache::Lookup::query);
  cache.complete("a.example", DnsAnswer{DnsStatus::timeout, {}, 0}, now);
  CHECK(cache.lookup(
            "a.example", [](const DnsAnswer&) {}, out, now) == DnsCache::Lookup::query);
}

TEST_CASE("DNS cache: single flight and a bounded size") {
  DnsCache cache(DnsCacheLimits{5, 300, 5, 3});
  DnsAnswer out;
  int called = 0;
  CHECK(cache.lookup(
            "x.example", [&](const DnsAnswer&) { ++called; }, out) == DnsCache::Lookup::query);
  for (int i = 0; i < 999; ++i) {
    CHECK(cache.lookup(
              "x.example", [&](const DnsAnswer&) { ++called; }, out) == DnsCache::Lookup::joined);
  }
  cache.complete("x.example", answer({"198.18.0.1"}));
  CHECK(called == 1000);
  for (const char* name : {"b.example", "c.example", "d.example", "e.example"}) {
    cache.lookup(
        name, [](const DnsAnswer&) {}, out);
    cache.complete(name, answer({"198.18.0.2"}));
  }
  CHECK(cache.size() == 3);
}

TEST_CASE("choose_destination: dial, strict, off, guard") {
  auto original = ip("198.18.0.66");
  auto real = answer({"198.18.0.10", "fd00:198::10"});
  CHECK(*choose_destination(DnsVerify::off, real, original, guard()).dial == original);
  CHECK(*choose_destination(DnsVerify::dial, real, original, guard()).dial == ip("198.18.0.10"));
  CHECK(*choose_destination(DnsVerify::dial, real, ip("198.18.0.10"), guard()).dial ==
        ip("198.18.0.10"));
  CHECK(*choose_destination(DnsVerify::dial, real, ip("fd00:198::99"), guard()).dial ==
        ip("fd00:198::10"));
  CHECK(*choose_destination(DnsVerify::dial, answer({"fd00:198::10"}), original, guard()).dial ==
        ip("fd00:198::10"));
  auto strict = choose_destination(DnsVerify::strict, real, original, guard());
  CHECK_FALSE(strict.dial);
  CHECK(strict.refusal == Reason::dns_mismatch);
  CHECK(*choose_destination(DnsVerify::strict, real, ip("198.18.0.10"), guard()).dial ==
        ip("198.18.0.10"));
  auto guarded = choose_destination(DnsVerify::dial, answer({"169.254.169.254", "10.200.2.2"}),
                                    original, guard());
  CHECK(guarded.refusal == Reason::guarded_destination);
  auto mixed = choose_destination(DnsVerify::dial, answer({"169.254.169.254", "198.18.0.10"}),
                                  original, guard());
  CHECK(*mixed.dial == ip("198.18.0.10"));
  auto failed =
      choose_destination(DnsVerify::dial, DnsAnswer{DnsStatus::timeout, {}, 0}, original, guard());
  CHECK(failed.refusal == Reason::dns_failure);
  CHECK(choose_destination(DnsVerify::strict, DnsAnswer{DnsStatus::nxdomain, {}, 0}, original,
                           guard())
            .refusal == Reason::dns_failure);
}

TEST_CASE("choose_destination: the floor and the sandbox's address denies hold for every dial") {
  // A name whose answer is 0.0.0.0 or :: would make connect() reach the proxy host itself.
  Guard floor_only = std::get<Guard>(Guard::compile({}));
  for (const char* local : {"0.0.0.0", "::", "127.0.0.1", "::1", "::ffff:127.0.0.1"}) {
    CAPTURE(local);
    DnsAnswer a{DnsStatus::ok, {IpAddress::parse(local)->unmapped()}, 60};
    auto v = choose_destination(DnsVerify::dial, a, ip("198.18.0.66"), floor_only);
    CHECK_FALSE(v.dial);
    CHECK(v.refusal == Reason::guarded_destination);
  }
  SandboxSpec spec;
  spec.id = "t";
  spec.allow = {"*:80"};
  spec.deny = {"198.18.9.11", "0.0.0.0/0"};
  auto policy = std::get<std::shared_ptr<const CompiledPolicy>>(CompiledPolicy::compile(spec));
  auto only_denied = answer({"198.18.9.11"});
  for (DnsVerify mode : {DnsVerify::dial, DnsVerify::strict}) {
    auto v = choose_destination(mode, only_denied, ip("198.18.9.11"), floor_only, policy.get(), 80);
    CHECK_FALSE(v.dial);
    CHECK(v.refusal == Reason::denied_address);
    CHECK(v.rule == "198.18.9.11");
  }
  auto off =
      choose_destination(DnsVerify::off, {}, ip("198.18.9.11"), floor_only, policy.get(), 80);
  CHECK(off.refusal == Reason::denied_address);
  // Among several answers the denied one is skipped, even when the sandbox aimed at it.
  auto two = answer({"198.18.9.11", "198.18.0.10"});
  CHECK(*choose_destination(DnsVerify::dial, two, ip("198.18.9.11"), floor_only, policy.get(), 80)
             .dial == ip("198.18.0.10"));
  // Another port: the deny has no port, so it holds there too; a catch-all deny does not count.
  CHECK(*choose_destination(DnsVerify::dial, answer({"198.18.0.10"}), ip("198.18.0.10"), floor_only,
                            policy.get(), 80)
             .dial == ip("198.18.0.10"));
}

TEST_CASE("c-ares on Asio against a local DNS server: answers, single flight, timeouts") {
  testing::TestDnsServer server;
  server.set("a.test", {{"198.18.0.10", "198.18.0.11"}, {"fd00:198::10"}, 30});
  server.set("v6only.test", {{}, {"fd00:198::11"}, 30});
  asio::io_context io;
  Metrics metrics;
  DnsCache cache;
  DnsLookup lookup(io, cache, ResolverOptions{{server.address()}, 300, 1}, metrics);
  REQUIRE(lookup.channel().ok());
  std::vector<DnsAnswer> answers;
  auto ask = [&](std::string name, int times) {
    for (int i = 0; i < times; ++i) {
      asio::co_spawn(
          io,
          [&, name]() -> asio::awaitable<void> { answers.push_back(co_await lookup.lookup(name)); },
          asio::detached);
    }
    io.run();
    io.restart();
  };
  ask("a.test", 100);
  REQUIRE(answers.size() == 100);
  CHECK(answers[0].status == DnsStatus::ok);
  CHECK(answers[0].addresses.size() == 3);
  CHECK(answers[99].addresses == answers[0].addresses);
  CHECK(answers[0].ttl_seconds == 30);
  CHECK(server.queries() == 2);  // one A and one AAAA for a hundred askers
  answers.clear();
  ask("a.test", 1);
  CHECK(server.queries() == 2);  // cached
  answers.clear();
  ask("v6only.test", 1);
  CHECK(answers[0].addresses == std::vector<IpAddress>{ip("fd00:198::11")});
  answers.clear();
  ask("missing.test", 1);
  CHECK(answers[0].status == DnsStatus::nxdomain);
  answers.clear();
  server.drop_all(true);
  auto started = std::chrono::steady_clock::now();
  ask("slow.test", 1);
  auto waited = std::chrono::steady_clock::now() - started;
  CHECK(answers[0].status == DnsStatus::timeout);
  CHECK(waited < 2s);
}
