#include "core/reason.hpp"

namespace egressd {

std::string_view to_string(Reason reason) {
  switch (reason) {
#define EGRESSD_REASON_NAME(name) \
  case Reason::name:              \
    return #name;
    EGRESSD_ALL_REASONS(EGRESSD_REASON_NAME)
#undef EGRESSD_REASON_NAME
  }
  return "unknown";
}

std::string_view to_string(Verdict verdict) {
  return verdict == Verdict::allow ? "allow" : "deny";
}

std::optional<Reason> reason_from_string(std::string_view text) {
  for (Reason reason : kAllReasons) {
    if (to_string(reason) == text) return reason;
  }
  return std::nullopt;
}

bool is_dns_only(Reason reason) {
  return reason == Reason::filtered_answer || reason == Reason::budget_exceeded ||
         reason == Reason::malformed_query || reason == Reason::upstream_failure;
}

Verdict verdict_of(Reason reason) {
  switch (reason) {
    case Reason::allowed_domain:
    case Reason::allowed_address:
    case Reason::default_allow:
    case Reason::audit_allow:
      return Verdict::allow;
    default:
      return Verdict::deny;
  }
}

}  // namespace egressd
