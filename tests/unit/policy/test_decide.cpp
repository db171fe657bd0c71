#include <doctest/doctest.h>

#include "core/hostname.hpp"
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
  static const Guard guard = std::get<Guard>(Guard::compile({}));  // the floor alone
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
  CHECK(kAllReasons.size() == 27);
  CHECK(is_dns_only(Reason::filtered_answer));
  CHECK_FALSE(is_dns_only(Reason::allowed_domain));
  for (Reason reason : kAllReasons) CHECK(reason_from_string(to_string(reason)) == reason);
  CHECK_FALSE(reason_from_string("bogus").has_value());
}

TEST_CASE("Guard: the built-in floor holds whatever guard.deny says; guard.allow lifts exactly") {
  // guard.deny adds: an operator list of sandbox ranges must not open the metadata service.
  Guard guard = std::get<Guard>(Guard::compile({"10.200.0.0/16", "fd00:200::/48"}));
  for (const char* address : {"0.0.0.0",
                              "0.1.2.3",
                              "::",
                              "127.0.0.1",
                              "127.255.255.254",
                              "::1",
                              "169.254.169.254",
                              "fe80::1",
                              "224.0.0.1",
                              "239.255.255.250",
                              "ff02::1",
                              "255.255.255.255",
                              "fd00:ec2::254",
                              "100.100.100.200",
                              "168.63.129.16",
                              "::ffff:127.0.0.1",
                              "::ffff:169.254.169.254",
                              "64:ff9b::7f00:1",
                              "64:ff9b::a9fe:a9fe",
                              "64:ff9b::ac8:102",
                              "::ffff:10.200.1.2",
                              "10.200.3.4",
                              "fd00:200:0:1::9"}) {
    std::string text = address;
    CAPTURE(text);
    CHECK_FALSE(guard.covering(*IpAddress::parse(address)).empty());
  }
  for (const char* address : {"198.18.0.10", "fd00:198::10", "100.100.100.201", "64:ff9b::c612:a",
                              "::ffff:198.18.0.10", "fd00:ec2::253", "1.0.0.0"}) {
    CAPTURE(address);
    CHECK(guard.covering(*IpAddress::parse(address)).empty());
  }
  // Unmapped by the session before deciding: the mapped form decides like the IPv4 address.
  CHECK(guard.covering(*IpAddress::parse("::ffff:127.0.0.1")) == "::ffff:127.0.0.0/104");
  CHECK(guard.covering(IpAddress::parse("::ffff:127.0.0.1")->unmapped()) == "127.0.0.0/8");

  Guard lifted = std::get<Guard>(Guard::compile({}, {"100.100.100.200/32"}));
  CHECK(lifted.covering(*IpAddress::parse("100.100.100.200")).empty());
  CHECK(lifted.covering(*IpAddress::parse("64:ff9b::6464:64c8")).empty());
  CHECK_FALSE(lifted.covering(*IpAddress::parse("168.63.129.16")).empty());
  CHECK(lifted.lifted() == std::vector<std::string>{"100.100.100.200/32"});

  auto not_floor = Guard::compile({}, {"169.254.169.254/32"});  // inside an entry, not one
  REQUIRE(std::holds_alternative<FieldError>(not_floor));
  CHECK(std::get<FieldError>(not_floor).field == "guard.allow[0]");
  auto mapped = Guard::compile({"::ffff:10.0.0.0/104"});
  REQUIRE(std::holds_alternative<FieldError>(mapped));
  CHECK(std::get<FieldError>(mapped).field == "guard.deny[0]");
}

TEST_CASE("Rules: an IPv4-mapped prefix is refused at load") {
  for (const char* text : {"::ffff:10.0.0.0/104", "::ffff:0:0/96", "[::ffff:10.0.0.1]:80"}) {
    CAPTURE(text);
    CHECK(std::holds_alternative<std::string>(parse_rule(text)));
  }
  CHECK(std::holds_alternative<Rule>(parse_rule("::/0")));
  CHECK(std::holds_alternative<Rule>(parse_rule("::/64")));
}

TEST_CASE("Address denies narrower than /0 also hold for the address dialled for a name") {
  auto policy = compile({"*:80", "198.18.0.0/16:443"},
                        {"198.18.9.11", "198.18.7.0/24:80", "0.0.0.0/0", "::/0"});
  CHECK(policy->address_denial(*IpAddress::parse("198.18.9.11"), 80) == "198.18.9.11");
  CHECK(policy->address_denial(*IpAddress::parse("::ffff:198.18.9.11"), 80) == "198.18.9.11");
  CHECK(policy->address_denial(*IpAddress::parse("198.18.7.1"), 80) == "198.18.7.0/24:80");
  CHECK(policy->address_denial(*IpAddress::parse("198.18.7.1"), 443).empty());  // allowed /16
  CHECK(policy->address_denial(*IpAddress::parse("198.18.0.10"), 80).empty());  // catch-all only
  CHECK(policy->address_denial(*IpAddress::parse("fd00:198::10"), 80).empty());
  // Longest prefix, allow wins ties: a narrower allow inside the deny lifts it.
  auto narrower = compile({"*:80", "198.18.9.11"}, {"198.18.9.0/24"});
  CHECK(narrower->address_denial(*IpAddress::parse("198.18.9.11"), 80).empty());
  CHECK(narrower->address_denial(*IpAddress::parse("198.18.9.12"), 80) == "198.18.9.0/24");
  // E2B's meaning: an allowed domain beats denyOut.
  SandboxSpec spec;
  spec.id = "e2b";
  spec.allow = {"api.example.com"};
  spec.deny = {"198.18.9.0/24"};
  spec.default_verdict = Verdict::allow;
  spec.names_bypass_address_denies = true;
  auto e2b = std::get<std::shared_ptr<const CompiledPolicy>>(CompiledPolicy::compile(spec));
  CHECK(e2b->address_denial(*IpAddress::parse("198.18.9.11"), 443).empty());
}

TEST_CASE("Audit mode keeps the reason it would have had") {
  auto policy = compile({"pypi.org"}, {}, Verdict::deny, Mode::audit);
  DecisionInput input;
  std::string name = "evil.example";
  input.name = &name;
  input.destination = IpAddress::parse("198.18.0.10");
  input.port = 443;
  Decision d = decide(default_guard(), policy.get(), Verdict::deny, input);
  CHECK(d.reason == Reason::audit_allow);
  REQUIRE(d.would_deny);
  CHECK(*d.would_deny == Reason::default_deny);
  input.destination = IpAddress::parse("169.254.169.254");  // the guard holds in audit mode
  CHECK(decide(default_guard(), policy.get(), Verdict::deny, input).reason ==
        Reason::guarded_destination);
}
