#pragma once
// DNS messages for the DNS filter, read and written with ldns (Debian's libldns-dev): this file
// only owns ldns objects and says what they hold. The one thing written by hand is the walk
// over an SVCB/HTTPS record's SvcParams (ldns keeps them as one opaque field and has no call to
// remove a key): strip_ech().
// stdbool.h first: without __bool_true_false_are_defined, ldns defines bool/true/false as macros.
#include <stdbool.h>
// clang-format off
#include <ldns/ldns.h>
// clang-format on

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "core/ip.hpp"

namespace egressd {

struct LdnsPacketFree {
  void operator()(ldns_pkt* packet) const { ldns_pkt_free(packet); }
};
using PacketPtr = std::unique_ptr<ldns_pkt, LdnsPacketFree>;
using SharedPacket = std::shared_ptr<const ldns_pkt>;
struct LdnsRrFree {
  void operator()(ldns_rr* rr) const { ldns_rr_free(rr); }
};
using RrPtr = std::unique_ptr<ldns_rr, LdnsRrFree>;
struct LdnsRdfFree {
  void operator()(ldns_rdf* rdf) const { ldns_rdf_deep_free(rdf); }
};
using RdfPtr = std::unique_ptr<ldns_rdf, LdnsRdfFree>;

// The largest DNS message a client may send over TCP that the filter reads; a query is small.
inline constexpr size_t kMaxQueryBytes = 4096;
// What an answer over UDP may be without EDNS (RFC 1035), and the most it ever is (RFC 9715's
// advice against fragmentation).
inline constexpr size_t kClassicUdpBytes = 512;
inline constexpr size_t kMaxUdpAnswerBytes = 1232;

// One question, as a sandbox asked it.
struct DnsQuery {
  uint16_t id = 0;
  uint8_t opcode = 0;
  bool recursion_desired = true;
  bool edns = false;
  bool dnssec_ok = false;
  uint16_t udp_size = kClassicUdpBytes;  // what the client accepts over UDP
  uint16_t qtype = 0;
  uint16_t qclass = 0;
  std::string name;         // canonical: lower case, no trailing dot; "" for the root
  bool name_is_ldh = true;  // every label letters, digits, hyphens (a policy pattern can match)
  RdfPtr owner;             // the question name as sent (wire form), for the upstream query
};

enum class QueryShape : uint8_t { ok, malformed, ignore };
struct ParsedQuery {
  QueryShape shape = QueryShape::ignore;  // ignore: too short for a header, or a response
  DnsQuery query;                         // ok: complete; malformed: id and opcode only
};
// Reads a query (one question, opcode QUERY, class IN or ANY). A response (QR set) or fewer
// bytes than a header is ignored (never answered: no loops between resolvers).
ParsedQuery parse_query(std::span<const uint8_t> wire);

// The text of a query type ("A", "HTTPS", "TYPE65534").
std::string qtype_name(uint16_t qtype);
// The query type named by `text` ("A", "aaaa", "TYPE65"), or nothing.
std::optional<uint16_t> qtype_from_name(std::string_view text);

// The wire form of an answer to `query`. The records are copied; `answers` and `authority`
// stay the caller's. When the answer is larger than `max_bytes` it goes out without records
// and with TC set (the client retries over TCP).
std::vector<uint8_t> build_answer(const DnsQuery& query, uint8_t rcode,
                                  std::span<const ldns_rr* const> answers,
                                  std::span<const ldns_rr* const> authority, size_t max_bytes);
// FORMERR (malformed), REFUSED, SERVFAIL...: no records.
std::vector<uint8_t> build_error(const DnsQuery& query, uint8_t rcode);

// The upstream query for `query` (recursion desired, EDNS with a 1232-byte buffer, DO copied).
std::vector<uint8_t> build_upstream_query(const DnsQuery& query);
// An upstream answer, or nothing when it is not a DNS message.
PacketPtr parse_answer(std::span<const uint8_t> wire);

// The canonical text of a domain name rdf (lower case, no trailing dot, "" for the root), and
// whether every label is LDH (letters, digits, hyphen: a name a policy pattern can name).
std::string canonical_name(const ldns_rdf* name, bool* is_ldh = nullptr);
// The address an A or AAAA record carries.
std::optional<IpAddress> record_address(const ldns_rr* rr);
// Removes the `ech` SvcParam (key 5) of an SVCB/HTTPS record, and 5 from its `mandatory` list;
// true when the record changed. A record whose SvcParams do not parse is left unchanged and
// false is returned with `*malformed` set.
bool strip_ech(ldns_rr* rr, bool* malformed = nullptr);
// Whether an SVCB/HTTPS record carries `ech`.
bool has_ech(const ldns_rr* rr);

}  // namespace egressd
