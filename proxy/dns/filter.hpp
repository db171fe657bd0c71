#pragma once
// The DNS filter's decisions (DESIGN.md "DNS for sandboxes"), pure: what a query may ask the
// upstream (plan_query) and what of the upstream's answer the sandbox gets (filter_answer).
// The I/O around them is session/dns_server; the budgets and the answers remembered for
// dns.verify are dns/budget.
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "core/reason.hpp"
#include "dns/message.hpp"
#include "policy/sandbox_policy.hpp"

namespace egressd {

struct DnsFilterOptions {
  uint8_t answer_denied_rcode = LDNS_RCODE_REFUSED;  // dns_filter.answer_denied
  bool strip_ech = true;
};

struct QueryPlan {
  enum class Action : uint8_t { reply, ask, ignore };
  Action action = Action::ignore;
  // reply: the answer's reason. ask: the name's reason, final unless the answer is filtered.
  Reason reason = Reason::malformed_query;
  Verdict verdict = Verdict::deny;
  std::string rule;                  // the rule that decided the name, if one did
  std::optional<Reason> would_deny;  // audit mode: the refusal the name would have had
  // ask: true when the name is allowed (its answer is given, less guarded addresses, cut
  // CNAME chains and ECH); false when only addresses inside allowed address rules may pass.
  bool name_allowed = false;
  std::vector<uint8_t> reply;  // reply: the wire answer
};

// What to do with `parsed` for a sandbox with `policy` (null: an unknown source, judged by
// `unknown_source`). A name that the policy refuses and whose answer could carry nothing the
// policy allows is answered here and never goes upstream.
QueryPlan plan_query(const ParsedQuery& parsed, const CompiledPolicy* policy,
                     Verdict unknown_source, const DnsFilterOptions& options);

struct FilteredAnswer {
  uint8_t rcode = LDNS_RCODE_SERVFAIL;
  std::vector<RrPtr> answers;
  std::vector<RrPtr> authority;
  Reason reason = Reason::upstream_failure;
  Verdict verdict = Verdict::deny;
  std::optional<Reason> would_deny;
  std::vector<IpAddress> addresses;  // the A/AAAA the sandbox is given (for dns.verify)
  uint32_t address_ttl = 0;          // the smallest TTL among them
  bool ech_stripped = false;
  std::vector<std::string> given;  // for the access log: addresses, CNAME targets, type names
};

// `upstream` is the upstream's answer (null: no answer), `age_s` how long it has been cached
// (TTLs are lowered by it). Every address passes `guard`; CNAME chains are followed from the
// question and cut at the first target the policy does not allow.
FilteredAnswer filter_answer(const DnsQuery& query, const QueryPlan& plan, const ldns_pkt* upstream,
                             const CompiledPolicy* policy, const Guard& guard,
                             const DnsFilterOptions& options, uint32_t age_s = 0);

// The wire form of `answer` for `query` (TC and no records when over `max_bytes`).
std::vector<uint8_t> answer_wire(const DnsQuery& query, const FilteredAnswer& answer,
                                 size_t max_bytes);

}  // namespace egressd
