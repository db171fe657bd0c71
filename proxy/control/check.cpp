#include "control/check.hpp"

#include "core/hostname.hpp"

namespace egressd {

nlohmann::json error_body(const std::string& message, const std::string& field) {
  nlohmann::json body = {{"error", message}};
  if (!field.empty()) body["field"] = field;
  return body;
}

CheckAnswer check_request(const StoreSnapshot& store, const Guard& guard, Verdict unknown_source,
                          const nlohmann::json& body) {
  auto bad = [](const std::string& message, const std::string& field) {
    return CheckAnswer{400, error_body(message, field)};
  };
  if (!body.is_object()) return bad("body must be a JSON object", "");
  for (const auto& [key, value] : body.items()) {
    if (key != "sandbox" && key != "host" && key != "ip" && key != "port")
      return bad("unknown field", key);
  }
  if (!body.contains("sandbox") || !body["sandbox"].is_string())
    return bad("sandbox id (string) required", "sandbox");
  if (!body.contains("port") || !body["port"].is_number_integer() ||
      body["port"].get<int64_t>() < 1 || body["port"].get<int64_t>() > 65535) {
    return bad("port (1-65535) required", "port");
  }
  DecisionInput input;
  input.port = static_cast<uint16_t>(body["port"].get<int64_t>());
  std::string name;
  if (body.contains("host")) {
    if (!body["host"].is_string()) return bad("host must be a string", "host");
    auto host = body["host"].get<std::string>();
    if (auto address = IpAddress::parse(host)) {
      input.destination = address->unmapped();  // an IP literal is not a name
    } else {
      auto parsed = Hostname::parse(host);
      if (auto* error = std::get_if<std::string>(&parsed))
        return bad("\"" + host + "\": " + *error, "host");
      name = std::get<Hostname>(parsed).str();
      input.name = &name;
    }
  }
  if (body.contains("ip")) {
    if (!body["ip"].is_string()) return bad("ip must be a string", "ip");
    auto address = IpAddress::parse(body["ip"].get<std::string>());
    if (!address) return bad("not an IP address", "ip");
    input.destination = address->unmapped();
  }
  if (!input.name && !input.destination) return bad("host or ip required", "host");
  auto sandbox_id = body["sandbox"].get<std::string>();
  auto sandbox = store.share_by_id(sandbox_id);
  if (!sandbox)
    return CheckAnswer{404, error_body("unknown sandbox \"" + sandbox_id + "\"", "sandbox")};
  Decision decision = decide(guard, sandbox->policy.get(), unknown_source, input);
  // An address deny also holds for the address a name would be dialled at (DESIGN.md Policy).
  if (decision.reason == Reason::allowed_domain && input.destination) {
    if (auto rule = sandbox->policy->address_denial(*input.destination, input.port);
        !rule.empty()) {
      decision = Decision{Verdict::deny, Reason::denied_address, rule, std::nullopt};
      if (sandbox->policy->mode() == Mode::audit) {
        decision = Decision{Verdict::allow, Reason::audit_allow, rule, Reason::denied_address};
      }
    }
  }
  nlohmann::json answer = {{"verdict", to_string(decision.verdict)},
                           {"reason", to_string(decision.reason)}};
  if (decision.would_deny) answer["would_deny"] = to_string(*decision.would_deny);
  answer["rule"] =
      decision.rule.empty() ? nlohmann::json(nullptr) : nlohmann::json(std::string(decision.rule));
  return CheckAnswer{200, std::move(answer)};
}

}  // namespace egressd
