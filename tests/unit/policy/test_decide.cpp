#include <doctest/doctest.h>

#include "inspect/hostname.hpp"
#include "policy/sandbox_policy.hpp"

using namespace egressd;

namespace {

std::shared_ptr<const CompiledPolicy> compile(std::vector<std::string> allow,
                                              std::vector<std::string> deny,
                                              Verdict default_verdict = Verdict::deny,
                                              Mode mode = Mode::enforce) {
  SandboxSpec spec;
  spec.id = "t";
  spec.allow = std::move(allow);
  spec.deny = std::move(deny);
  spec.default_verdict = default_verdict;
  spec.mode = mode;
  auto compiled = CompiledPolicy::compile(spec);
  if (auto* error = std::get_if<FieldError>(&compiled))
    FAIL(error->field << ": " << error->message);
  return std::get<std::shared_ptr<const CompiledPolicy>>(compiled);
}

const Guard& default_guard() {
  static const Guard guard =
      std::get<Guard>(Guard::compile({"169.254.0.0/16", "127.0.0.0/8", "::1/128", "fe80::/10"}));
  return guard;
}

struct Case {
  const char* host;  // "" = no name observed
  const char* ip;    // "" = no address
  uint16_t port;
  Verdict verdict;
  Reason reason;
  const char* rule;
};

void run(const CompiledPolicy& policy, const std::vector<Case>& cases) {
  for (const Case& c : cases) {
    CAPTURE(c.host);
    CAPTURE(c.ip);
    CAPTURE(c.port);
    std::string name;
    DecisionInput input;
    input.port = c.port;
    if (*c.host) {
      name = std::get<Hostname>(Hostname::parse(c.host)).str();
      input.name = &name;
    }
    if (*c.ip) input.destination = IpAddress::parse(c.ip);
    Decision d = decide(default_guard(), &policy, Verdict::deny, input);
    CHECK(to_string(d.verdict) == to_string(c.verdict));
    CHECK(to_string(d.reason) == to_string(c.reason));
    CHECK(d.rule == c.rule);
  }
}

}  // namespace

TEST_CASE("DESIGN.md example policy") {
  auto policy = compile({"*.github.com", "pypi.org", "198.18.0.0/24", "10.0.0.7:5432", "*:22"},
                        {"0.0.0.0/0", "::/0"});
  run(*policy,
      {
          {"api.github.com", "198.19.0.1", 443, Verdict::allow, Reason::allowed_domain,
           "*.github.com"},
          {"a.b.github.com", "198.19.0.1", 443, Verdict::allow, Reason::allowed_domain,
           "*.github.com"},
          {"github.com", "198.19.0.1", 443, Verdict::deny, Reason::denied_address, "0.0.0.0/0"},
          {"evilgithub.com", "198.19.0.1", 443, Verdict::deny, Reason::denied_address, "0.0.0.0/0"},
          {"PyPI.org.", "198.19.0.1", 443, Verdict::allow, Reason::allowed_domain, "pypi.org"},
          {"files.pypi.org", "198.19.0.1", 443, Verdict::deny, Reason::denied_address, "0.0.0.0/0"},
          {"", "198.18.0.77", 8080, Verdict::allow, Reason::allowed_address, "198.18.0.0/24"},
          {"", "198.18.1.1", 8080, Verdict::deny, Reason::denied_address, "0.0.0.0/0"},
          {"", "10.0.0.7", 5432, Verdict::allow, Reason::allowed_address, "10.0.0.7:5432"},
          {"", "10.0.0.7", 5433, Verdict::deny, Reason::denied_address, "0.0.0.0/0"},
          {"", "198.19.9.9", 22, Verdict::allow, Reason::allowed_address, "*:22"},
          {"any.example", "198.19.9.9", 22, Verdict::allow, Reason::allowed_domain, "*:22"},
          {"", "fd00:198::1", 443, Verdict::deny, Reason::denied_address, "::/0"},
          {"", "fd00:198::1", 22, Verdict::allow, Reason::allowed_address, "*:22"},
          {"", "169.254.169.254", 80, Verdict::deny, Reason::guarded_destination, "169.254.0.0/16"},
          {"api.github.com", "127.0.0.1", 443, Verdict::deny, Reason::guarded_destination,
           "127.0.0.0/8"},
          {"", "::1", 22, Verdict::deny, Reason::guarded_destination, "::1/128"},
      });
}

TEST_CASE("Most specific name wins; ties go to allow") {
  auto policy = compile({"*.github.com", ".example.com", "x.y.example.com", "*.b.org", "*:443"},
                        {"gist.github.com", "*.y.example.com", ".b.org", "*.a.b.org", "*"});
  run(*policy,
      {
          {"gist.github.com", "", 443, Verdict::deny, Reason::denied_domain, "gist.github.com"},
          {"api.gist.github.com", "", 443, Verdict::allow, Reason::allowed_domain, "*.github.com"},
          {"example.com", "", 443, Verdict::allow, Reason::allowed_domain, ".example.com"},
          {"q.example.com", "", 443, Verdict::allow, Reason::allowed_domain, ".example.com"},
          {"z.y.example.com", "", 443, Verdict::deny, Reason::denied_domain, "*.y.example.com"},
          {"x.y.example.com", "", 443, Verdict::allow, Reason::allowed_domain, "x.y.example.com"},
          {"y.example.com", "", 443, Verdict::allow, Reason::allowed_domain, ".example.com"},
          // "*.b.org" and ".b.org" have equal specificity below b.org: allow wins.
          {"c.b.org", "", 443, Verdict::allow, Reason::allowed_domain, "*.b.org"},
          {"b.org", "", 443, Verdict::deny, Reason::denied_domain, ".b.org"},
          {"c.a.b.org", "", 443, Verdict::deny, Reason::denied_domain, "*.a.b.org"},
          // '*' rules: "*:443" allow and "*" deny are both least specific: allow wins.
          {"unrelated.net", "", 443, Verdict::allow, Reason::allowed_domain, "*:443"},
          {"unrelated.net", "", 80, Verdict::deny, Reason::denied_domain, "*"},
      });
}

TEST_CASE("Ports select rules; a non-matching port falls to less specific rules") {
  auto policy = compile({"api.example.com:443", "*.example.com:8000-8999"}, {"*.example.com"});
  run(*policy,
      {
          {"api.example.com", "", 443, Verdict::allow, Reason::allowed_domain,
           "api.example.com:443"},
          {"api.example.com", "", 80, Verdict::deny, Reason::denied_domain, "*.example.com"},
          {"api.example.com", "", 8443, Verdict::allow, Reason::allowed_domain,
           "*.example.com:8000-8999"},
          {"other.example.com", "", 9000, Verdict::deny, Reason::denied_domain, "*.example.com"},
          {"example.net", "", 443, Verdict::deny, Reason::default_deny, ""},
      });
}

TEST_CASE("Longest prefix wins; equal prefixes tie to allow; IPv6") {
  auto policy = compile(
      {"198.18.0.0/16", "198.18.5.5", "fd00:198::/48", "[fd00:198:0:1::/64]:443", "10.0.0.0/8"},
      {"198.18.5.0/24", "fd00:198:0:1::/64", "10.0.0.0/8", "198.18.0.0/15"}, Verdict::allow);
  run(*policy,
      {
          {"", "198.18.1.1", 80, Verdict::allow, Reason::allowed_address, "198.18.0.0/16"},
          {"", "198.18.5.1", 80, Verdict::deny, Reason::denied_address, "198.18.5.0/24"},
          {"", "198.18.5.5", 80, Verdict::allow, Reason::allowed_address, "198.18.5.5"},
          {"", "198.19.0.1", 80, Verdict::deny, Reason::denied_address, "198.18.0.0/15"},
          {"", "10.1.2.3", 80, Verdict::allow, Reason::allowed_address, "10.0.0.0/8"},
          {"", "fd00:198::9", 80, Verdict::allow, Reason::allowed_address, "fd00:198::/48"},
          {"", "fd00:198:0:1::9", 80, Verdict::deny, Reason::denied_address, "fd00:198:0:1::/64"},
          {"", "fd00:198:0:1::9", 443, Verdict::allow, Reason::allowed_address,
           "[fd00:198:0:1::/64]:443"},
          {"", "fd00:200::1", 80, Verdict::allow, Reason::default_allow, ""},
          {"", "203.0.113.1", 80, Verdict::allow, Reason::default_allow, ""},
      });
}

TEST_CASE("Domain rules decide before address rules; IPv4-mapped destinations are v4") {
  auto policy = compile({"198.18.0.10"}, {"evil.example"});
  run(*policy, {
                   {"evil.example", "198.18.0.10", 443, Verdict::deny, Reason::denied_domain,
                    "evil.example"},
                   {"good.example", "198.18.0.10", 443, Verdict::allow, Reason::allowed_address,
                    "198.18.0.10"},
               });
  auto mapped = IpAddress::parse("::ffff:198.18.0.10")->unmapped();
  CHECK(mapped.family == Family::v4);
  CHECK(policy->decide(nullptr, mapped, 1).reason == Reason::allowed_address);
}

TEST_CASE("Audit mode lets denials through as audit_allow, but not the guard") {
  auto policy = compile({"pypi.org"}, {}, Verdict::deny, Mode::audit);
  run(*policy,
      {
          {"pypi.org", "198.18.0.1", 443, Verdict::allow, Reason::allowed_domain, "pypi.org"},
          {"evil.example", "198.18.0.1", 443, Verdict::allow, Reason::audit_allow, ""},
          {"pypi.org", "169.254.169.254", 443, Verdict::deny, Reason::guarded_destination,
           "169.254.0.0/16"},
      });
}

TEST_CASE("Unknown source") {
  DecisionInput input;
  auto address = IpAddress::parse("198.18.0.1");
  input.destination = address;
  input.port = 443;
  CHECK(decide(default_guard(), nullptr, Verdict::deny, input).reason == Reason::unknown_source);
  CHECK(decide(default_guard(), nullptr, Verdict::allow, input).reason == Reason::default_allow);
  input.destination = IpAddress::parse("169.254.169.254");
  CHECK(decide(default_guard(), nullptr, Verdict::allow, input).reason ==
        Reason::guarded_destination);
}

TEST_CASE("Compile errors name the field") {
  SandboxSpec spec;
  spec.id = "x";
  spec.allow = {"ok.example", "*.com"};
  auto compiled = CompiledPolicy::compile(spec);
  REQUIRE(std::holds_alternative<FieldError>(compiled));
  CHECK(std::get<FieldError>(compiled).field == "egress.allow[1]");
  CHECK(std::get<FieldError>(compiled).message.find("\"*.com\"") != std::string::npos);
  spec.allow = {};
  spec.deny = {"10.0.0.0/8", "10.0.0.1/8"};
  compiled = CompiledPolicy::compile(spec);
  REQUIRE(std::holds_alternative<FieldError>(compiled));
  CHECK(std::get<FieldError>(compiled).field == "egress.deny[1]");
  CHECK(std::get<FieldError>(compiled).message.find("host bits") != std::string::npos);
}

TEST_CASE("Reasons are a closed set with stable names") {
  CHECK(kAllReasons.size() == 21);
  for (Reason reason : kAllReasons) CHECK(reason_from_string(to_string(reason)) == reason);
  CHECK_FALSE(reason_from_string("bogus").has_value());
}
