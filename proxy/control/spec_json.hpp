#pragma once
// The native JSON shape of a sandbox:
//   {"sources":[...],"egress":{"default":"deny","allow":[...],"deny":[...]},"mode":"enforce"}
#include <nlohmann/json.hpp>

#include <optional>
#include <variant>

#include "policy/policy_store.hpp"

namespace egressd {

// Strict: unknown keys and wrong types are errors naming the field. `secrets_given` says
// whether the body had "secrets" (absent: the sandbox keeps the secrets it has).
std::variant<SandboxSpec, FieldError> spec_from_json(const std::string& id,
                                                     const nlohmann::json& body,
                                                     bool* secrets_given = nullptr);
// {"name":"value",...} into `out` (strings only; `null` values are left out and listed in
// `removed` when given). Errors name `field`.NAME and never quote a value.
std::optional<FieldError> secrets_from_json(const nlohmann::json& value, const std::string& field,
                                            Secrets& out,
                                            std::vector<std::string>* removed = nullptr);
// {"header":"template",...} as an ordered list.
std::optional<FieldError> string_pairs(const nlohmann::json& value, const std::string& field,
                                       std::vector<std::pair<std::string, std::string>>& out);
// Without the secrets' values: only their names, as "secret_names" (write-only).
nlohmann::json spec_to_json(const SandboxSpec& spec);
nlohmann::json sandbox_to_json(const Sandbox& sandbox);  // spec + "generation"

}  // namespace egressd
