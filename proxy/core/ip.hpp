#pragma once
// IPv4 and IPv6 addresses and prefixes as 128-bit integers (v4 in the low 32 bits), so one
// longest-prefix structure serves both families.
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <variant>

struct sockaddr;

namespace egressd {

using uint128 = unsigned __int128;

enum class Family : uint8_t { v4, v6 };

struct IpAddress {
  Family family = Family::v4;
  uint128 bits = 0;

  static std::optional<IpAddress> parse(std::string_view text);
  static std::optional<IpAddress> from_sockaddr(const sockaddr* address);
  // IPv4-mapped IPv6 (::ffff:a.b.c.d) becomes plain IPv4, so both spellings match v4 rules.
  IpAddress unmapped() const;
  std::string to_string() const;
  int width() const { return family == Family::v4 ? 32 : 128; }
  bool operator==(const IpAddress&) const = default;
};

struct IpPrefix {
  IpAddress address;
  uint8_t length = 0;

  // "a.b.c.d", "a.b.c.d/n", "v6", "v6/n"; host bits must be zero.
  static std::variant<IpPrefix, std::string> parse(std::string_view text);
  bool contains(const IpAddress& candidate) const;
  bool overlaps(const IpPrefix& other) const;
  std::string to_string() const;
  // ::ffff:0:0/96 or a prefix inside it: an IPv4 prefix written in IPv6. Destinations are
  // unmapped before matching, so such a rule could never match; it is refused at load.
  bool is_v4_mapped() const;
  bool operator==(const IpPrefix&) const = default;
};

uint128 prefix_mask(int width, int length);

// "198.18.0.10:443" or "[fd00::1]:443".
std::string endpoint_text(const IpAddress& address, uint16_t port);

struct IpAddressHash {
  size_t operator()(const IpAddress& a) const {
    auto low = static_cast<uint64_t>(a.bits), high = static_cast<uint64_t>(a.bits >> 64);
    return static_cast<size_t>(
        (low ^ (high * 0x9E3779B97F4A7C15ULL) ^ static_cast<uint64_t>(a.family)) *
        0xBF58476D1CE4E5B9ULL);
  }
};

}  // namespace egressd
