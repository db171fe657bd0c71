#include "control/spec_json.hpp"

namespace egressd {
namespace {

std::optional<FieldError> string_list(const nlohmann::json& value, const std::string& field,
                                      std::vector<std::string>& out) {
  if (!value.is_array()) return FieldError{field, "expected a list of strings"};
  out.clear();
  for (size_t i = 0; i < value.size(); ++i) {
    if (!value[i].is_string())
      return FieldError{field + "[" + std::to_string(i) + "]", "expected a string"};
    out.push_back(value[i].get<std::string>());
  }
  return std::nullopt;
}

}  // namespace

std::variant<SandboxSpec, FieldError> spec_from_json(const std::string& id,
                                                     const nlohmann::json& body) {
  SandboxSpec spec;
  spec.id = id;
  if (!body.is_object()) return FieldError{"", "body must be a JSON object"};
  for (const auto& [key, value] : body.items()) {
    if (key == "sources") {
      if (auto error = string_list(value, "sources", spec.sources)) return *error;
    } else if (key == "mode") {
      if (value == "enforce") {
        spec.mode = Mode::enforce;
      } else if (value == "audit") {
        spec.mode = Mode::audit;
      } else {
        return FieldError{"mode", "must be \"enforce\" or \"audit\""};
      }
    } else if (key == "egress") {
      if (!value.is_object()) return FieldError{"egress", "expected an object"};
      for (const auto& [egress_key, egress_value] : value.items()) {
        std::string field = "egress." + egress_key;
        if (egress_key == "default") {
          if (egress_value == "allow") {
            spec.default_verdict = Verdict::allow;
          } else if (egress_value == "deny") {
            spec.default_verdict = Verdict::deny;
          } else {
            return FieldError{field, "must be \"allow\" or \"deny\""};
          }
        } else if (egress_key == "allow") {
          if (auto error = string_list(egress_value, field, spec.allow)) return *error;
        } else if (egress_key == "deny") {
          if (auto error = string_list(egress_value, field, spec.deny)) return *error;
        } else if (egress_key == "gateway") {
          if (egress_value.is_null()) {
            spec.gateway.clear();
          } else if (!egress_value.is_string() || egress_value.get<std::string>().empty()) {
            return FieldError{field, "expected a gateway name (a string) or null"};
          } else {
            spec.gateway = egress_value.get<std::string>();
          }
        } else if (egress_key == "names_bypass_address_denies") {
          if (!egress_value.is_boolean()) return FieldError{field, "expected true or false"};
          spec.names_bypass_address_denies = egress_value.get<bool>();
        } else {
          return FieldError{field, "unknown field"};
        }
      }
    } else if (key == "id") {
      if (value != id) return FieldError{"id", "does not match the id in the path"};
    } else if (key == "generation") {
      // Echoed back by GET; accepted and ignored so a GET body can be PUT back unchanged.
    } else {
      return FieldError{key, "unknown field"};
    }
  }
  return spec;
}

nlohmann::json spec_to_json(const SandboxSpec& spec) {
  nlohmann::json body = {
      {"id", spec.id},
      {"sources", spec.sources},
      {"egress",
       {{"default", to_string(spec.default_verdict)}, {"allow", spec.allow}, {"deny", spec.deny}}},
      {"mode", to_string(spec.mode)}};
  if (spec.names_bypass_address_denies) body["egress"]["names_bypass_address_denies"] = true;
  if (!spec.gateway.empty()) body["egress"]["gateway"] = spec.gateway;
  return body;
}

nlohmann::json sandbox_to_json(const Sandbox& sandbox) {
  nlohmann::json body = spec_to_json(spec_of(sandbox));
  body["generation"] = sandbox.generation;
  return body;
}

}  // namespace egressd
