#pragma once
// The explain call shared by POST /v1/check and `egressd --check`: no traffic, no DNS.
#include <nlohmann/json.hpp>

#include "policy/policy_store.hpp"

namespace egressd {

struct CheckAnswer {
  int status = 200;  // 200, 400 (bad body), 404 (unknown sandbox)
  nlohmann::json body;
};

// Body: {"sandbox":"id","host":"api.github.com","ip":"198.18.0.10","port":443}; host and ip
// are each optional but not both; port is required. With "qtype" ("A", "HTTPS"...): the DNS
// filter's decision for that query instead (host required, no port; "ip" optional: whether an
// answer carrying that address would be given); the answer adds "qtype" and "answer"
// (upstream | allowed_addresses | answer_denied | removed).
CheckAnswer check_request(const StoreSnapshot& store, const Guard& guard, Verdict unknown_source,
                          const nlohmann::json& body);

nlohmann::json error_body(const std::string& message, const std::string& field);

}  // namespace egressd
