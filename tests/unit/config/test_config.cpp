#include <doctest/doctest.h>

#include "config/config.hpp"
#include "config/settings.hpp"
#include "control/check.hpp"

using namespace egressd;

namespace {

std::vector<std::string> errors_of(const std::string& text) {
  auto loaded = load_config_text(text, "t.yaml");
  if (auto* errors = std::get_if<std::vector<std::string>>(&loaded)) return *errors;
  return {};
}

}  // namespace

TEST_CASE("Config: defaults as DESIGN.md documents") {
  auto loaded = load_config_text("", "empty.yaml");
  REQUIRE(std::holds_alternative<Config>(loaded));
  const Config& c = std::get<Config>(loaded);
  CHECK(c.listen.tproxy == std::vector<std::string>{"0.0.0.0:15001", "[::]:15001"});
  CHECK(c.listen.control == "/run/egressd/control.sock");
  CHECK(c.listen.metrics == "127.0.0.1:9464");
  CHECK(c.workers == 0);
  CHECK(c.state_dir == "/var/lib/egressd");
  CHECK(c.inspect.tls == std::vector<uint16_t>{443});
  CHECK(c.inspect.http == std::vector<uint16_t>{80});
  CHECK(c.timeouts.peek_ms == 5000);
  CHECK(c.timeouts.connect_ms == 5000);
  CHECK(c.limits.max_peek_bytes == 16384);
  CHECK(c.limits.max_connections_per_sandbox == 4096);
  CHECK(c.dns.servers.empty());
  CHECK(c.dns.verify == DnsVerify::dial);
  CHECK(c.guard_deny.empty());  // the built-in floor holds without it
  CHECK(c.guard_allow.empty());
  CHECK(c.limits.max_connections == 0);
  CHECK(c.limits.max_peeking_per_sandbox == 256);
  CHECK(c.unknown_source == Verdict::deny);
  CHECK(c.on_update == OnUpdate::revoke);
  CHECK(c.access_log == "-");
  CHECK(c.sandboxes.empty());
}

TEST_CASE("Config: the shipped example loads with every key") {
  auto loaded = load_config(EGRESSD_SOURCE_DIR "/config/egressd.yaml");
  if (auto* errors = std::get_if<std::vector<std::string>>(&loaded)) FAIL((*errors)[0]);
  const Config& c = std::get<Config>(loaded);
  REQUIRE(c.sandboxes.size() == 1);
  CHECK(c.sandboxes[0].id == "demo");
  CHECK(c.sandboxes[0].allow.size() == 5);
  REQUIRE(c.sandboxes[0].transforms.size() == 1);
  CHECK(c.sandboxes[0].transforms[0].hosts == std::vector<std::string>{"api.openai.com"});
  CHECK(c.sandboxes[0].transforms[0].headers[0].first == "Authorization");
  CHECK(c.intercept.upstream_ca == "system");
  CHECK(c.intercept.ca_dir == "/var/lib/egressd/ca");
  CHECK(c.drain_s == 300);
  auto quick = load_config_text("drain_s: 5\n", "t.yaml");
  REQUIRE(std::holds_alternative<Config>(quick));
  CHECK(std::get<Config>(quick).drain_s == 5);
  auto bad = load_config_text("drain_s: -1\n", "t.yaml");
  REQUIRE(std::holds_alternative<std::vector<std::string>>(bad));
  CHECK(std::get<std::vector<std::string>>(bad)[0].find("drain_s") != std::string::npos);
}

TEST_CASE("Config: fast_path is proxy (the default) or kernel, nothing else") {
  auto proxy = load_config_text("fast_path: proxy\n", "t.yaml");
  REQUIRE(std::holds_alternative<Config>(proxy));
  CHECK(std::get<Config>(proxy).fast_path == FastPath::proxy);
  CHECK(std::get<Config>(load_config_text("workers: 1\n", "t.yaml")).fast_path == FastPath::proxy);
  auto kernel = load_config_text("fast_path: kernel\n", "t.yaml");
  REQUIRE(std::holds_alternative<Config>(kernel));
  CHECK(std::get<Config>(kernel).fast_path == FastPath::kernel);
  for (const char* text : {"fast_path: turbo\n", "fast_path: [proxy]\n", "fast_path: Kernel\n"}) {
    auto loaded = load_config_text(text, "t.yaml");
    REQUIRE(std::holds_alternative<std::vector<std::string>>(loaded));
    const auto& errors = std::get<std::vector<std::string>>(loaded);
    CHECK(errors[0].find("t.yaml:1:") == 0);
    CHECK(errors[0].find("fast_path") != std::string::npos);
  }
}

TEST_CASE("Config: transforms, secrets and intercept keys, with positions for their errors") {
  auto loaded = load_config_text(
      "intercept: { ca_dir: /x/ca, upstream_ca: /x/roots.pem }\n"
      "sandboxes:\n"
      "  - id: a\n"
      "    sources: [\"10.200.1.2\"]\n"
      "    transforms:\n"
      "      - hosts: [\"api.example\"]\n"
      "        headers: { X-Key: \"{{SECRET:k}}\" }\n"
      "        body: { key: \"${e2b.secrets.k}\" }\n"
      "    bypass: [\"files.example\"]\n"
      "    secrets: { k: v }\n",
      "t.yaml");
  if (auto* errors = std::get_if<std::vector<std::string>>(&loaded)) FAIL((*errors)[0]);
  const Config& c = std::get<Config>(loaded);
  CHECK(c.intercept.ca_dir == "/x/ca");
  CHECK(c.intercept.upstream_ca == "/x/roots.pem");
  CHECK(c.sandboxes[0].transforms[0].body[0].second == "${e2b.secrets.k}");
  CHECK(c.sandboxes[0].bypass == std::vector<std::string>{"files.example"});
  CHECK(c.sandboxes[0].secrets.at("k") == "v");
  struct Row {
    const char* yaml;
    const char* expected;
  };
  const Row rows[] = {
      {"sandboxes:\n  - id: a\n    sources: [\"10.200.1.2\"]\n    transforms:\n"
       "      - hosts: [\"ok.example\", \"*.com\"]\n        headers: { A: b }\n",
       "t.yaml:5:31: sandboxes[0].transforms[0].hosts[1]"},
      {"sandboxes:\n  - id: a\n    sources: [\"10.200.1.2\"]\n    transforms:\n"
       "      - hosts: [\"ok.example\"]\n        headers: { Host: b }\n",
       "t.yaml:5:9: sandboxes[0].transforms[0].headers"},
      {"intercept: { ca_dir: relative }\n", "intercept.ca_dir: expected an absolute path"},
      {"intercept: { upstream_ca: maybe }\n", "intercept.upstream_ca: expected \"system\""},
      {"intercept: { bogus: 1 }\n", "unknown key \"intercept.bogus\""},
  };
  for (const Row& row : rows) {
    CAPTURE(row.yaml);
    auto bad = load_config_text(row.yaml, "t.yaml");
    REQUIRE(std::holds_alternative<std::vector<std::string>>(bad));
    CHECK(std::get<std::vector<std::string>>(bad)[0].find(row.expected) != std::string::npos);
  }
}

TEST_CASE("Config: errors carry file:line:col and change nothing") {
  struct Row {
    const char* yaml;
    const char* expected;
  };
  const Row rows[] = {
      {"listen:\n  tproxy: [\"0.0.0.0:1\"]\n  bogus: 1\n",
       "t.yaml:3:3: unknown key \"listen.bogus\""},
      {"wrkers: 2\n", "t.yaml:1:1: unknown key \"wrkers\""},
      {"workers: -1\n", "t.yaml:1:10: workers: expected an integer"},
      {"workers: two\n", "t.yaml:1:10: workers: expected an integer"},
      {"on_update: maybe\n", "t.yaml:1:12: on_update: \"maybe\" is not one of revoke | keep"},
      {"dns: { verify: loose }\n", "dns.verify: \"loose\" is not one of dial | strict | off"},
      {"guard:\n  deny: [\"10.0.0.1/8\"]\n",
       "t.yaml:2:10: guard.deny[0]: \"10.0.0.1/8\": host bits set"},
      {"listen: { tproxy: [\"0.0.0.0\"] }\n", "listen.tproxy[0]: \"0.0.0.0\" is not ADDRESS:PORT"},
      {"inspect: { tls: [443, 70000] }\n", "inspect.tls[1]: expected an integer 1-65535"},
      {"inspect: { tls: [80] }\n", "port 80 is both tls and http"},
      {"sandboxes:\n  - id: a\n    sources: [\"10.200.1.2\"]\n    egress:\n      allow: "
       "[\"ok.example\",\n              \"*.com\"]\n",
       "t.yaml:6:15: sandboxes[0].egress.allow[1]: \"*.com\": wildcard over the public suffix "
       "\"com\""},
      {"sandboxes:\n  - id: a\n    sources: [\"10.200.1.0/24\"]\n  - id: b\n    sources: "
       "[\"10.200.1.7\"]\n",
       "t.yaml:5:15: sandboxes[1].sources[0]: \"10.200.1.7\" overlaps a source of sandbox \"a\""},
      {"sandboxes:\n  - id: a\n  - id: a\n", "t.yaml:3:9: sandboxes[1].id: duplicate id \"a\""},
      {"sandboxes:\n  - sources: []\n", "sandboxes[0]: missing \"id\""},
      {"sandboxes:\n  - id: a\n    egress: { defualt: deny }\n",
       "unknown key \"sandboxes[0].egress.defualt\""},
      {"sandboxes:\n  - id: a\n    mode: watch\n",
       "sandboxes[0].mode: \"watch\" is not one of enforce | audit"},
      {"listen: [\n", "t.yaml:2:1:"},
  };
  for (const Row& row : rows) {
    CAPTURE(row.yaml);
    auto errors = errors_of(row.yaml);
    REQUIRE_FALSE(errors.empty());
    CHECK(errors[0].find(row.expected) != std::string::npos);
    CHECK(errors[0].rfind("t.yaml:", 0) == 0);
  }
}

TEST_CASE("check_request answers like POST /v1/check") {
  auto loaded = load_config(EGRESSD_SOURCE_DIR "/config/egressd.yaml");
  const Config& c = std::get<Config>(loaded);
  PolicyStore store;
  REQUIRE_FALSE(store.replace_all(c.sandboxes));
  auto guard = std::get<Guard>(Guard::compile(c.guard_deny, c.guard_allow));
  auto ask = [&](const char* json) {
    return check_request(*store.snapshot(), guard, c.unknown_source, nlohmann::json::parse(json));
  };
  auto a = ask(R"({"sandbox":"demo","host":"api.github.com","ip":"198.18.0.10","port":443})");
  CHECK(a.status == 200);
  CHECK(a.body.dump() == R"({"reason":"allowed_domain","rule":"*.github.com","verdict":"allow"})");
  a = ask(R"({"sandbox":"demo","host":"gist.github.com","port":443})");
  CHECK(a.body["reason"] == "denied_domain");
  a = ask(R"({"sandbox":"demo","host":"evil.example","ip":"203.0.113.9","port":443})");
  CHECK(a.body.dump() == R"({"reason":"default_deny","rule":null,"verdict":"deny"})");
  a = ask(R"({"sandbox":"demo","ip":"169.254.169.254","port":80})");
  CHECK(a.body["reason"] == "guarded_destination");
  CHECK(ask(R"({"sandbox":"nope","host":"a.example","port":443})").status == 404);
  auto bad = ask(R"({"sandbox":"demo","host":"bad_name","port":443})");
  CHECK(bad.status == 400);
  CHECK(bad.body["field"] == "host");
  CHECK(ask(R"({"sandbox":"demo","host":"a.example","port":0})").body["field"] == "port");
  CHECK(ask(R"({"sandbox":"demo","host":"a.example","port":1,"extra":1})").body["field"] ==
        "extra");
  CHECK(ask(R"({"sandbox":"demo","port":443})").status == 400);
}

TEST_CASE("Config: odd YAML shapes are errors, not crashes") {
  for (const char* yaml : {"? [a, b]\n: 1\n", "listen: 5\n", "sandboxes: {a: 1}\n", "- 1\n- 2\n",
                           "sandboxes:\n  - id: [x]\n", "guard: { deny: 7 }\n"}) {
    CAPTURE(yaml);
    CHECK_FALSE(errors_of(yaml).empty());
  }
}

TEST_CASE("Config: guard.allow names floor entries only; limits keys; errors point at the entry") {
  auto good = load_config_text(
      "guard: { deny: [\"10.200.0.0/16\"], allow: [\"100.100.100.200/32\"] }\n"
      "limits: { max_connections: 500, max_peeking_per_sandbox: 8 }\n",
      "t.yaml");
  REQUIRE(std::holds_alternative<Config>(good));
  CHECK(std::get<Config>(good).guard_allow == std::vector<std::string>{"100.100.100.200/32"});
  CHECK(std::get<Config>(good).limits.max_connections == 500);
  CHECK(std::get<Config>(good).limits.max_peeking_per_sandbox == 8);
  auto bad = load_config_text("guard:\n  allow: [\"127.0.0.0/8\", \"10.0.0.0/8\"]\n", "t.yaml");
  REQUIRE(std::holds_alternative<std::vector<std::string>>(bad));
  const auto& errors = std::get<std::vector<std::string>>(bad);
  REQUIRE(errors.size() == 1);
  CHECK(errors[0].starts_with("t.yaml:2:"));
  CHECK(errors[0].find("guard.allow[1]") != std::string::npos);
  CHECK(errors[0].find("not an entry of the built-in floor") != std::string::npos);
  auto mapped = load_config_text("guard: { deny: [\"::ffff:10.0.0.0/104\"] }\n", "t.yaml");
  REQUIRE(std::holds_alternative<std::vector<std::string>>(mapped));
  CHECK(std::get<std::vector<std::string>>(mapped)[0].find("IPv4-mapped") != std::string::npos);
}

TEST_CASE("Config: dns_filter and gateways keys, validated; a sandbox names a known gateway") {
  auto loaded = load_config_text(R"(
dns_filter: { listen: ["0.0.0.0:15053"], answer_denied: nxdomain, strip_ech: false,
              budget: { queries_per_second: 5, burst: 9, new_names_per_minute: 7 } }
gateways:
  gw-addr: { source: ["198.18.5.1", "fd00:198:5::1"] }
  gw-mark: { mark: 0x20 }
sandboxes:
  - { id: a, sources: ["10.200.1.2"], egress: { default: deny, gateway: gw-addr } }
)",
                                 "t.yaml");
  REQUIRE(std::holds_alternative<Config>(loaded));
  const Config& c = std::get<Config>(loaded);
  CHECK(c.dns_filter.listen == std::vector<std::string>{"0.0.0.0:15053"});
  CHECK(c.dns_filter.answer_nxdomain);
  CHECK_FALSE(c.dns_filter.strip_ech);
  CHECK(c.dns_filter.queries_per_second == 5);
  CHECK(c.dns_filter.burst == 9);
  CHECK(c.dns_filter.new_names_per_minute == 7);
  CHECK(c.gateways.at("gw-addr").v4 == IpAddress::parse("198.18.5.1"));
  CHECK(c.gateways.at("gw-addr").v6 == IpAddress::parse("fd00:198:5::1"));
  CHECK(c.gateways.at("gw-mark").mark == 0x20u);
  CHECK(c.sandboxes[0].gateway == "gw-addr");
  auto settings = Settings::from(c);
  CHECK(settings->dns_answer_nxdomain);
  CHECK(settings->gateways.size() == 2);

  CHECK(errors_of("dns_filter: { listen: [\"nope\"] }").size() == 1);
  CHECK(errors_of("dns_filter: { answer_denied: drop }").size() == 1);
  CHECK(errors_of("dns_filter: { budget: { burst: 0 } }").size() == 1);
  CHECK(errors_of("dns_filter: { surprise: 1 }").size() == 1);
  CHECK(errors_of("gateways: { g: {} }").size() == 1);
  CHECK(errors_of("gateways: { g: { source: [\"198.18.5.1\", \"198.18.5.2\"] } }").size() == 1);
  CHECK(errors_of("gateways: { g: { source: [\"not-an-ip\"] } }").size() == 1);
  CHECK(errors_of("gateways: { g: { mark: 0 } }").size() == 1);
  CHECK(errors_of("gateways: { \"a b\": { mark: 1 } }").size() == 1);
  CHECK(errors_of("gateways: [1]").size() == 1);
  auto unknown = errors_of(
      "gateways: { g: { mark: 1 } }\nsandboxes:\n  - { id: a, sources: [\"10.200.1.2\"], "
      "egress: { gateway: other } }\n");
  REQUIRE(unknown.size() == 1);
  CHECK(unknown[0].find("t.yaml:3:") == 0);
  CHECK(unknown[0].find("unknown gateway \"other\" (configured: g)") != std::string::npos);
}

TEST_CASE("Config: --check-config reports every bad rule, each at its position, with the fix") {
  auto loaded = load_config_text(
      "sandboxes:\n"
      "  - id: a\n"
      "    sources: [\"10.200.1.2\"]\n"
      "    egress:\n"
      "      allow: [\"https://api.openai.com/v1\", \"ok.example\", \"a.example b.example\"]\n"
      "      deny: [\"10.0.0.1/8\"]\n",
      "t.yaml");
  REQUIRE(std::holds_alternative<std::vector<std::string>>(loaded));
  const auto& errors = std::get<std::vector<std::string>>(loaded);
  REQUIRE(errors.size() == 3);
  CHECK(errors[0].starts_with("t.yaml:5:15: sandboxes[0].egress.allow[0]"));
  CHECK(errors[0].find("rules are host[:ports], not URLs") != std::string::npos);
  CHECK(errors[1].starts_with("t.yaml:5:58: sandboxes[0].egress.allow[2]"));
  CHECK(errors[1].find("one rule per list entry") != std::string::npos);
  CHECK(errors[2].starts_with("t.yaml:6:14: sandboxes[0].egress.deny[0]"));
  CHECK(errors[2].find("host bits set") != std::string::npos);
}
