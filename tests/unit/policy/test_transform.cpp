#include <doctest/doctest.h>

#include "policy/sandbox_policy.hpp"
#include "policy/transform.hpp"

using namespace egressd;

TEST_CASE("Transforms: hosts are exact names, *.x or *; headers are tokens egressd does not own") {
  for (const char* good : {"api.openai.com", "*.openai.com", "*", "xn--bcher-kva.example"}) {
    CAPTURE(good);
    CHECK_FALSE(transform_host_error(good));
  }
  for (const char* bad :
       {"*.com", ".openai.com", "api.openai.com:443", "10.0.0.1", "a..b", "", "*.co.uk", "[::1]"}) {
    CAPTURE(bad);
    CHECK(transform_host_error(bad));
  }
  CHECK_FALSE(header_name_error("Authorization"));
  CHECK_FALSE(header_name_error("X-Api-Key"));
  for (const char* bad : {"", "A B", "A:B", "Host", "content-length", "Transfer-Encoding",
                          "CONNECTION", "Upgrade", "TE", "Expect"}) {
    CAPTURE(bad);
    CHECK(header_name_error(bad));
  }
}

TEST_CASE("Transforms: placeholders of both platforms; malformed ones refused at load") {
  CHECK_FALSE(template_error("Bearer {{SECRET:openai}}"));
  CHECK_FALSE(template_error("${e2b.secrets.key_1} and {{SECRET:a.b-c}}"));
  CHECK_FALSE(template_error("no placeholder, braces {} and $ alone"));
  for (const char* bad :
       {"{{SECRET:open", "${e2b.secrets.x", "{{SECRET:}}", "{{SECRET:a b}}", "x\r\ny", "x\ny"}) {
    CAPTURE(bad);
    CHECK(template_error(bad));
  }
  Secrets secrets{{"openai", "sk-1"}, {"k", "v"}};
  std::string out, missing;
  CHECK(substitute("Bearer {{SECRET:openai}}|${e2b.secrets.k}", secrets, out, missing));
  CHECK(out == "Bearer sk-1|v");
  CHECK_FALSE(substitute("{{SECRET:k}}{{SECRET:absent}}", secrets, out, missing));
  CHECK(missing == "absent");
  // A secret's value is never read as a template: a value that looks like a placeholder stays.
  Secrets tricky{{"a", "{{SECRET:b}}"}, {"b", "leak"}};
  CHECK(substitute("{{SECRET:a}}", tricky, out, missing));
  CHECK(out == "{{SECRET:b}}");
  CHECK(secret_value_error("with\nnewline"));
  CHECK(secret_value_error(std::string(9000, 'x')));
  CHECK_FALSE(secret_value_error("sk-live-abc"));
}

TEST_CASE("Transforms: matching on label boundaries; every match applies, later ones win") {
  CHECK(transform_host_matches("api.openai.com", "api.openai.com"));
  CHECK_FALSE(transform_host_matches("api.openai.com", "xapi.openai.com"));
  CHECK(transform_host_matches("*.openai.com", "a.b.openai.com"));
  CHECK_FALSE(transform_host_matches("*.openai.com", "openai.com"));
  CHECK_FALSE(transform_host_matches("*.openai.com", "evilopenai.com"));
  CHECK(transform_host_matches("*", "anything.example"));
  SandboxSpec spec;
  spec.id = "t";
  spec.transforms = {Transform{{"*"}, {{"X-Trace", "global"}, {"Authorization", "none"}}, {}},
                     Transform{{"api.openai.com"},
                               {{"authorization", "Bearer {{SECRET:k}}"}},
                               {{"key", "{{SECRET:k}}"}}}};
  spec.bypass = {"*.internal.example"};
  spec.secrets = {{"k", "sk"}};
  auto compiled = CompiledPolicy::compile(spec);
  REQUIRE(std::holds_alternative<std::shared_ptr<const CompiledPolicy>>(compiled));
  auto policy = std::get<std::shared_ptr<const CompiledPolicy>>(compiled);
  auto both = policy->transforms_for("api.openai.com");
  REQUIRE(both.size() == 2);
  RequestEdit edit;
  std::string missing;
  REQUIRE(build_edit(both, policy->secrets(), edit, missing));
  // Header names compare without case: the later transform replaced the global Authorization.
  REQUIRE(edit.headers.size() == 2);
  CHECK(edit.headers[1].second == "Bearer sk");
  CHECK(edit.body == std::vector<std::pair<std::string, std::string>>{{"key", "sk"}});
  CHECK(policy->transforms_for("db.internal.example").empty());
  CHECK(policy->transforms_for("").empty());
}
