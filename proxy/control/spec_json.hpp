#pragma once
// The native JSON shape of a sandbox:
//   {"sources":[...],"egress":{"default":"deny","allow":[...],"deny":[...]},"mode":"enforce"}
#include <nlohmann/json.hpp>

#include <variant>

#include "policy/policy_store.hpp"

namespace egressd {

// Strict: unknown keys and wrong types are errors naming the field.
std::variant<SandboxSpec, FieldError> spec_from_json(const std::string& id,
                                                     const nlohmann::json& body);
nlohmann::json spec_to_json(const SandboxSpec& spec);
nlohmann::json sandbox_to_json(const Sandbox& sandbox);  // spec + "generation"

}  // namespace egressd
