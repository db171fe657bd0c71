#pragma once
// One policy rule, `HOST` or `HOST:PORTS` (DESIGN.md "Policy").
#include <cstdint>
#include <string>
#include <string_view>
#include <variant>

#include "core/ip.hpp"

namespace egressd {

struct PortRange {
  uint16_t low = 0;
  uint16_t high = 65535;
  bool contains(uint16_t port) const { return port >= low && port <= high; }
  bool operator==(const PortRange&) const = default;
};

enum class RuleKind : uint8_t {
  exact_name,   // example.com
  below_name,   // *.example.com: strictly below, any depth
  suffix_name,  // .example.com: the name and everything below
  any,          // *: every name and every address
  address,      // 203.0.113.7, 2001:db8::/32
};

struct Rule {
  RuleKind kind = RuleKind::any;
  std::string name;  // canonical, for the *_name kinds (without "*." or ".")
  IpPrefix prefix;   // for address rules
  PortRange ports;
};

// Parses and validates one rule; the error says why, without the rule text or field.
std::variant<Rule, std::string> parse_rule(std::string_view text);

}  // namespace egressd
