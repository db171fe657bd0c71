// The DNS filter's query path, from the sandbox's bytes to the answer it gets back.
// Input: one byte choosing the policy, two bytes of query length, the query, and the rest as
// the upstream's answer. Invariants:
//  - a query the policy refuses by name, for a sandbox whose answers could carry nothing it
//    allows, is answered without going upstream (the name never reaches the upstream);
//  - what is asked upstream is the question the sandbox asked;
//  - every answer egressd writes parses, is a response, carries the query's id;
//  - no address in the guard, no address outside the allowed rules for a name that is not
//    allowed, and no ech SvcParam (strip_ech) is ever given.
#include <cstdlib>
#include <memory>
#include <vector>

#include "dns/filter.hpp"

using namespace egressd;

namespace {

std::shared_ptr<const CompiledPolicy> make(std::vector<std::string> allow,
                                           std::vector<std::string> deny, Mode mode) {
  SandboxSpec spec;
  spec.id = "f";
  spec.allow = std::move(allow);
  spec.deny = std::move(deny);
  spec.mode = mode;
  auto compiled = CompiledPolicy::compile(spec);
  if (!std::holds_alternative<std::shared_ptr<const CompiledPolicy>>(compiled)) abort();
  return std::get<std::shared_ptr<const CompiledPolicy>>(compiled);
}

void check_answer(const std::vector<uint8_t>& wire, const ParsedQuery& parsed) {
  if (wire.empty()) abort();  // ldns could not write it
  PacketPtr back = parse_answer(wire);
  if (!back) abort();
  if (ldns_pkt_id(back.get()) != parsed.query.id) abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const Guard guard = std::get<Guard>(Guard::compile({"10.200.0.0/16"}));
  static const std::shared_ptr<const CompiledPolicy> policies[] = {
      make({"*.github.com", "pypi.org"}, {"gist.github.com"}, Mode::enforce),  // names only
      make({"*.github.com", "198.18.0.0/24:443", "[fd00:198::/48]:22"}, {"198.18.0.12"},
           Mode::enforce),
      make({"pypi.org"}, {}, Mode::audit),
      make({".example.org"}, {"*"}, Mode::enforce),
  };
  if (size < 3) return 0;
  size_t which = data[0] % 5;  // 4: an unknown source
  size_t length = static_cast<size_t>(data[1] << 8 | data[2]);
  if (length > size - 3) length = size - 3;
  std::span<const uint8_t> query(data + 3, length);
  std::span<const uint8_t> upstream(data + 3 + length, size - 3 - length);
  const CompiledPolicy* policy = which < 4 ? policies[which].get() : nullptr;
  DnsFilterOptions options;
  options.answer_denied_rcode = (data[0] & 0x80) ? LDNS_RCODE_NXDOMAIN : LDNS_RCODE_REFUSED;
  options.strip_ech = (data[0] & 0x40) == 0;

  ParsedQuery parsed = parse_query(query);
  QueryPlan plan = plan_query(parsed, policy, Verdict::deny, options);
  if (plan.action == QueryPlan::Action::ignore) {
    if (parsed.shape != QueryShape::ignore) abort();
    return 0;
  }
  if (plan.action == QueryPlan::Action::reply) {
    check_answer(plan.reply, parsed);
    return 0;
  }
  // Asking upstream: the query was read whole, and the policy could allow something of it.
  if (parsed.shape != QueryShape::ok || policy == nullptr) abort();
  Decision name = policy->decide_name(parsed.query.name_is_ldh ? parsed.query.name : "");
  bool address_type = parsed.query.qtype == LDNS_RR_TYPE_A ||
                      parsed.query.qtype == LDNS_RR_TYPE_AAAA ||
                      parsed.query.qtype == LDNS_RR_TYPE_ANY;
  if (name.verdict != Verdict::allow && policy->mode() != Mode::audit &&
      !(address_type && policy->has_address_allows()))
    abort();  // a refused name would have reached the upstream
  if (plan.name_allowed != (name.verdict == Verdict::allow || policy->mode() == Mode::audit))
    abort();
  std::vector<uint8_t> asked = build_upstream_query(parsed.query);
  ParsedQuery again = parse_query(asked);
  if (again.shape != QueryShape::ok || again.query.name != parsed.query.name ||
      again.query.qtype != parsed.query.qtype)
    abort();

  PacketPtr answer = parse_answer(upstream);
  FilteredAnswer filtered =
      filter_answer(parsed.query, plan, answer.get(), policy, guard, options, data[0] & 0x3f);
  for (const RrPtr& rr : filtered.answers) {
    if (auto address = record_address(rr.get())) {
      if (!guard.covering(*address).empty()) abort();
      if (!plan.name_allowed && !policy->address_allowed_on_some_port(*address)) abort();
    }
    if (options.strip_ech && has_ech(rr.get())) abort();
  }
  if (filtered.verdict == Verdict::deny && !filtered.answers.empty()) abort();
  check_answer(answer_wire(parsed.query, filtered, kClassicUdpBytes), parsed);
  check_answer(answer_wire(parsed.query, filtered, 65535), parsed);
  return 0;
}
