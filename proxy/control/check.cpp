#include "control/check.hpp"

#include "core/hostname.hpp"
#include "dns/message.hpp"

namespace egressd {

nlohmann::json error_body(const std::string& message, const std::string& field) {
  nlohmann::json body = {{"error", message}};
  if (!field.empty()) body["field"] = field;
  return body;
}

namespace {

nlohmann::json decision_json(Verdict verdict, Reason reason, std::string_view rule,
                             std::optional<Reason> would_deny) {
  nlohmann::json answer = {{"verdict", to_string(verdict)}, {"reason", to_string(reason)}};
  if (would_deny) answer["would_deny"] = to_string(*would_deny);
  answer["rule"] = rule.empty() ? nlohmann::json(nullptr) : nlohmann::json(std::string(rule));
  return answer;
}

// {"sandbox","host","qtype"[,"ip"]}: what the DNS filter would do with that query, and with
// an answer carrying `ip` when one is given (DESIGN.md "DNS for sandboxes").
CheckAnswer check_dns(const StoreSnapshot& store, const Guard& guard, const nlohmann::json& body) {
  auto bad = [](const std::string& message, const std::string& field) {
    return CheckAnswer{400, error_body(message, field)};
  };
  for (const auto& [key, value] : body.items()) {
    if (key != "sandbox" && key != "host" && key != "qtype" && key != "ip")
      return bad(key == "port" ? "a DNS check has no port" : "unknown field", key);
  }
  if (!body.contains("sandbox") || !body["sandbox"].is_string())
    return bad("sandbox id (string) required", "sandbox");
  if (!body["qtype"].is_string()) return bad("qtype must be a string such as \"A\"", "qtype");
  auto qtype = qtype_from_name(body["qtype"].get<std::string>());
  if (!qtype) return bad("unknown query type", "qtype");
  if (!body.contains("host") || !body["host"].is_string())
    return bad("host (the name asked) required", "host");
  auto host = body["host"].get<std::string>();
  auto parsed = Hostname::parse(host);
  if (auto* error = std::get_if<std::string>(&parsed))
    return bad("\"" + host + "\": " + *error, "host");
  if (IpAddress::parse(host)) return bad("a DNS query asks for a name, not an address", "host");
  std::string name = std::get<Hostname>(parsed).str();
  std::optional<IpAddress> ip;
  if (body.contains("ip")) {
    if (!body["ip"].is_string()) return bad("ip must be a string", "ip");
    ip = IpAddress::parse(body["ip"].get<std::string>());
    if (!ip) return bad("not an IP address", "ip");
    ip = ip->unmapped();
  }
  auto sandbox_id = body["sandbox"].get<std::string>();
  auto sandbox = store.share_by_id(sandbox_id);
  if (!sandbox)
    return CheckAnswer{404, error_body("unknown sandbox \"" + sandbox_id + "\"", "sandbox")};
  const CompiledPolicy& policy = *sandbox->policy;
  Decision decision = policy.decide_name(name);
  bool address_type = *qtype == LDNS_RR_TYPE_A || *qtype == LDNS_RR_TYPE_AAAA;
  nlohmann::json answer;
  std::string given;
  if (decision.verdict == Verdict::allow || policy.mode() == Mode::audit) {
    std::optional<Reason> would_deny;
    if (decision.verdict != Verdict::allow) would_deny = decision.reason;
    Reason reason = would_deny ? Reason::audit_allow : decision.reason;
    answer = decision_json(Verdict::allow, reason, decision.rule, would_deny);
    given = "upstream";
    if (ip && !guard.covering(*ip).empty()) {
      answer = decision_json(Verdict::deny, Reason::filtered_answer, guard.covering(*ip), {});
      given = "removed";
    }
  } else if (address_type && policy.has_address_allows()) {
    given = "allowed_addresses";  // only A/AAAA inside the allowed address rules
    answer = decision_json(Verdict::deny, decision.reason, decision.rule, {});
    if (ip) {
      bool passes = guard.covering(*ip).empty() && policy.address_allowed_on_some_port(*ip);
      if (passes) answer = decision_json(Verdict::allow, Reason::filtered_answer, {}, {});
      given = passes ? "allowed_addresses" : "removed";
    }
  } else {
    answer = decision_json(Verdict::deny, decision.reason, decision.rule, {});
    given = "answer_denied";  // dns_filter.answer_denied, never asked upstream
  }
  answer["qtype"] = qtype_name(*qtype);
  answer["answer"] = given;
  return CheckAnswer{200, std::move(answer)};
}

}  // namespace

CheckAnswer check_request(const StoreSnapshot& store, const Guard& guard, Verdict unknown_source,
                          const nlohmann::json& body) {
  auto bad = [](const std::string& message, const std::string& field) {
    return CheckAnswer{400, error_body(message, field)};
  };
  if (!body.is_object()) return bad("body must be a JSON object", "");
  if (body.contains("qtype")) return check_dns(store, guard, body);
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
  auto answer =
      decision_json(decision.verdict, decision.reason, decision.rule, decision.would_deny);
  // On the inspected ports, an allowed name with a transform is intercepted.
  if (decision.verdict == Verdict::allow && input.name &&
      !sandbox->policy->transforms_for(name).empty())
    answer["intercepted"] = true;
  return CheckAnswer{200, answer};
}

}  // namespace egressd
