#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>

#include "api_fixture.hpp"
#include "control/api.hpp"
#include "control/spec_json.hpp"

using namespace egressd;
using nlohmann::json;

namespace {

struct Fixture : testing::ApiFixture {
  ControlResponse call(const std::string& method, const std::string& target,
                       const std::string& body = "",
                       std::map<std::string, std::string> headers = {}) {
    return api->handle(ControlRequest{method, target, std::move(headers), body});
  }
  json call_json(const std::string& method, const std::string& target,
                 const std::string& body = "") {
    auto r = call(method, target, body);
    return r.body.empty() ? json() : json::parse(r.body);
  }
  void create(const std::string& id, const std::string& source) {
    auto r = call("PUT", "/v1/sandboxes/" + id,
                  R"({"sources":[")" + source + R"("],"egress":{"default":"deny"}})");
    REQUIRE(r.status == 200);
  }
  SandboxSpec spec(const std::string& id) {
    return spec_of(*shared->store.snapshot()->find_by_id(id));
  }
};

}  // namespace

TEST_CASE("Native routes: health, put, get, list, delete, check") {
  Fixture f;
  CHECK(f.call_json("GET", "/v1/health") ==
        json{{"status", "ok"}, {"generation", 0}, {"sandboxes", 0}});
  auto put = f.call(
      "PUT", "/v1/sandboxes/sbx-1",
      R"({"sources":["10.200.1.2"],"egress":{"default":"deny","allow":["*.github.com"],"deny":["gist.github.com"]},"mode":"enforce"})");
  REQUIRE(put.status == 200);
  json stored = json::parse(put.body);
  CHECK(stored["id"] == "sbx-1");
  CHECK(stored["egress"]["allow"] == json{"*.github.com"});
  CHECK(stored["generation"].get<uint64_t>() >= 1);
  CHECK(f.call_json("GET", "/v1/sandboxes/sbx-1") == stored);
  CHECK(f.call_json("GET", "/v1/sandboxes")["sandboxes"].size() == 1);
  CHECK(f.call_json("GET", "/v1/health")["sandboxes"] == 1);
  // Persisted before the answer.
  CHECK(std::filesystem::exists(f.dir + "/sandboxes/sbx-1.json"));
  auto check =
      f.call("POST", "/v1/check",
             R"({"sandbox":"sbx-1","host":"api.github.com","ip":"198.18.0.10","port":443})");
  CHECK(check.status == 200);
  CHECK(json::parse(check.body) ==
        json{{"verdict", "allow"}, {"reason", "allowed_domain"}, {"rule", "*.github.com"}});
  CHECK(f.call("DELETE", "/v1/sandboxes/sbx-1").status == 204);
  CHECK_FALSE(std::filesystem::exists(f.dir + "/sandboxes/sbx-1.json"));
  CHECK(f.call("GET", "/v1/sandboxes/sbx-1").status == 404);
  CHECK(f.call("DELETE", "/v1/sandboxes/sbx-1").status == 404);
}

TEST_CASE("Native routes: errors change nothing") {
  Fixture f;
  f.create("a", "10.200.1.2");
  auto generation = f.shared->store.snapshot()->generation();
  struct Row {
    const char* method;
    const char* target;
    const char* body;
    int status;
    const char* field;
  };
  const Row rows[] = {
      {"PUT", "/v1/sandboxes/a", R"({"egress":{"allow":["ok.example","*.com"]}})", 400,
       "egress.allow[1]"},
      {"PUT", "/v1/sandboxes/a", R"({"egress":{"allow":"x"}})", 400, "egress.allow"},
      {"PUT", "/v1/sandboxes/a", R"({"egress":{"default":"maybe"}})", 400, "egress.default"},
      {"PUT", "/v1/sandboxes/a", R"({"mode":"watch"})", 400, "mode"},
      {"PUT", "/v1/sandboxes/a", R"({"color":"red"})", 400, "color"},
      {"PUT", "/v1/sandboxes/a", R"({"sources":["10.0.0.1/8"]})", 400, "sources[0]"},
      {"PUT", "/v1/sandboxes/a", R"({not json)", 400, nullptr},
      {"PUT", "/v1/sandboxes/b", R"({"sources":["10.200.1.2"]})", 409, "sources[0]"},
      {"PUT", "/v1/sandboxes/..", R"({})", 400, "id"},
      {"POST", "/v1/check", R"({"sandbox":"a","host":"x_y","port":443})", 400, "host"},
      {"POST", "/v1/check", R"({"sandbox":"zz","host":"x.example","port":443})", 404, "sandbox"},
  };
  for (const Row& row : rows) {
    CAPTURE(row.body);
    auto r = f.call(row.method, row.target, row.body);
    CHECK(r.status == row.status);
    json body = json::parse(r.body);
    CHECK(body.contains("error"));
    if (row.field) CHECK(body["field"] == row.field);
  }
  CHECK(f.shared->store.snapshot()->generation() == generation);
  CHECK(f.call("PATCH", "/v1/sandboxes/a").status == 405);
  CHECK(f.call("POST", "/v1/health").status == 405);
  CHECK(f.call("GET", "/v2/nothing").status == 404);
  CHECK(f.call("POST", "/v1/connections").status == 405);
  CHECK(f.call("GET", "/v1/denials?sandbox=zz").status == 404);
  CHECK(f.call_json("GET", "/v1/denials?sandbox=a")["denials"].empty());
  CHECK(f.call_json("GET", "/v1/connections?sandbox=a")["connections"].empty());
  // Without sandbox=: host-wide (unknown sources too), never a 400.
  CHECK(f.call("GET", "/v1/connections").status == 200);
  CHECK(f.call_json("GET", "/v1/connections")["connections"].is_array());
  f.shared->denials.record(
      "", Denial{std::chrono::system_clock::now(), *IpAddress::parse("198.18.0.11"), 9000, "",
                 Reason::unknown_source, "", std::nullopt, "10.200.1.3:4000"});
  json host_wide = f.call_json("GET", "/v1/denials");
  REQUIRE(host_wide["denials"].size() == 1);
  CHECK(host_wide["denials"][0]["sandbox"].is_null());
  CHECK(host_wide["denials"][0]["src"] == "10.200.1.3:4000");
  CHECK(host_wide["denials"][0]["reason"] == "unknown_source");
  CHECK(f.call_json("GET", "/v1/denials?sandbox=a")["denials"].empty());
}

TEST_CASE("Native routes: If-Match generations") {
  Fixture f;
  f.create("a", "10.200.1.2");
  uint64_t generation = f.shared->store.snapshot()->find_by_id("a")->generation;
  auto stale = f.call("PUT", "/v1/sandboxes/a", R"({"sources":["10.200.1.2"]})",
                      {{"if-match", std::to_string(generation + 5)}});
  CHECK(stale.status == 409);
  auto fresh = f.call("PUT", "/v1/sandboxes/a", R"({"sources":["10.200.1.2"]})",
                      {{"if-match", "\"" + std::to_string(generation) + "\""}});
  CHECK(fresh.status == 200);
  CHECK(json::parse(fresh.body)["generation"].get<uint64_t>() > generation);
  CHECK(f.call("PUT", "/v1/sandboxes/a", "{}", {{"if-match", "abc"}}).status == 400);
}

TEST_CASE("State dir: saved sandboxes load back; corrupt files are named and skipped") {
  Fixture f;
  f.create("a", "10.200.1.2");
  f.create("b", "10.200.1.3");
  {
    std::ofstream corrupt(f.dir + "/sandboxes/c.json");
    corrupt << "{ not json";
    std::ofstream wrong(f.dir + "/sandboxes/d.json");
    wrong << R"({"egress":{"allow":[1]}})";
  }
  std::vector<std::string> problems;
  auto loaded = f.state->load(problems);
  REQUIRE(loaded.size() == 2);
  CHECK(loaded[0].spec.id == "a");
  CHECK(loaded[1].generation == f.shared->store.snapshot()->find_by_id("b")->generation);
  REQUIRE(problems.size() == 2);
  CHECK(problems[0].find("c.json: not valid JSON") != std::string::npos);
  CHECK(problems[1].find("d.json: egress.allow[0]") != std::string::npos);
}

TEST_CASE("E2B: allowOut/denyOut translation and errors") {
  Fixture f;
  f.create("e2b", "10.200.1.2");
  auto r = f.call(
      "PUT", "/sandboxes/e2b/network",
      R"({"allowOut":["*.github.com","10.0.0.0/8","8.8.8.8"],"denyOut":["0.0.0.0/0","10.1.0.0/16","8.8.8.8/32"]})");
  CHECK(r.status == 204);
  SandboxSpec s = f.spec("e2b");
  CHECK(s.default_verdict == Verdict::allow);
  CHECK(s.allow == std::vector<std::string>{"*.github.com", "10.0.0.0/8", "8.8.8.8"});
  // 10.1.0.0/16 and 8.8.8.8/32 lie inside allowed prefixes: allow takes precedence, so they go.
  CHECK(s.deny == std::vector<std::string>{"0.0.0.0/0", "::/0"});
  CHECK(s.sources == std::vector<std::string>{"10.200.1.2"});
  auto check = [&](const char* body) {
    return json::parse(f.call("POST", "/v1/check", body).body)["verdict"];
  };
  CHECK(check(R"({"sandbox":"e2b","ip":"10.1.2.3","port":443})") == "allow");
  CHECK(check(R"({"sandbox":"e2b","ip":"2001:db8::1","port":443})") ==
        "deny");  // ALL_TRAFFIC covers v6
  CHECK(check(R"({"sandbox":"e2b","host":"api.github.com","ip":"198.18.0.1","port":443})") ==
        "allow");
  CHECK(f.call("PUT", "/sandboxes/e2b/network", R"({"denyOut":["evil.example"]})").status == 400);
  auto bad =
      json::parse(f.call("PUT", "/sandboxes/e2b/network", R"({"denyOut":["evil.example"]})").body);
  CHECK(bad["code"] == 400);
  CHECK(bad["message"].get<std::string>().find("domain names are not supported") !=
        std::string::npos);
  CHECK(f.call("PUT", "/sandboxes/e2b/network", R"({"allowOut":["*.com"]})").status == 400);
  CHECK(f.call("PUT", "/sandboxes/e2b/network", R"({"allowOut":["a.example:443"]})").status == 400);
  CHECK(f.spec("e2b").deny.size() == 2);  // unchanged by the refusals
  CHECK(f.call("PUT", "/sandboxes/e2b/network", "{}").status == 204);
  CHECK(f.spec("e2b").allow.empty());
  CHECK(f.spec("e2b").deny.empty());
  auto missing = f.call("PUT", "/sandboxes/nope/network", "{}");
  CHECK(missing.status == 404);
  CHECK(json::parse(missing.body)["code"] == 404);
}

TEST_CASE("Brimble: modes, allow rules and answer shape") {
  Fixture f;
  f.create("b1", "10.200.1.2");
  auto r = f.call("PUT", "/sandboxes/b1/egress",
                  R"({"mode":"restricted","allow":["1.1.1.1","api.openai.com"]})");
  REQUIRE(r.status == 200);
  json body = json::parse(r.body);
  CHECK(body["message"] == "Sandbox egress updated");
  CHECK(body["data"]["id"] == "b1");
  CHECK(body["data"]["egress"] ==
        json{{"mode", "restricted"}, {"allow", {"1.1.1.1", "api.openai.com"}}});
  CHECK(body["data"]["block_outbound"] == false);
  CHECK(body["data"]["network_updated"] == true);
  CHECK(f.spec("b1").default_verdict == Verdict::deny);
  r = f.call("PUT", "/sandboxes/b1/egress",
             R"({"mode":"restricted","allow":["1.1.1.1","api.openai.com"]})");
  CHECK(json::parse(r.body)["data"]["network_updated"] == false);
  r = f.call("PUT", "/sandboxes/b1/egress", R"({"mode":"deny_all"})");
  CHECK(json::parse(r.body)["data"]["block_outbound"] == true);
  CHECK(f.spec("b1").allow.empty());
  CHECK(f.call("PUT", "/sandboxes/b1/egress", R"({"mode":"open"})").status == 200);
  CHECK(f.spec("b1").default_verdict == Verdict::allow);
  CHECK(f.call("PUT", "/sandboxes/b1/egress", R"({"mode":"open","allow":["1.1.1.1"]})").status ==
        400);
  CHECK(f.call("PUT", "/sandboxes/b1/egress", R"({"mode":"restricted"})").status == 400);
  CHECK(f.call("PUT", "/sandboxes/b1/egress", R"({"mode":"restricted","allow":[]})").status == 400);
  json many = json::array();
  for (int i = 0; i < 51; ++i) many.push_back("h" + std::to_string(i) + ".example");
  CHECK(f.call("PUT", "/sandboxes/b1/egress", json{{"mode", "restricted"}, {"allow", many}}.dump())
            .status == 400);
  CHECK(f.call("PUT", "/sandboxes/b1/egress", R"({"mode":"restricted","allow":["2001:db8::1"]})")
            .status == 400);
  CHECK(f.call("PUT", "/sandboxes/b1/egress", R"({"mode":"closed"})").status == 400);
  CHECK(f.call("PUT", "/sandboxes/nope/egress", R"({"mode":"open"})").status == 404);
}

TEST_CASE("sandbox0: modes, fields used only in their mode, *.x covers x") {
  Fixture f;
  f.create("s0", "10.200.1.2");
  auto r = f.call(
      "PUT", "/api/v1/sandboxes/s0/network",
      R"({"mode":"block-all","egress":{"allowed_domains":["*.github.com","pypi.org"],"allowed_cidrs":["198.18.0.0/24"],"allowed_ports":[22,"8000-8080"],"denied_domains":["ignored.example"]}})");
  REQUIRE(r.status == 200);
  SandboxSpec s = f.spec("s0");
  CHECK(s.default_verdict == Verdict::deny);
  CHECK(s.allow == std::vector<std::string>{"198.18.0.0/24", ".github.com", "pypi.org", "*:22",
                                            "*:8000-8080"});
  CHECK(s.deny.empty());
  json got = f.call_json("GET", "/api/v1/sandboxes/s0/network");
  CHECK(got["mode"] == "block-all");
  CHECK(got["egress"]["allowed_domains"] == json{"*.github.com", "pypi.org"});
  CHECK(got["egress"]["allowed_ports"] == json{22, "8000-8080"});
  auto check = [&](const char* host) {
    return json::parse(
        f.call("POST", "/v1/check", json{{"sandbox", "s0"}, {"host", host}, {"port", 443}}.dump())
            .body)["verdict"];
  };
  CHECK(check("github.com") == "allow");
  CHECK(check("api.github.com") == "allow");
  CHECK(check("evil.example") == "deny");
  r = f.call(
      "PUT", "/api/v1/sandboxes/s0/network",
      R"({"mode":"allow-all","egress":{"denied_domains":["facebook.com"],"allowed_domains":["x.example"]}})");
  REQUIRE(r.status == 200);
  CHECK(f.spec("s0").default_verdict == Verdict::allow);
  CHECK(f.spec("s0").deny == std::vector<std::string>{"facebook.com"});
  CHECK(f.spec("s0").allow.empty());
  CHECK(f.call("PUT", "/api/v1/sandboxes/s0/network", R"({"mode":"open"})").status == 400);
  CHECK(f.call("PUT", "/api/v1/sandboxes/s0/network",
               R"({"mode":"block-all","egress":{"allowed_cidrs":["github.com"]}})")
            .status == 400);
  CHECK(f.call("PUT", "/api/v1/sandboxes/s0/network",
               R"({"mode":"block-all","egress":{"allowed_ports":[0]}})")
            .status == 400);
  CHECK(f.call("PUT", "/api/v1/sandboxes/s0/network",
               R"({"mode":"block-all","egress":{"colour":[]}})")
            .status == 400);
  CHECK(f.call("GET", "/api/v1/sandboxes/nope/network").status == 404);
}

TEST_CASE("Blaxel: allowedDomains over forbiddenDomains; the Sandbox object comes back") {
  Fixture f;
  f.create("bx", "10.200.1.2");
  auto r = f.call(
      "PUT", "/v0/sandboxes/bx",
      R"({"metadata":{"name":"bx","labels":{"team":"a"}},"spec":{"runtime":{"memory":2048},"network":{"allowedDomains":["api.stripe.com","*.s3.amazonaws.com"],"forbiddenDomains":["evil.example"]}}})");
  REQUIRE(r.status == 200);
  json body = json::parse(r.body);
  CHECK(body["metadata"]["name"] == "bx");
  CHECK(body["spec"]["runtime"]["memory"] == 2048);
  CHECK(f.spec("bx").default_verdict == Verdict::deny);
  CHECK(f.spec("bx").allow == std::vector<std::string>{"api.stripe.com", "*.s3.amazonaws.com"});
  CHECK(f.spec("bx").deny.empty());
  r = f.call(
      "PUT", "/v0/sandboxes/bx",
      R"({"metadata":{"name":"bx"},"spec":{"network":{"forbiddenDomains":["*.malware.com"]}}})");
  REQUIRE(r.status == 200);
  CHECK(f.spec("bx").default_verdict == Verdict::allow);
  CHECK(f.spec("bx").deny == std::vector<std::string>{"*.malware.com"});
  CHECK(f.call("PUT", "/v0/sandboxes/bx", R"({"spec":{"network":{"allowedDomains":["10.0.0.1"]}}})")
            .status == 400);
  CHECK(f.call("PUT", "/v0/sandboxes/bx", R"({"metadata":{"name":"other"}})").status == 400);
  // Wrong shapes are a Bad Request in Blaxel's error shape, never a throw; null is absent.
  for (const char* body : {R"({"metadata":"x"})", R"({"spec":"x"})", R"({"spec":{"network":3}})"}) {
    CAPTURE(body);
    auto r = f.call("PUT", "/v0/sandboxes/bx", body);
    CHECK(r.status == 400);
    CHECK(json::parse(r.body)["error"] == "Bad Request");
  }
  CHECK(f.call("PUT", "/v0/sandboxes/bx", R"({"metadata":null,"spec":{"network":null}})").status ==
        200);
  auto missing = f.call("PUT", "/v0/sandboxes/nope", R"({"metadata":{"name":"nope"}})");
  CHECK(missing.status == 404);
  CHECK(json::parse(missing.body)["error"] == "Not Found");
}

TEST_CASE(
    "Gateways: egress.gateway names a configured gateway; Blaxel's egress shape maps onto it") {
  Fixture f;
  f.shared->store.set_gateways({"gw-1"});
  f.create("bx", "10.200.1.2");
  auto put = [&](const char* egress) {
    return f.call("PUT", "/v1/sandboxes/bx",
                  std::string(R"({"sources":["10.200.1.2"],"egress":)") + egress + "}");
  };
  CHECK(put(R"({"default":"deny","gateway":"gw-1"})").status == 200);
  CHECK(f.spec("bx").gateway == "gw-1");
  CHECK(f.call_json("GET", "/v1/sandboxes/bx")["egress"]["gateway"] == "gw-1");
  auto unknown = put(R"({"default":"deny","gateway":"gw-2"})");
  CHECK(unknown.status == 400);
  CHECK(json::parse(unknown.body)["field"] == "egress.gateway");
  CHECK(f.spec("bx").gateway == "gw-1");  // nothing changed
  CHECK(put(R"({"default":"deny","gateway":7})").status == 400);
  CHECK(put(R"({"default":"deny","gateway":""})").status == 400);
  CHECK(put(R"({"default":"deny"})").status == 200);  // a PUT replaces: no gateway
  CHECK(f.spec("bx").gateway.empty());

  auto blaxel = [&](const char* egress) {
    return f.call("PUT", "/v0/sandboxes/bx",
                  std::string(R"({"spec":{"network":{"allowedDomains":["a.example"],"egress":)") +
                      egress + "}}}");
  };
  auto r = blaxel(R"({"mode":"dedicated","gateway":"gw-1"})");
  REQUIRE(r.status == 200);
  CHECK(json::parse(r.body)["spec"]["network"]["egress"] ==
        json{{"mode", "dedicated"}, {"gateway", "gw-1"}});
  CHECK(f.spec("bx").gateway == "gw-1");
  // Absent egress keeps it; other platforms keep it too.
  CHECK(
      f.call("PUT", "/v0/sandboxes/bx", R"({"spec":{"network":{"allowedDomains":["b.example"]}}})")
          .status == 200);
  CHECK(f.spec("bx").gateway == "gw-1");
  CHECK(f.call("PUT", "/sandboxes/bx/network", R"({"allowOut":["c.example"]})").status == 204);
  CHECK(f.spec("bx").gateway == "gw-1");
  CHECK(blaxel(R"({"mode":"dedicated","gateway":"nope"})").status == 400);
  CHECK(blaxel(R"({"mode":"dedicated"})").status == 400);
  CHECK(blaxel(R"({"mode":"elsewhere"})").status == 400);
  CHECK(blaxel(R"({"mode":"dedicated","gateway":"gw-1","policies":[{"name":"p"}]})").status == 400);
  CHECK(blaxel(R"({"surprise":1})").status == 400);
  CHECK(blaxel(R"("dedicated")").status == 400);
  CHECK(f.spec("bx").gateway == "gw-1");
  r = blaxel(R"({"mode":"shared"})");
  REQUIRE(r.status == 200);
  CHECK(json::parse(r.body)["spec"]["network"]["egress"] == json{{"mode", "shared"}});
  CHECK(f.spec("bx").gateway.empty());
}

TEST_CASE("Transforms: native shape, write-only secrets, sealed state, the secrets route") {
  Fixture f;
  const std::string secret = "sk-unit-9d8c";
  auto put = f.call("PUT", "/v1/sandboxes/t",
                    R"({"sources":["10.200.1.2"],"egress":{"allow":["api.openai.com"]},
                        "transforms":[{"hosts":["api.openai.com","*.openai.com"],
                                       "headers":{"Authorization":"Bearer {{SECRET:openai}}"},
                                       "body":{"key":"${e2b.secrets.openai}"}}],
                        "bypass":["files.openai.com"],"secrets":{"openai":")" +
                        secret + R"("}})");
  REQUIRE(put.status == 200);
  CHECK(put.body.find(secret) == std::string::npos);
  json got = f.call_json("GET", "/v1/sandboxes/t");
  CHECK(got["secret_names"] == json::array({"openai"}));
  CHECK(got["transforms"][0]["hosts"] == json::array({"api.openai.com", "*.openai.com"}));
  CHECK(got["bypass"] == json::array({"files.openai.com"}));
  CHECK(got.dump().find(secret) == std::string::npos);
  // The state file holds the secret sealed; it loads back (and a GET body PUT back keeps it).
  std::ifstream file(f.dir + "/sandboxes/t.json");
  std::string text((std::istreambuf_iterator<char>(file)), std::istreambuf_iterator<char>());
  CHECK(text.find("sealed_secrets") != std::string::npos);
  CHECK(text.find(secret) == std::string::npos);
  std::vector<std::string> problems;
  auto loaded = f.state->load(problems);
  REQUIRE(loaded.size() == 1);
  CHECK(problems.empty());
  CHECK(loaded[0].spec.secrets.at("openai") == secret);
  // Another key (a lost or replaced secrets.key): the secret is left out and said, not guessed.
  SecretBox other = SecretBox::ephemeral();
  StateDir elsewhere(f.dir, &other);
  problems.clear();
  auto reloaded = elsewhere.load(problems);
  REQUIRE(reloaded.size() == 1);
  CHECK(reloaded[0].spec.secrets.empty());
  REQUIRE(problems.size() == 1);
  CHECK(problems[0].find(secret) == std::string::npos);
  REQUIRE(f.call("PUT", "/v1/sandboxes/t", got.dump()).status == 200);
  CHECK(f.spec("t").secrets.at("openai") == secret);
  // The secrets route merges; null removes; it is write-only (204, no body).
  auto set = f.call("PUT", "/v1/sandboxes/t/secrets", R"({"second":"v2","openai":null})");
  CHECK(set.status == 204);
  CHECK(set.body.empty());
  CHECK(f.spec("t").secrets == Secrets{{"second", "v2"}});
  CHECK(f.call("PUT", "/v1/sandboxes/none/secrets", R"({"a":"b"})").status == 404);
  CHECK(f.call("GET", "/v1/sandboxes/t/secrets").status == 405);
  for (const char* bad : {R"({"bad name":"x"})", R"({"a":"line\nbreak"})", R"({"a":7})", "[1]"}) {
    CAPTURE(bad);
    auto r = f.call("PUT", "/v1/sandboxes/t/secrets", bad);
    CHECK(r.status == 400);
  }
  CHECK(f.spec("t").secrets == Secrets{{"second", "v2"}});
  // "secrets": {} clears them.
  REQUIRE(f.call("PUT", "/v1/sandboxes/t", R"({"sources":["10.200.1.2"],"secrets":{}})").status ==
          200);
  CHECK(f.spec("t").secrets.empty());
}

TEST_CASE("Transforms: every bad field is a 400 naming it, and changes nothing") {
  Fixture f;
  f.create("t", "10.200.1.2");
  struct Case {
    const char* body;
    const char* field;
  };
  const Case cases[] = {
      {R"({"transforms":[{"hosts":["*.com"],"headers":{"A":"b"}}]})", "transforms[0].hosts[0]"},
      {R"({"transforms":[{"hosts":["a.example:443"],"headers":{"A":"b"}}]})",
       "transforms[0].hosts[0]"},
      {R"({"transforms":[{"hosts":["10.0.0.1"],"headers":{"A":"b"}}]})", "transforms[0].hosts[0]"},
      {R"({"transforms":[{"hosts":[],"headers":{"A":"b"}}]})", "transforms[0].hosts"},
      {R"({"transforms":[{"hosts":["a.example"]}]})", "transforms[0]"},
      {R"({"transforms":[{"hosts":["a.example"],"headers":{"Content-Length":"1"}}]})",
       "transforms[0].headers"},
      {R"({"transforms":[{"hosts":["a.example"],"headers":{"A B":"1"}}]})",
       "transforms[0].headers"},
      {R"({"transforms":[{"hosts":["a.example"],"headers":{"A":"x\r\nB: y"}}]})",
       "transforms[0].headers.A"},
      {R"({"transforms":[{"hosts":["a.example"],"headers":{"A":"{{SECRET:x"}}]})",
       "transforms[0].headers.A"},
      {R"({"transforms":[{"hosts":["a.example"],"headers":{"A":"${e2b.secrets.a b}"}}]})",
       "transforms[0].headers.A"},
      {R"({"transforms":[{"hosts":["a.example"],"headers":{"A":7}}]})", "transforms[0].headers.A"},
      {R"({"transforms":[{"hosts":["a.example"],"headers":{"A":"b"},"x":1}]})", "transforms[0].x"},
      {R"({"bypass":["*"]})", "bypass[0]"},
      {R"({"secrets":{"a":"b\u0000"}})", "secrets.a"},
      {R"({"secrets":{"a/b":"c"}})", "secrets"},
  };
  for (const Case& c : cases) {
    CAPTURE(c.body);
    json body = json::parse(c.body);
    body["sources"] = {"10.200.1.2"};
    auto r = f.call("PUT", "/v1/sandboxes/t", body.dump());
    CHECK(r.status == 400);
    CHECK(json::parse(r.body)["field"] == c.field);
    CHECK(f.spec("t").transforms.empty());
  }
}

TEST_CASE("Transforms: E2B rules and Blaxel routing map onto transforms; secrets never echo") {
  Fixture f;
  f.create("t", "10.200.1.2");
  auto r = f.call("PUT", "/sandboxes/t/network",
                  R"({"allowOut":["api.openai.com"],"rules":{"api.openai.com":[{"transform":
                      {"headers":{"Authorization":"Bearer ${e2b.secrets.openai}"}}}]}})");
  REQUIRE(r.status == 204);
  REQUIRE(f.spec("t").transforms.size() == 1);
  CHECK(f.spec("t").transforms[0].hosts == std::vector<std::string>{"api.openai.com"});
  CHECK(f.spec("t").transforms[0].headers[0].second == "Bearer ${e2b.secrets.openai}");
  // E2B replaces the whole network configuration: no rules, no transforms.
  REQUIRE(f.call("PUT", "/sandboxes/t/network", R"({"allowOut":["api.openai.com"]})").status ==
          204);
  CHECK(f.spec("t").transforms.empty());
  for (const char* bad : {R"({"rules":[]})", R"({"rules":{"a.example":{}}})",
                          R"({"rules":{"a.example":[{"other":{}}]}})",
                          R"({"rules":{"a.example":[{"transform":{"body":{}}}]}})",
                          R"({"rules":{"*.com":[{"transform":{"headers":{"A":"b"}}}]}})"}) {
    CAPTURE(bad);
    CHECK(f.call("PUT", "/sandboxes/t/network", bad).status == 400);
  }
  const std::string secret = "sk-live-unit-1";
  r = f.call(
      "PUT", "/v0/sandboxes/t",
      R"({"spec":{"network":{"allowedDomains":["api.stripe.com"],"proxy":{"bypass":["*.s3.amazonaws.com"],
                 "routing":[{"destinations":["api.stripe.com"],"headers":{"Authorization":"Bearer {{SECRET:stripe-key}}"},
                             "body":{"api_key":"{{SECRET:stripe-key}}"},"secrets":{"stripe-key":")" +
          secret + R"("}},{"destinations":["*"],"headers":{"X-Trace":"1"}}]}}}})");
  REQUIRE(r.status == 200);
  CHECK(r.body.find(secret) == std::string::npos);
  SandboxSpec spec = f.spec("t");
  REQUIRE(spec.transforms.size() == 2);
  CHECK(spec.transforms[1].hosts == std::vector<std::string>{"*"});
  CHECK(spec.bypass == std::vector<std::string>{"*.s3.amazonaws.com"});
  CHECK(spec.secrets.at("stripe-key") == secret);
  auto policy = f.shared->store.snapshot()->find_by_id("t")->policy;
  CHECK(policy->transforms_for("api.stripe.com").size() == 2);  // its own and the global one
  CHECK(policy->transforms_for("other.example").size() == 1);
  CHECK(policy->transforms_for("x.s3.amazonaws.com").empty());  // bypassed
  // Two rules giving one secret two values: refused.
  r = f.call(
      "PUT", "/v0/sandboxes/t",
      R"({"spec":{"network":{"proxy":{"routing":[{"destinations":["a.example"],"headers":{"A":"b"},"secrets":{"k":"1"}},
                 {"destinations":["b.example"],"headers":{"A":"b"},"secrets":{"k":"2"}}]}}}})");
  CHECK(r.status == 400);
  CHECK(r.body.find("another value") != std::string::npos);
  CHECK(f.call("PUT", "/v0/sandboxes/t",
               R"({"spec":{"network":{"proxy":{"routing":[{"headers":{"A":"b"}}]}}}})")
            .status == 400);
}

TEST_CASE("GET /v1/ca.pem serves the interception CA certificate") {
  Fixture f;
  CHECK(f.call("GET", "/v1/ca.pem").status == 404);  // none configured
  auto ca = CertificateAuthority::open("");
  REQUIRE(std::holds_alternative<std::shared_ptr<CertificateAuthority>>(ca));
  f.shared->intercept.ca = std::get<std::shared_ptr<CertificateAuthority>>(ca);
  ControlApi api(f.shared->control(), *f.state);
  auto r = api.handle(ControlRequest{"GET", "/v1/ca.pem", {}, ""});
  CHECK(r.status == 200);
  CHECK(r.content_type == "application/x-pem-file");
  CHECK(r.body.starts_with("-----BEGIN CERTIFICATE-----"));
  CHECK(r.body == f.shared->intercept.ca->pem());
}
