// The DNS filter's pure parts: messages (ldns), plans, answer filtering, budgets, memory.
#include <doctest/doctest.h>

#include <chrono>

#include "control/check.hpp"
#include "dns/budget.hpp"
#include "dns/filter.hpp"
#include "policy/public_suffix.hpp"

using namespace egressd;
using namespace std::chrono_literals;

namespace {

IpAddress ip(const char* text) {
  return *IpAddress::parse(text);
}

std::shared_ptr<const CompiledPolicy> policy(std::vector<std::string> allow,
                                             std::vector<std::string> deny = {},
                                             Mode mode = Mode::enforce) {
  SandboxSpec spec;
  spec.id = "s";
  spec.allow = std::move(allow);
  spec.deny = std::move(deny);
  spec.mode = mode;
  return std::get<std::shared_ptr<const CompiledPolicy>>(CompiledPolicy::compile(spec));
}

const Guard& guard() {
  static Guard g = std::get<Guard>(Guard::compile({"10.200.0.0/16"}));
  return g;
}

// A query message as a stub resolver sends it.
std::vector<uint8_t> query_wire(const char* name, uint16_t qtype, uint16_t id = 0x1234) {
  DnsQuery q;
  q.owner.reset(ldns_dname_new_frm_str(name));
  q.qtype = qtype;
  q.qclass = LDNS_RR_CLASS_IN;
  std::vector<uint8_t> wire = build_upstream_query(q);
  wire[0] = static_cast<uint8_t>(id >> 8);
  wire[1] = static_cast<uint8_t>(id);
  return wire;
}

ParsedQuery parsed(const char* name, uint16_t qtype) {
  return parse_query(query_wire(name, qtype));
}

// An upstream answer from zone-file lines.
PacketPtr upstream(std::vector<const char*> records, uint8_t rcode = LDNS_RCODE_NOERROR) {
  PacketPtr packet(ldns_pkt_new());
  ldns_pkt_set_qr(packet.get(), true);
  ldns_pkt_set_rcode(packet.get(), rcode);
  for (const char* text : records) {
    ldns_rr* rr = nullptr;
    REQUIRE(ldns_rr_new_frm_str(&rr, text, 0, nullptr, nullptr) == LDNS_STATUS_OK);
    ldns_pkt_push_rr(packet.get(), LDNS_SECTION_ANSWER, rr);
  }
  return packet;
}

std::vector<std::string> texts(const FilteredAnswer& answer) {
  std::vector<std::string> out;
  for (const RrPtr& rr : answer.answers) {
    char* text = ldns_rr2str(rr.get());
    std::string line(text);
    free(text);
    while (!line.empty() && line.back() == '\n') line.pop_back();
    out.push_back(line);
  }
  return out;
}

}  // namespace

TEST_CASE(
    "DNS messages: queries are read with ldns; responses, short and odd messages are not "
    "answered") {
  ParsedQuery q = parsed("API.GitHub.com.", LDNS_RR_TYPE_A);
  REQUIRE(q.shape == QueryShape::ok);
  CHECK(q.query.name == "api.github.com");
  CHECK(q.query.name_is_ldh);
  CHECK(q.query.id == 0x1234);
  CHECK(q.query.edns);
  CHECK(q.query.udp_size == kMaxUdpAnswerBytes);

  std::vector<uint8_t> response = query_wire("a.example.", LDNS_RR_TYPE_A);
  response[2] |= 0x80;
  CHECK(parse_query(response).shape == QueryShape::ignore);
  CHECK(parse_query(std::vector<uint8_t>(11, 0)).shape == QueryShape::ignore);
  // A compression pointer to itself, two questions, a zone transfer: FORMERR.
  std::vector<uint8_t> loop = {0, 7, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0xc0, 12, 0, 1, 0, 1};
  CHECK(parse_query(loop).shape == QueryShape::malformed);
  CHECK(parse_query(loop).query.id == 7);
  CHECK(parsed("a.example.", LDNS_RR_TYPE_AXFR).shape == QueryShape::malformed);
  std::vector<uint8_t> two = {0,   7, 1, 0, 0, 2, 0, 0,   0, 0, 0, 0, 1,
                              'a', 0, 0, 1, 0, 1, 1, 'b', 0, 0, 1, 0, 1};
  CHECK(parse_query(two).shape == QueryShape::malformed);
  // A label with a byte no pattern can name.
  std::vector<uint8_t> odd = {0,   7,   1,   0, 0,   1,   0,   0, 0, 0, 0, 0, 3,
                              'a', '.', 'b', 3, 'c', 'o', 'm', 0, 0, 1, 0, 1};
  ParsedQuery o = parse_query(odd);
  REQUIRE(o.shape == QueryShape::ok);
  CHECK_FALSE(o.query.name_is_ldh);

  CHECK(qtype_name(LDNS_RR_TYPE_HTTPS) == "HTTPS");
  CHECK(qtype_from_name("aaaa") == LDNS_RR_TYPE_AAAA);
  CHECK(qtype_from_name("TYPE65") == LDNS_RR_TYPE_HTTPS);
  CHECK_FALSE(qtype_from_name("NOTATYPE").has_value());
  CHECK_FALSE(qtype_from_name("").has_value());
}

TEST_CASE("DNS plan: only what the policy could let through goes upstream") {
  auto p = policy({"*.github.com", "198.18.0.0/24:443"}, {"gist.github.com"});
  auto names_only = policy({"*.github.com"});
  DnsFilterOptions options;

  QueryPlan allowed =
      plan_query(parsed("api.github.com.", LDNS_RR_TYPE_A), p.get(), Verdict::deny, options);
  CHECK(allowed.action == QueryPlan::Action::ask);
  CHECK(allowed.name_allowed);
  CHECK(allowed.reason == Reason::allowed_domain);
  CHECK(allowed.rule == "*.github.com");

  // Denied name, sandbox with an address allow: A/AAAA may go up (filtered), others may not.
  QueryPlan filtered =
      plan_query(parsed("gist.github.com.", LDNS_RR_TYPE_A), p.get(), Verdict::deny, options);
  CHECK(filtered.action == QueryPlan::Action::ask);
  CHECK_FALSE(filtered.name_allowed);
  CHECK(filtered.reason == Reason::denied_domain);
  QueryPlan txt =
      plan_query(parsed("gist.github.com.", LDNS_RR_TYPE_TXT), p.get(), Verdict::deny, options);
  CHECK(txt.action == QueryPlan::Action::reply);

  // No address rule: a denied name is answered here, REFUSED or NXDOMAIN, with the query's id.
  QueryPlan refused = plan_query(parsed("c2VjcmV0.attacker.example.", LDNS_RR_TYPE_A),
                                 names_only.get(), Verdict::deny, options);
  REQUIRE(refused.action == QueryPlan::Action::reply);
  CHECK(refused.reason == Reason::default_deny);
  PacketPtr answer = parse_answer(refused.reply);
  REQUIRE(answer);
  CHECK(ldns_pkt_get_rcode(answer.get()) == LDNS_RCODE_REFUSED);
  CHECK(ldns_pkt_id(answer.get()) == 0x1234);
  CHECK(ldns_pkt_qdcount(answer.get()) == 1);
  options.answer_denied_rcode = LDNS_RCODE_NXDOMAIN;
  answer = parse_answer(plan_query(parsed("x.attacker.example.", LDNS_RR_TYPE_A), names_only.get(),
                                   Verdict::deny, options)
                            .reply);
  CHECK(ldns_pkt_get_rcode(answer.get()) == LDNS_RCODE_NXDOMAIN);

  // Unknown sources, audit mode, malformed queries.
  QueryPlan unknown =
      plan_query(parsed("api.github.com.", LDNS_RR_TYPE_A), nullptr, Verdict::deny, options);
  CHECK(unknown.action == QueryPlan::Action::reply);
  CHECK(unknown.reason == Reason::unknown_source);
  auto audit = policy({"pypi.org"}, {}, Mode::audit);
  QueryPlan audited =
      plan_query(parsed("api.github.com.", LDNS_RR_TYPE_TXT), audit.get(), Verdict::deny, options);
  CHECK(audited.action == QueryPlan::Action::ask);
  CHECK(audited.reason == Reason::audit_allow);
  CHECK(audited.would_deny == Reason::default_deny);
  std::vector<uint8_t> loop = {0, 7, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0xc0, 12, 0, 1, 0, 1};
  QueryPlan bad = plan_query(parse_query(loop), p.get(), Verdict::deny, options);
  CHECK(bad.reason == Reason::malformed_query);
  CHECK(ldns_pkt_get_rcode(parse_answer(bad.reply).get()) == LDNS_RCODE_FORMERR);

  // "*:22" is a name rule for every name: ports are ignored for DNS.
  auto any = policy({"*:22"});
  CHECK(plan_query(parsed("anything.example.", LDNS_RR_TYPE_A), any.get(), Verdict::deny, options)
            .name_allowed);
}

TEST_CASE("DNS filter: guard, CNAME chains, address rules, ECH, TTLs and truncation") {
  auto p = policy({"*.github.com", "198.18.0.0/24:443"});
  DnsFilterOptions options;
  ParsedQuery q = parsed("api.github.com.", LDNS_RR_TYPE_A);
  QueryPlan plan = plan_query(q, p.get(), Verdict::deny, options);

  SUBCASE("an allowed name's answer, less guarded addresses") {
    auto up = upstream({"api.github.com. 60 IN A 198.18.0.10", "api.github.com. 60 IN A 10.200.1.2",
                        "api.github.com. 60 IN A 203.0.113.5"});
    FilteredAnswer a = filter_answer(q.query, plan, up.get(), p.get(), guard(), options, 20);
    CHECK(a.reason == Reason::filtered_answer);
    CHECK(a.verdict == Verdict::allow);
    CHECK(a.addresses == std::vector<IpAddress>{ip("198.18.0.10"), ip("203.0.113.5")});
    CHECK(a.address_ttl == 40);
    CHECK(texts(a)[0] == "api.github.com.\t40\tIN\tA\t198.18.0.10");
    auto all_guarded =
        upstream({"api.github.com. 60 IN A 10.200.1.2", "api.github.com. 60 IN A 127.0.0.1"});
    FilteredAnswer none =
        filter_answer(q.query, plan, all_guarded.get(), p.get(), guard(), options);
    CHECK(none.verdict == Verdict::deny);
    CHECK(none.rcode == LDNS_RCODE_REFUSED);
    CHECK(none.answers.empty());
    CHECK(none.addresses.empty());
  }
  SUBCASE("untouched: the name's own reason, the upstream's rcode") {
    auto up = upstream({"api.github.com. 60 IN A 198.18.0.10"});
    FilteredAnswer a = filter_answer(q.query, plan, up.get(), p.get(), guard(), options);
    CHECK(a.reason == Reason::allowed_domain);
    CHECK(a.rcode == LDNS_RCODE_NOERROR);
    auto nx = upstream({}, LDNS_RCODE_NXDOMAIN);
    CHECK(filter_answer(q.query, plan, nx.get(), p.get(), guard(), options).rcode ==
          LDNS_RCODE_NXDOMAIN);
    auto fail = upstream({}, LDNS_RCODE_SERVFAIL);
    CHECK(filter_answer(q.query, plan, fail.get(), p.get(), guard(), options).reason ==
          Reason::upstream_failure);
    CHECK(filter_answer(q.query, plan, nullptr, p.get(), guard(), options).rcode ==
          LDNS_RCODE_SERVFAIL);
  }
  SUBCASE("CNAME chains: followed while allowed, cut at the first name that is not") {
    auto allowed = upstream(
        {"api.github.com. 60 IN CNAME lb.github.com.", "lb.github.com. 60 IN A 198.18.0.10"});
    FilteredAnswer a = filter_answer(q.query, plan, allowed.get(), p.get(), guard(), options);
    CHECK(a.reason == Reason::allowed_domain);
    CHECK(a.answers.size() == 2);
    auto cut = upstream(
        {"api.github.com. 60 IN CNAME edge.cdn.example.", "edge.cdn.example. 60 IN A 203.0.113.9"});
    FilteredAnswer c = filter_answer(q.query, plan, cut.get(), p.get(), guard(), options);
    CHECK(c.reason == Reason::filtered_answer);
    CHECK(c.verdict == Verdict::deny);
    CHECK(c.answers.empty());
    // Past the cut, an address inside an allowed address rule still counts, as the last
    // allowed name's.
    auto inside = upstream(
        {"api.github.com. 60 IN CNAME edge.cdn.example.", "edge.cdn.example. 60 IN A 198.18.0.7"});
    FilteredAnswer i = filter_answer(q.query, plan, inside.get(), p.get(), guard(), options);
    CHECK(i.verdict == Verdict::allow);
    REQUIRE(texts(i).size() == 1);
    CHECK(texts(i)[0] == "api.github.com.\t60\tIN\tA\t198.18.0.7");
    auto loop = upstream({"api.github.com. 60 IN CNAME lb.github.com.",
                          "lb.github.com. 60 IN CNAME api.github.com."});
    CHECK(filter_answer(q.query, plan, loop.get(), p.get(), guard(), options).answers.size() == 2);
  }
  SUBCASE("a name the policy does not allow: only addresses inside allowed address rules") {
    ParsedQuery other = parsed("db.corp.example.", LDNS_RR_TYPE_A);
    QueryPlan other_plan = plan_query(other, p.get(), Verdict::deny, options);
    auto up = upstream(
        {"db.corp.example. 60 IN CNAME x.corp.example.", "x.corp.example. 60 IN A 198.18.0.11",
         "x.corp.example. 60 IN A 203.0.113.1", "x.corp.example. 60 IN TXT \"data\""});
    FilteredAnswer a = filter_answer(other.query, other_plan, up.get(), p.get(), guard(), options);
    CHECK(a.reason == Reason::filtered_answer);
    CHECK(texts(a) == std::vector<std::string>{"db.corp.example.\t60\tIN\tA\t198.18.0.11"});
    auto outside = upstream({"db.corp.example. 60 IN A 203.0.113.1"});
    FilteredAnswer b =
        filter_answer(other.query, other_plan, outside.get(), p.get(), guard(), options);
    CHECK(b.reason == Reason::default_deny);
    CHECK(b.rcode == LDNS_RCODE_REFUSED);
  }
  SUBCASE("HTTPS: ech removed, from mandatory too; alpn kept") {
    ParsedQuery h = parsed("api.github.com.", LDNS_RR_TYPE_HTTPS);
    QueryPlan hp = plan_query(h, p.get(), Verdict::deny, options);
    auto up = upstream({"api.github.com. 60 IN HTTPS 1 . mandatory=alpn,ech alpn=h2 ech=3q2+7w=="});
    REQUIRE(has_ech(ldns_rr_list_rr(ldns_pkt_answer(up.get()), 0)));
    FilteredAnswer a = filter_answer(h.query, hp, up.get(), p.get(), guard(), options);
    CHECK(a.ech_stripped);
    REQUIRE(a.answers.size() == 1);
    CHECK_FALSE(has_ech(a.answers[0].get()));
    CHECK(texts(a)[0] == "api.github.com.\t60\tIN\tHTTPS\t1 . mandatory=alpn alpn=h2");
    // It survives the wire and back.
    PacketPtr back = parse_answer(answer_wire(h.query, a, 65535));
    REQUIRE(back);
    CHECK_FALSE(has_ech(ldns_rr_list_rr(ldns_pkt_answer(back.get()), 0)));
    auto only_ech = upstream({"api.github.com. 60 IN HTTPS 1 . ech=3q2+7w=="});
    FilteredAnswer b = filter_answer(h.query, hp, only_ech.get(), p.get(), guard(), options);
    CHECK(texts(b)[0] == "api.github.com.\t60\tIN\tHTTPS\t1 .");
    DnsFilterOptions keep = options;
    keep.strip_ech = false;
    CHECK(has_ech(filter_answer(h.query, hp, up.get(), p.get(), guard(), keep).answers[0].get()));
  }
  SUBCASE("too large for UDP: TC and no records") {
    std::vector<std::string> lines;
    for (int i = 0; i < 60; ++i)
      lines.push_back("api.github.com. 60 IN A 198.18.0." + std::to_string(i + 1));
    std::vector<const char*> raw;
    for (auto& line : lines) raw.push_back(line.c_str());
    auto up = upstream(raw);
    FilteredAnswer a = filter_answer(q.query, plan, up.get(), p.get(), guard(), options);
    PacketPtr udp = parse_answer(answer_wire(q.query, a, kClassicUdpBytes));
    REQUIRE(udp);
    CHECK(ldns_pkt_tc(udp.get()));
    CHECK(ldns_pkt_ancount(udp.get()) == 0);
    PacketPtr tcp = parse_answer(answer_wire(q.query, a, 65535));
    CHECK(ldns_pkt_ancount(tcp.get()) == 60);
  }
}

TEST_CASE("DNS budget: a token bucket per sandbox and new names per registrable domain") {
  DnsBudget budget;
  DnsBudgetLimits limits{10, 20, 5};
  auto now = DnsBudget::Clock::now();
  int taken = 0;
  for (int i = 0; i < 100; ++i) taken += budget.take_query("a", limits, now);
  CHECK(taken == 20);                          // the burst
  CHECK(budget.take_query("b", limits, now));  // another sandbox has its own
  CHECK_FALSE(budget.take_query("a", limits, now + 50ms));
  CHECK(budget.take_query("a", limits, now + 150ms));  // 10/s refills one in 100 ms

  for (int i = 0; i < 5; ++i)
    CHECK(budget.admit_name("a", "x" + std::to_string(i) + ".tunnel.co.uk", limits, now));
  CHECK_FALSE(budget.admit_name("a", "x9.tunnel.co.uk", limits, now));
  CHECK(budget.admit_name("a", "x1.tunnel.co.uk", limits, now));        // seen: not new
  CHECK(budget.admit_name("a", "x9.other.co.uk", limits, now));         // another domain
  CHECK(budget.admit_name("b", "x9.tunnel.co.uk", limits, now));        // another sandbox
  CHECK(budget.admit_name("a", "x9.tunnel.co.uk", limits, now + 61s));  // the next minute
  CHECK(registrable_domain("x1.tunnel.example.co.uk") == "example.co.uk");
  CHECK(registrable_domain("a.b.github.com") == "github.com");
  CHECK(registrable_domain("co.uk") == "co.uk");
  CHECK(registrable_domain("localhost") == "localhost");
}

TEST_CASE("DNS answers remembered per sandbox for their TTL, bounded") {
  AnswerMemory memory;
  auto now = AnswerMemory::Clock::now();
  std::vector<IpAddress> given{ip("198.18.0.10"), ip("fd00:198::10")};
  memory.remember("a", "api.github.com", given, 30, now);
  CHECK(memory.gave("a", "api.github.com", ip("198.18.0.10"), now + 29s));
  CHECK(memory.gave("a", "api.github.com", ip("::ffff:198.18.0.10"), now));
  CHECK_FALSE(memory.gave("a", "api.github.com", ip("198.18.0.11"), now));
  CHECK_FALSE(memory.gave("b", "api.github.com", ip("198.18.0.10"), now));
  CHECK_FALSE(memory.gave("a", "pypi.org", ip("198.18.0.10"), now));
  CHECK_FALSE(memory.gave("a", "api.github.com", ip("198.18.0.10"), now + 31s));
  for (size_t i = 0; i < AnswerMemory::kNamesPerSandbox + 100; ++i)
    memory.remember("a", "n" + std::to_string(i) + ".example", given, 30, now);
  CHECK(memory.names("a") <= AnswerMemory::kNamesPerSandbox);
  memory.forget("a");
  CHECK(memory.names("a") == 0);
}

TEST_CASE("POST /v1/check explains a DNS decision") {
  PolicyStore store;
  SandboxSpec spec;
  spec.id = "s";
  spec.sources = {"10.200.1.2"};
  spec.allow = {"*.github.com", "198.18.0.0/24"};
  spec.deny = {"gist.github.com"};
  REQUIRE_FALSE(store.replace_all({spec}).has_value());
  auto snapshot = store.snapshot();
  auto check = [&](const char* body) {
    return check_request(*snapshot, guard(), Verdict::deny, nlohmann::json::parse(body));
  };
  auto a = check(R"({"sandbox":"s","host":"api.github.com","qtype":"A"})");
  CHECK(a.status == 200);
  CHECK(a.body["verdict"] == "allow");
  CHECK(a.body["reason"] == "allowed_domain");
  CHECK(a.body["rule"] == "*.github.com");
  CHECK(a.body["answer"] == "upstream");
  auto gist = check(R"({"sandbox":"s","host":"gist.github.com","qtype":"A"})");
  CHECK(gist.body["reason"] == "denied_domain");
  CHECK(gist.body["answer"] == "allowed_addresses");
  auto inside = check(R"({"sandbox":"s","host":"gist.github.com","qtype":"A","ip":"198.18.0.9"})");
  CHECK(inside.body["verdict"] == "allow");
  CHECK(inside.body["reason"] == "filtered_answer");
  auto txt = check(R"({"sandbox":"s","host":"gist.github.com","qtype":"txt"})");
  CHECK(txt.body["answer"] == "answer_denied");
  CHECK(txt.body["qtype"] == "TXT");
  auto guarded = check(R"({"sandbox":"s","host":"api.github.com","qtype":"A","ip":"10.200.1.9"})");
  CHECK(guarded.body["verdict"] == "deny");
  CHECK(guarded.body["reason"] == "filtered_answer");
  CHECK(check(R"({"sandbox":"s","host":"api.github.com","qtype":"BOGUS"})").status == 400);
  CHECK(check(R"({"sandbox":"s","host":"api.github.com","qtype":"A","port":53})").status == 400);
  CHECK(check(R"({"sandbox":"s","host":"198.18.0.1","qtype":"A"})").status == 400);
  CHECK(check(R"({"sandbox":"s","qtype":"A"})").status == 400);
  CHECK(check(R"({"sandbox":"nope","host":"a.example","qtype":"A"})").status == 404);
}
