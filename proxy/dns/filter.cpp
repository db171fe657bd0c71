#include "dns/filter.hpp"

#include <algorithm>

namespace egressd {
namespace {

bool is_address_type(uint16_t qtype) {
  return qtype == LDNS_RR_TYPE_A || qtype == LDNS_RR_TYPE_AAAA || qtype == LDNS_RR_TYPE_ANY;
}

QueryPlan reply(const DnsQuery& query, uint8_t rcode, Reason reason, std::string rule = {}) {
  QueryPlan plan;
  plan.action = QueryPlan::Action::reply;
  plan.reason = reason;
  plan.verdict = Verdict::deny;
  plan.rule = std::move(rule);
  plan.reply = build_error(query, rcode);
  return plan;
}

}  // namespace

QueryPlan plan_query(const ParsedQuery& parsed, const CompiledPolicy* policy,
                     Verdict unknown_source, const DnsFilterOptions& options) {
  if (parsed.shape == QueryShape::ignore) return QueryPlan{};
  if (parsed.shape == QueryShape::malformed)
    return reply(parsed.query, LDNS_RCODE_FORMERR, Reason::malformed_query);
  const DnsQuery& query = parsed.query;
  if (policy == nullptr) {
    if (unknown_source == Verdict::deny)
      return reply(query, LDNS_RCODE_REFUSED, Reason::unknown_source);
    QueryPlan plan;  // unknown_source: allow lets every name through, the guard still holds
    plan.action = QueryPlan::Action::ask;
    plan.reason = Reason::default_allow;
    plan.verdict = Verdict::allow;
    plan.name_allowed = true;
    return plan;
  }
  // A name no pattern can match (odd bytes, over 253) is judged by "*" rules and the default
  // only: the empty string matches no name rule.
  Decision decision = policy->decide_name(query.name_is_ldh ? query.name : std::string());
  QueryPlan plan;
  plan.rule = std::string(decision.rule);
  if (decision.verdict == Verdict::allow) {
    plan.action = QueryPlan::Action::ask;
    plan.reason = decision.reason;
    plan.verdict = Verdict::allow;
    plan.name_allowed = true;
    return plan;
  }
  if (policy->mode() == Mode::audit) {
    plan.action = QueryPlan::Action::ask;
    plan.reason = Reason::audit_allow;
    plan.verdict = Verdict::allow;
    plan.would_deny = decision.reason;
    plan.name_allowed = true;
    return plan;
  }
  if (is_address_type(query.qtype) && policy->has_address_allows()) {
    plan.action = QueryPlan::Action::ask;  // only addresses inside allowed rules may come back
    plan.reason = decision.reason;
    plan.verdict = Verdict::deny;
    plan.name_allowed = false;
    return plan;
  }
  return reply(query, options.answer_denied_rcode, decision.reason, plan.rule);
}

FilteredAnswer filter_answer(const DnsQuery& query, const QueryPlan& plan, const ldns_pkt* upstream,
                             const CompiledPolicy* policy, const Guard& guard,
                             const DnsFilterOptions& options, uint32_t age_s) {
  FilteredAnswer out;
  out.would_deny = plan.would_deny;
  if (upstream == nullptr) return out;  // SERVFAIL, upstream_failure
  uint8_t rcode = static_cast<uint8_t>(ldns_pkt_get_rcode(upstream));
  if (rcode != LDNS_RCODE_NOERROR && rcode != LDNS_RCODE_NXDOMAIN) {
    out.rcode = rcode == LDNS_RCODE_REFUSED ? static_cast<uint8_t>(LDNS_RCODE_SERVFAIL) : rcode;
    return out;
  }
  auto allowed_name = [&](const std::string& name, bool ldh) {
    if (policy == nullptr) return true;
    Decision decision = policy->decide_name(ldh ? name : std::string());
    if (decision.verdict == Verdict::allow) return true;
    if (policy->mode() == Mode::audit) {
      if (!out.would_deny) out.would_deny = decision.reason;
      return true;
    }
    return false;
  };
  const ldns_rr_list* section = ldns_pkt_answer(upstream);
  size_t count = section ? ldns_rr_list_rr_count(section) : 0;
  std::vector<std::string> owners(count);
  for (size_t i = 0; i < count; ++i)
    owners[i] = canonical_name(ldns_rr_owner(ldns_rr_list_rr(section, i)));
  // The chain: from the question, one CNAME at a time, while each target is allowed.
  std::vector<std::string> chain{query.name};
  bool cut = false;
  if (plan.name_allowed) {
    for (int hop = 0; hop < 16; ++hop) {
      const ldns_rr* next = nullptr;
      for (size_t i = 0; i < count && !next; ++i) {
        const ldns_rr* rr = ldns_rr_list_rr(section, i);
        if (ldns_rr_get_type(rr) == LDNS_RR_TYPE_CNAME && ldns_rr_rd_count(rr) >= 1 &&
            owners[i] == chain.back())
          next = rr;
      }
      if (!next) break;
      bool ldh = false;
      std::string target = canonical_name(ldns_rr_rdf(next, 0), &ldh);
      if (std::find(chain.begin(), chain.end(), target) != chain.end()) break;  // a loop
      if (!allowed_name(target, ldh)) {
        cut = true;
        break;
      }
      chain.push_back(target);
    }
  }
  auto in_chain = [&](const std::string& name) {
    return plan.name_allowed && std::find(chain.begin(), chain.end(), name) != chain.end();
  };
  bool removed = cut;
  bool kept_data = false;  // a kept record other than a CNAME
  uint32_t min_ttl = UINT32_MAX;
  auto keep = [&](RrPtr rr) {
    uint32_t ttl = ldns_rr_ttl(rr.get());
    ldns_rr_set_ttl(rr.get(), ttl > age_s ? ttl - age_s : 0);
    if (ldns_rr_get_type(rr.get()) != LDNS_RR_TYPE_CNAME) kept_data = true;
    out.answers.push_back(std::move(rr));
  };
  for (size_t i = 0; i < count; ++i) {
    const ldns_rr* rr = ldns_rr_list_rr(section, i);
    ldns_rr_type type = ldns_rr_get_type(rr);
    const std::string& owner = owners[i];
    if (type == LDNS_RR_TYPE_CNAME) {
      bool hop = in_chain(owner) && ldns_rr_rd_count(rr) >= 1 &&
                 in_chain(canonical_name(ldns_rr_rdf(rr, 0)));
      if (hop) {
        out.given.push_back(canonical_name(ldns_rr_rdf(rr, 0)));
        keep(RrPtr(ldns_rr_clone(rr)));
      } else {
        removed = true;
      }
      continue;
    }
    if (auto address = record_address(rr)) {
      if (!guard.covering(*address).empty()) {
        removed = true;
        continue;
      }
      if (!in_chain(owner)) {
        // Not reached through allowed names: only an address the address rules allow, of
        // the type asked, given as the answer of the last allowed name (or the question).
        bool type_asked = query.qtype == type || query.qtype == LDNS_RR_TYPE_ANY;
        bool allowed_address =
            policy == nullptr ? plan.name_allowed : policy->address_allowed_on_some_port(*address);
        if (!type_asked || !allowed_address) {
          removed = true;
          continue;
        }
        const std::string& owner_name = plan.name_allowed ? chain.back() : query.name;
        ldns_rdf* owner_rdf = owner_name == query.name && query.owner
                                  ? ldns_rdf_clone(query.owner.get())
                                  : ldns_dname_new_frm_str((owner_name + ".").c_str());
        if (!owner_rdf) {
          removed = true;
          continue;
        }
        RrPtr copy(ldns_rr_clone(rr));
        ldns_rdf_deep_free(ldns_rr_owner(copy.get()));
        ldns_rr_set_owner(copy.get(), owner_rdf);
        rr = copy.get();
        out.addresses.push_back(*address);
        out.given.push_back(address->to_string());
        min_ttl = std::min(min_ttl, ldns_rr_ttl(rr));
        keep(std::move(copy));
        continue;
      }
      out.addresses.push_back(*address);
      out.given.push_back(address->to_string());
      min_ttl = std::min(min_ttl, ldns_rr_ttl(rr));
      keep(RrPtr(ldns_rr_clone(rr)));
      continue;
    }
    if (!in_chain(owner) || type == LDNS_RR_TYPE_DNAME) {
      removed = true;
      continue;
    }
    RrPtr copy(ldns_rr_clone(rr));
    if ((type == LDNS_RR_TYPE_HTTPS || type == LDNS_RR_TYPE_SVCB) && options.strip_ech) {
      bool malformed = false;
      if (strip_ech(copy.get(), &malformed)) out.ech_stripped = true;
      if (malformed) {  // parameters that do not parse cannot be shown to be free of ECH
        removed = true;
        continue;
      }
    }
    out.given.push_back(qtype_name(static_cast<uint16_t>(type)));
    keep(std::move(copy));
  }
  if (!out.addresses.empty()) {
    out.address_ttl = min_ttl > age_s ? min_ttl - age_s : 0;
  }
  if (plan.name_allowed) {
    if (!removed) {
      out.rcode = rcode;
      out.reason = plan.reason;
      out.verdict = Verdict::allow;
    } else if (kept_data) {
      out.rcode = LDNS_RCODE_NOERROR;
      out.reason = Reason::filtered_answer;
      out.verdict = Verdict::allow;
    } else {
      out.rcode = options.answer_denied_rcode;
      out.reason = Reason::filtered_answer;
      out.verdict = Verdict::deny;
      out.answers.clear();
      out.addresses.clear();
      out.given.clear();
    }
    if (out.verdict == Verdict::allow && (!removed || !kept_data)) {
      // A negative answer keeps its SOA, so the sandbox's resolver caches it as it should.
      const ldns_rr_list* authority = ldns_pkt_authority(upstream);
      for (size_t i = 0; authority && i < ldns_rr_list_rr_count(authority); ++i) {
        const ldns_rr* rr = ldns_rr_list_rr(authority, i);
        if (ldns_rr_get_type(rr) == LDNS_RR_TYPE_SOA && out.answers.empty())
          out.authority.emplace_back(ldns_rr_clone(rr));
      }
    }
    if (out.verdict == Verdict::allow && out.would_deny && out.reason != Reason::filtered_answer)
      out.reason = Reason::audit_allow;
    return out;
  }
  if (kept_data) {
    out.rcode = LDNS_RCODE_NOERROR;
    out.reason = Reason::filtered_answer;
    out.verdict = Verdict::allow;
  } else {
    out.rcode = options.answer_denied_rcode;
    out.reason = plan.reason;
    out.verdict = Verdict::deny;
    out.answers.clear();
    out.given.clear();
  }
  return out;
}

std::vector<uint8_t> answer_wire(const DnsQuery& query, const FilteredAnswer& answer,
                                 size_t max_bytes) {
  std::vector<const ldns_rr*> answers, authority;
  for (const RrPtr& rr : answer.answers) answers.push_back(rr.get());
  for (const RrPtr& rr : answer.authority) authority.push_back(rr.get());
  return build_answer(query, answer.rcode, answers, authority, max_bytes);
}

}  // namespace egressd
