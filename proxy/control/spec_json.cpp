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

std::optional<FieldError> transform_from_json(const nlohmann::json& value, const std::string& field,
                                              Transform& out) {
  if (!value.is_object()) return FieldError{field, "expected an object with hosts, headers, body"};
  for (const auto& [key, item] : value.items()) {
    if (key == "hosts") {
      if (auto error = string_list(item, field + ".hosts", out.hosts)) return error;
    } else if (key == "headers") {
      if (auto error = string_pairs(item, field + ".headers", out.headers)) return error;
    } else if (key == "body") {
      if (auto error = string_pairs(item, field + ".body", out.body)) return error;
    } else {
      return FieldError{field + "." + key, "unknown field"};
    }
  }
  return std::nullopt;
}

}  // namespace

std::optional<FieldError> string_pairs(const nlohmann::json& value, const std::string& field,
                                       std::vector<std::pair<std::string, std::string>>& out) {
  if (!value.is_object()) return FieldError{field, "expected an object of strings"};
  out.clear();
  for (const auto& [key, item] : value.items()) {
    if (!item.is_string()) return FieldError{field + "." + key, "expected a string"};
    out.emplace_back(key, item.get<std::string>());
  }
  return std::nullopt;
}

std::optional<FieldError> secrets_from_json(const nlohmann::json& value, const std::string& field,
                                            Secrets& out, std::vector<std::string>* removed) {
  if (!value.is_object()) return FieldError{field, "expected an object of name: value strings"};
  for (const auto& [key, item] : value.items()) {
    if (auto error = secret_name_error(key)) return FieldError{field, *error};
    if (item.is_null() && removed) {
      removed->push_back(key);
      continue;
    }
    if (!item.is_string()) return FieldError{field + "." + key, "expected a string"};
    if (auto error = secret_value_error(item.get_ref<const std::string&>()))
      return FieldError{field + "." + key, *error};
    out[key] = item.get<std::string>();
  }
  return std::nullopt;
}

std::variant<SandboxSpec, FieldError> spec_from_json(const std::string& id,
                                                     const nlohmann::json& body,
                                                     bool* secrets_given) {
  if (secrets_given) *secrets_given = false;
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
    } else if (key == "transforms") {
      if (!value.is_array()) return FieldError{"transforms", "expected a list of transforms"};
      for (size_t i = 0; i < value.size(); ++i) {
        Transform transform;
        if (auto error =
                transform_from_json(value[i], "transforms[" + std::to_string(i) + "]", transform))
          return *error;
        spec.transforms.push_back(std::move(transform));
      }
    } else if (key == "bypass") {
      if (auto error = string_list(value, "bypass", spec.bypass)) return *error;
    } else if (key == "secrets") {
      if (auto error = secrets_from_json(value, "secrets", spec.secrets)) return *error;
      if (secrets_given) *secrets_given = true;
    } else if (key == "secret_names") {
      // Echoed back by GET (the values never are); accepted and ignored like "generation".
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
  if (!spec.transforms.empty()) {
    nlohmann::json list = nlohmann::json::array();
    for (const Transform& transform : spec.transforms) {
      nlohmann::json item = {{"hosts", transform.hosts}};
      if (!transform.headers.empty()) {
        item["headers"] = nlohmann::json::object();
        for (const auto& [name, value] : transform.headers) item["headers"][name] = value;
      }
      if (!transform.body.empty()) {
        item["body"] = nlohmann::json::object();
        for (const auto& [name, value] : transform.body) item["body"][name] = value;
      }
      list.push_back(std::move(item));
    }
    body["transforms"] = std::move(list);
  }
  if (!spec.bypass.empty()) body["bypass"] = spec.bypass;
  if (!spec.secrets.empty()) {
    nlohmann::json names = nlohmann::json::array();
    for (const auto& [name, value] : spec.secrets) names.push_back(name);
    body["secret_names"] = std::move(names);
  }
  return body;
}

nlohmann::json sandbox_to_json(const Sandbox& sandbox) {
  nlohmann::json body = spec_to_json(spec_of(sandbox));
  body["generation"] = sandbox.generation;
  return body;
}

}  // namespace egressd
