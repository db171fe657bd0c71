#include <doctest/doctest.h>

#include "core/hostname.hpp"
#include "core/ip.hpp"
#include "policy/rule.hpp"

using namespace egressd;

TEST_CASE("Hostname canonicalisation and validation") {
  struct Row {
    const char* input;
    const char* canonical;  // nullptr: refused
    const char* why = "";
  };
  const Row rows[] = {
      {"Example.COM", "example.com"},
      {"example.com.", "example.com"},
      {"a-b.c0.example", "a-b.c0.example"},
      {"xn--bcher-kva.example", "xn--bcher-kva.example"},
      {"example.com..", nullptr, "empty label"},
      {"", nullptr, "empty name"},
      {".", nullptr, "empty name"},
      {"a..b", nullptr, "empty label"},
      {"-a.com", nullptr, "label starts or ends"},
      {"a-.com", nullptr, "label starts or ends"},
      {"a_b.com", nullptr, "invalid character"},
      {"a b.com", nullptr, "invalid character"},
      {"bücher.de", nullptr, "non-ASCII"},
      {"1.2.3.4", nullptr, "all digits"},
      {"example.123", nullptr, "all digits"},
      {"123.example", "123.example"},
  };
  for (const Row& row : rows) {
    CAPTURE(row.input);
    auto parsed = Hostname::parse(row.input);
    if (row.canonical) {
      REQUIRE(std::holds_alternative<Hostname>(parsed));
      CHECK(std::get<Hostname>(parsed).str() == row.canonical);
    } else {
      REQUIRE(std::holds_alternative<std::string>(parsed));
      CHECK(std::get<std::string>(parsed).find(row.why) != std::string::npos);
    }
  }
  CHECK(std::holds_alternative<Hostname>(Hostname::parse(std::string(63, 'a') + ".com")));
  CHECK(std::get<std::string>(Hostname::parse(std::string(64, 'a') + ".com")).find("63") !=
        std::string::npos);
  std::string long_name;
  while (long_name.size() < 260) long_name += "abcdefghi.";
  long_name += "com";
  CHECK(std::get<std::string>(Hostname::parse(long_name)).find("253") != std::string::npos);
}

TEST_CASE("Rule grammar: every form") {
  struct Row {
    const char* text;
    RuleKind kind;
    const char* name;
    const char* prefix;
    uint16_t low, high;
  };
  const Row rows[] = {
      {"example.com", RuleKind::exact_name, "example.com", "", 0, 65535},
      {"EXAMPLE.com.", RuleKind::exact_name, "example.com", "", 0, 65535},
      {"*.example.com", RuleKind::below_name, "example.com", "", 0, 65535},
      {".example.com", RuleKind::suffix_name, "example.com", "", 0, 65535},
      {"*", RuleKind::any, "", "", 0, 65535},
      {"*:22", RuleKind::any, "", "", 22, 22},
      {"pypi.org:443", RuleKind::exact_name, "pypi.org", "", 443, 443},
      {"*.github.com:8000-8080", RuleKind::below_name, "github.com", "", 8000, 8080},
      {"203.0.113.7", RuleKind::address, "", "203.0.113.7/32", 0, 65535},
      {"203.0.113.0/24", RuleKind::address, "", "203.0.113.0/24", 0, 65535},
      {"10.0.0.7:5432", RuleKind::address, "", "10.0.0.7/32", 5432, 5432},
      {"0.0.0.0/0", RuleKind::address, "", "0.0.0.0/0", 0, 65535},
      {"2001:db8::1", RuleKind::address, "", "2001:db8::1/128", 0, 65535},
      {"2001:db8::/32", RuleKind::address, "", "2001:db8::/32", 0, 65535},
      {"::/0", RuleKind::address, "", "::/0", 0, 65535},
      {"[2001:db8::/32]:443", RuleKind::address, "", "2001:db8::/32", 443, 443},
      {"[2001:db8::1]:1-1024", RuleKind::address, "", "2001:db8::1/128", 1, 1024},
      {"[::1]", RuleKind::address, "", "::1/128", 0, 65535},
      {"*.github.io", RuleKind::below_name, "github.io", "", 0, 65535},
  };
  for (const Row& row : rows) {
    CAPTURE(row.text);
    auto parsed = parse_rule(row.text);
    if (auto* error = std::get_if<std::string>(&parsed)) FAIL(*error);
    const Rule& rule = std::get<Rule>(parsed);
    CHECK(rule.kind == row.kind);
    CHECK(rule.name == row.name);
    if (rule.kind == RuleKind::address) CHECK(rule.prefix.to_string() == row.prefix);
    CHECK(rule.ports.low == row.low);
    CHECK(rule.ports.high == row.high);
  }
}

TEST_CASE("Rule validation names why") {
  struct Row {
    const char* text;
    const char* why;
  };
  const Row rows[] = {
      {"", "empty rule"},
      {"*.com", "public suffix \"com\""},
      {".co.uk", "public suffix \"co.uk\""},
      {"*.co.uk:443", "public suffix"},
      {"a..example.com", "empty label"},
      {"exa_mple.com", "invalid character"},
      {"bücher.example", "non-ASCII"},
      {"10.0.0.1/8", "host bits set"},
      {"2001:db8::1/32", "host bits set"},
      {"10.0.0.0/33", "prefix length"},
      {"example.com:0", "1-65535"},
      {"example.com:65536", "1-65535"},
      {"example.com:http", "1-65535"},
      {"example.com:", "empty port"},
      {"example.com:90-80", "reversed"},
      {"a.*.example.com", "'*' is only allowed"},
      {"*example.com", "'*' is only allowed"},
      {"[2001:db8::1", "missing ']'"},
      {"[2001:db8::1]443", "expected ':PORTS'"},
      {"[10.0.0.1]:80", "only for IPv6"},
      {"300.1.1.1", "all digits"},
      // The common mistakes are explained, not only refused.
      {"https://api.example.com/v1", "rules are host[:ports], not URLs"},
      {"http://example.com", "not URLs"},
      {"pypi.org files.pythonhosted.org", "one rule per list entry"},
      {"a.example,b.example", "one rule per list entry"},
      {"github.com/org/repo", "a rule has no path"},
  };
  for (const Row& row : rows) {
    CAPTURE(row.text);
    auto parsed = parse_rule(row.text);
    REQUIRE(std::holds_alternative<std::string>(parsed));
    CHECK(std::get<std::string>(parsed).find(row.why) != std::string::npos);
  }
}

TEST_CASE("Addresses print as inet_ntop does, endpoints with [v6]:port") {
  for (const char* text : {"0.0.0.0", "1.2.3.4", "10.200.1.2", "99.100.9.10", "255.255.255.255",
                           "198.18.0.10", "::", "::1", "fd00:200:1::2", "::ffff:10.0.0.1"}) {
    auto address = IpAddress::parse(text);
    REQUIRE(address);
    CHECK(address->to_string() == text);
  }
  CHECK(endpoint_text(*IpAddress::parse("10.200.1.2"), 40000) == "10.200.1.2:40000");
  CHECK(endpoint_text(*IpAddress::parse("fd00::1"), 443) == "[fd00::1]:443");
}
