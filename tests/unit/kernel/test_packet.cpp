#include <doctest/doctest.h>

#include <vector>

#include "kernel/netfilter.hpp"
#include "kernel/packet.hpp"

using namespace egressd;

namespace {

std::vector<uint8_t> syn4(uint8_t ihl = 5, uint8_t protocol = 6) {
  std::vector<uint8_t> p = {uint8_t(0x40 | ihl),
                            0,
                            0,
                            60,
                            0,
                            0,
                            0x40,
                            0,
                            64,
                            protocol,
                            0,
                            0,
                            10,
                            200,
                            1,
                            2,
                            198,
                            18,
                            0,
                            11};
  p.resize(size_t(ihl) * 4, 1);                               // options
  for (uint8_t b : {0x9c, 0x40, 0x23, 0x28}) p.push_back(b);  // ports 40000 -> 9000
  return p;
}

}  // namespace

TEST_CASE("Refused SYNs: addresses and port of IPv4 and IPv6, nothing else") {
  KernelRefusal r;
  auto v4 = syn4();
  REQUIRE(parse_tcp_packet(v4.data(), v4.size(), r));
  CHECK(r.source == *IpAddress::parse("10.200.1.2"));
  CHECK(r.destination == *IpAddress::parse("198.18.0.11"));
  CHECK(r.port == 9000);
  auto options = syn4(6);  // the TCP header after 24 bytes of IP header
  REQUIRE(parse_tcp_packet(options.data(), options.size(), r));
  CHECK(r.port == 9000);
  std::vector<uint8_t> v6 = {0x60, 0, 0, 0, 0, 20, 6, 64};
  for (int i = 0; i < 16; ++i) v6.push_back(i == 0 ? 0xfd : i == 15 ? 2 : 0);
  for (int i = 0; i < 16; ++i) v6.push_back(i == 0 ? 0xfd : i == 15 ? 0x11 : 0);
  for (uint8_t b : {0x9c, 0x40, 0x00, 0x16}) v6.push_back(b);
  REQUIRE(parse_tcp_packet(v6.data(), v6.size(), r));
  CHECK(r.source == *IpAddress::parse("fd00::2"));
  CHECK(r.destination == *IpAddress::parse("fd00::11"));
  CHECK(r.port == 22);
  // Refused: UDP, an IPv6 extension header, an IHL under 5, any copy cut short, version 5.
  auto udp = syn4(5, 17);
  CHECK_FALSE(parse_tcp_packet(udp.data(), udp.size(), r));
  auto extension = v6;
  extension[6] = 0;  // hop-by-hop options first
  CHECK_FALSE(parse_tcp_packet(extension.data(), extension.size(), r));
  auto bad_ihl = syn4();
  bad_ihl[0] = 0x44;
  CHECK_FALSE(parse_tcp_packet(bad_ihl.data(), bad_ihl.size(), r));
  for (size_t cut = 0; cut < v4.size(); ++cut) CHECK_FALSE(parse_tcp_packet(v4.data(), cut, r));
  for (size_t cut = 0; cut < v6.size(); ++cut) CHECK_FALSE(parse_tcp_packet(v6.data(), cut, r));
  v4[0] = 0x55;
  CHECK_FALSE(parse_tcp_packet(v4.data(), v4.size(), r));
}

TEST_CASE("Refused SYNs: NFLOG sequence gaps count the messages the socket dropped") {
  RefusalLog log;
  CHECK(log.lost() == 0);
  log.sequence(7);  // the first one seen: nothing before it is known to be lost
  CHECK(log.lost() == 0);
  log.sequence(8);
  CHECK(log.lost() == 0);
  log.sequence(12);  // 9, 10, 11 dropped
  CHECK(log.lost() == 3);
  log.sequence(0xffffffffu);
  log.sequence(1);  // wrapped: 0 dropped
  CHECK(log.lost() == 3 + (0xffffffffu - 13) + 1);
}
