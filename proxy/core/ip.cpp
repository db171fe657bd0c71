#include "core/ip.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <charconv>
#include <cstring>

namespace egressd {

uint128 prefix_mask(int width, int length) {
  if (length == 0) return 0;
  uint128 all = width == 32 ? uint128(0xFFFFFFFFu) : ~uint128(0);
  return (all << (width - length)) & all;
}

std::optional<IpAddress> IpAddress::parse(std::string_view text) {
  char buffer[INET6_ADDRSTRLEN + 1];
  if (text.empty() || text.size() >= sizeof(buffer)) return std::nullopt;
  std::memcpy(buffer, text.data(), text.size());
  buffer[text.size()] = '\0';
  in_addr v4;
  if (inet_pton(AF_INET, buffer, &v4) == 1) return IpAddress{Family::v4, ntohl(v4.s_addr)};
  in6_addr v6;
  if (inet_pton(AF_INET6, buffer, &v6) == 1) {
    uint128 bits = 0;
    for (uint8_t byte : v6.s6_addr) bits = (bits << 8) | byte;
    return IpAddress{Family::v6, bits};
  }
  return std::nullopt;
}

std::optional<IpAddress> IpAddress::from_sockaddr(const sockaddr* address) {
  if (address->sa_family == AF_INET) {
    auto* v4 = reinterpret_cast<const sockaddr_in*>(address);
    return IpAddress{Family::v4, ntohl(v4->sin_addr.s_addr)};
  }
  if (address->sa_family == AF_INET6) {
    auto* v6 = reinterpret_cast<const sockaddr_in6*>(address);
    uint128 bits = 0;
    for (uint8_t byte : v6->sin6_addr.s6_addr) bits = (bits << 8) | byte;
    return IpAddress{Family::v6, bits}.unmapped();
  }
  return std::nullopt;
}

IpAddress IpAddress::unmapped() const {
  if (family == Family::v6 && (bits >> 32) == 0xFFFF) {
    return IpAddress{Family::v4, bits & 0xFFFFFFFFu};
  }
  return *this;
}

// IPv4 by hand: glibc's inet_ntop formats it with sprintf, and this runs several times per
// connection (access log, registry, denials).
std::string IpAddress::to_string() const {
  char buffer[INET6_ADDRSTRLEN];
  if (family == Family::v4) {
    char* out = buffer;
    for (int shift = 24; shift >= 0; shift -= 8) {
      unsigned octet = static_cast<unsigned>(bits >> shift) & 0xff;
      if (octet >= 100) *out++ = static_cast<char>('0' + octet / 100);
      if (octet >= 10) *out++ = static_cast<char>('0' + octet / 10 % 10);
      *out++ = static_cast<char>('0' + octet % 10);
      if (shift) *out++ = '.';
    }
    return std::string(buffer, out);
  } else {
    in6_addr v6;
    for (int i = 15; i >= 0; --i) v6.s6_addr[i] = static_cast<uint8_t>(bits >> (8 * (15 - i)));
    inet_ntop(AF_INET6, &v6, buffer, sizeof(buffer));
  }
  return buffer;
}

std::string endpoint_text(const IpAddress& address, uint16_t port) {
  return address.family == Family::v6 ? "[" + address.to_string() + "]:" + std::to_string(port)
                                      : address.to_string() + ":" + std::to_string(port);
}

std::variant<IpPrefix, std::string> IpPrefix::parse(std::string_view text) {
  auto slash = text.find('/');
  auto address = IpAddress::parse(text.substr(0, slash));
  if (!address) return std::string("not an IP address or prefix");
  int length = address->width();
  if (slash != std::string_view::npos) {
    auto digits = text.substr(slash + 1);
    auto [end, error] = std::from_chars(digits.data(), digits.data() + digits.size(), length);
    if (digits.empty() || error != std::errc() || end != digits.data() + digits.size() ||
        length < 0 || length > address->width()) {
      return std::string("prefix length must be 0-") + std::to_string(address->width());
    }
  }
  if (address->bits & ~prefix_mask(address->width(), length)) {
    return std::string("host bits set after /") + std::to_string(length);
  }
  return IpPrefix{*address, static_cast<uint8_t>(length)};
}

bool IpPrefix::contains(const IpAddress& candidate) const {
  if (candidate.family != address.family) return false;
  return (candidate.bits & prefix_mask(address.width(), length)) == address.bits;
}

bool IpPrefix::overlaps(const IpPrefix& other) const {
  if (other.address.family != address.family) return false;
  int shorter = length < other.length ? length : other.length;
  uint128 mask = prefix_mask(address.width(), shorter);
  return (address.bits & mask) == (other.address.bits & mask);
}

bool IpPrefix::is_v4_mapped() const {
  return address.family == Family::v6 && length >= 96 && (address.bits >> 32) == 0xFFFF;
}

std::string IpPrefix::to_string() const {
  return address.to_string() + "/" + std::to_string(length);
}

}  // namespace egressd
