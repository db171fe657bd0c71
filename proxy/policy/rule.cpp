#include "policy/rule.hpp"

#include <optional>

#include <charconv>

#include "core/hostname.hpp"
#include "policy/public_suffix.hpp"

namespace egressd {

std::variant<Rule, std::string> parse_rule_strict(std::string_view text);
namespace {

std::variant<uint16_t, std::string> parse_port(std::string_view digits) {
  unsigned value = 0;
  auto [end, error] = std::from_chars(digits.data(), digits.data() + digits.size(), value);
  if (digits.empty() || error != std::errc() || end != digits.data() + digits.size() || value < 1 ||
      value > 65535) {
    return "port \"" + std::string(digits) + "\" is not a number 1-65535";
  }
  return static_cast<uint16_t>(value);
}

std::variant<PortRange, std::string> parse_ports(std::string_view text) {
  auto dash = text.find('-');
  auto low = parse_port(text.substr(0, dash));
  if (auto* error = std::get_if<std::string>(&low)) return *error;
  if (dash == std::string_view::npos)
    return PortRange{std::get<uint16_t>(low), std::get<uint16_t>(low)};
  auto high = parse_port(text.substr(dash + 1));
  if (auto* error = std::get_if<std::string>(&high)) return *error;
  if (std::get<uint16_t>(high) < std::get<uint16_t>(low))
    return std::string("port range is reversed");
  return PortRange{std::get<uint16_t>(low), std::get<uint16_t>(high)};
}

std::variant<Rule, std::string> parse_host(std::string_view host, bool bracketed) {
  Rule rule;
  if (host == "*" && !bracketed) {
    rule.kind = RuleKind::any;
    return rule;
  }
  bool looks_like_address = bracketed || host.find('/') != std::string_view::npos ||
                            host.find(':') != std::string_view::npos ||
                            IpAddress::parse(host).has_value();
  if (looks_like_address) {
    auto prefix = IpPrefix::parse(host);
    if (auto* error = std::get_if<std::string>(&prefix)) return *error;
    rule.kind = RuleKind::address;
    rule.prefix = std::get<IpPrefix>(prefix);
    if (rule.prefix.is_v4_mapped()) {
      return std::string("an IPv4-mapped IPv6 prefix; write the IPv4 prefix instead");
    }
    if (bracketed && rule.prefix.address.family != Family::v6) {
      return std::string("brackets are only for IPv6");
    }
    return rule;
  }
  std::string_view name = host;
  if (name.starts_with("*.")) {
    rule.kind = RuleKind::below_name;
    name.remove_prefix(2);
  } else if (name.starts_with(".")) {
    rule.kind = RuleKind::suffix_name;
    name.remove_prefix(1);
  } else {
    rule.kind = RuleKind::exact_name;
  }
  if (name.find('*') != std::string_view::npos) {
    return std::string("'*' is only allowed as a whole leading label (\"*.example.com\") or alone");
  }
  auto canonical = Hostname::parse(name);
  if (auto* error = std::get_if<std::string>(&canonical)) return *error;
  rule.name = std::get<Hostname>(canonical).str();
  if (rule.kind != RuleKind::exact_name && is_public_suffix(rule.name)) {
    return "wildcard over the public suffix \"" + rule.name + "\"";
  }
  return rule;
}

}  // namespace

namespace {

// The mistakes people make most when they write a rule, explained instead of only refused.
std::optional<std::string> common_mistake(std::string_view text) {
  if (text.find("://") != std::string_view::npos)
    return std::string(
        "rules are host[:ports], not URLs: for https://api.example.com/v1 write "
        "\"api.example.com\" (or \"api.example.com:443\")");
  if (text.find_first_of(" \t,;") != std::string_view::npos)
    return std::string("one rule per list entry: this one has spaces, commas or semicolons");
  auto slash = text.find('/');
  if (slash != std::string_view::npos && slash > 0) {
    std::string_view before = text.substr(0, slash);
    bool letters = before.find_first_not_of("0123456789.:[]abcdefABCDEF") != std::string_view::npos;
    if (letters)
      return std::string(
          "a rule has no path: write the host alone (\"example.com\"), paths are not "
          "decided (egressd sees the TLS name, not the request)");
  }
  return std::nullopt;
}

}  // namespace

std::variant<Rule, std::string> parse_rule(std::string_view text) {
  auto parsed = parse_rule_strict(text);
  if (std::holds_alternative<std::string>(parsed)) {
    if (auto hint = common_mistake(text)) return *hint;
  }
  return parsed;
}

std::variant<Rule, std::string> parse_rule_strict(std::string_view text) {
  if (text.empty()) return std::string("empty rule");
  std::string_view host = text;
  std::string_view ports;
  bool bracketed = false;
  if (text.front() == '[') {
    auto close = text.find(']');
    if (close == std::string_view::npos) return std::string("missing ']'");
    host = text.substr(1, close - 1);
    auto rest = text.substr(close + 1);
    if (!rest.empty()) {
      if (rest.front() != ':') return std::string("expected ':PORTS' after ']'");
      ports = rest.substr(1);
      if (ports.empty()) return std::string("empty port after ':'");
    }
    bracketed = true;
  } else if (auto colon = text.find(':'); colon != std::string_view::npos &&
                                          text.find(':', colon + 1) == std::string_view::npos) {
    host = text.substr(0, colon);
    ports = text.substr(colon + 1);
    if (ports.empty()) return std::string("empty port after ':'");
  }
  auto rule = parse_host(host, bracketed);
  if (auto* error = std::get_if<std::string>(&rule)) return *error;
  if (!ports.empty() || (bracketed && text.back() != ']')) {
    auto range = parse_ports(ports);
    if (auto* error = std::get_if<std::string>(&range)) return *error;
    std::get<Rule>(rule).ports = std::get<PortRange>(range);
  }
  return rule;
}

}  // namespace egressd
