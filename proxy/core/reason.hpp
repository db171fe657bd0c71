#pragma once
// The closed set of outcomes (DESIGN.md "What a connection gets"). Every connection ends with
// exactly one; logs, metrics and the API are driven from this list.
#include <array>
#include <cstdint>
#include <optional>
#include <string_view>

namespace egressd {

// clang-format off
#define EGRESSD_ALL_REASONS(X)                                                              \
  X(allowed_domain) X(allowed_address) X(default_allow) X(audit_allow) X(denied_domain)    \
  X(denied_address) X(default_deny) X(guarded_destination) X(unknown_source) X(no_sni)     \
  X(malformed_tls) X(hello_too_large) X(not_tls) X(not_http) X(malformed_host)             \
  X(peek_timeout) X(dns_mismatch) X(dns_failure) X(connect_failed) X(connection_limit)     \
  X(revoked) X(upstream_untrusted) X(missing_secret) X(filtered_answer) X(budget_exceeded)  \
  X(malformed_query) X(upstream_failure)
// clang-format on

enum class Reason : uint8_t {
#define EGRESSD_REASON_ENUM(name) name,
  EGRESSD_ALL_REASONS(EGRESSD_REASON_ENUM)
#undef EGRESSD_REASON_ENUM
};

inline constexpr std::array kAllReasons = {
#define EGRESSD_REASON_VALUE(name) Reason::name,
    EGRESSD_ALL_REASONS(EGRESSD_REASON_VALUE)
#undef EGRESSD_REASON_VALUE
};

enum class Verdict : uint8_t { allow, deny };

std::string_view to_string(Reason reason);
std::string_view to_string(Verdict verdict);
std::optional<Reason> reason_from_string(std::string_view text);

// The reasons only a DNS query can have (DESIGN.md "DNS for sandboxes"); connections never
// end with one, so egressd_connections_total does not carry them.
bool is_dns_only(Reason reason);

// The verdict a reason implies; audit_allow and the allowed_* reasons let traffic through.
Verdict verdict_of(Reason reason);

}  // namespace egressd
