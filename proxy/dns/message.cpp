#include "dns/message.hpp"

#include <cstdlib>
#include <cstring>

namespace egressd {
namespace {

struct FreeChars {
  void operator()(char* text) const { std::free(text); }
};

std::vector<uint8_t> to_wire(const ldns_pkt* packet) {
  uint8_t* buffer = nullptr;
  size_t size = 0;
  if (ldns_pkt2wire(&buffer, packet, &size) != LDNS_STATUS_OK || buffer == nullptr) {
    std::free(buffer);
    return {};
  }
  std::vector<uint8_t> wire(buffer, buffer + size);
  std::free(buffer);
  return wire;
}

PacketPtr answer_skeleton(const DnsQuery& query, uint8_t rcode) {
  PacketPtr packet(ldns_pkt_new());
  if (!packet) return packet;
  ldns_pkt_set_id(packet.get(), query.id);
  ldns_pkt_set_qr(packet.get(), true);
  ldns_pkt_set_opcode(packet.get(), static_cast<ldns_pkt_opcode>(query.opcode));
  ldns_pkt_set_rd(packet.get(), query.recursion_desired);
  ldns_pkt_set_ra(packet.get(), true);
  ldns_pkt_set_rcode(packet.get(), rcode);
  if (query.owner) {
    ldns_rr* question = ldns_rr_new();
    ldns_rr_set_owner(question, ldns_rdf_clone(query.owner.get()));
    ldns_rr_set_type(question, static_cast<ldns_rr_type>(query.qtype));
    ldns_rr_set_class(question, static_cast<ldns_rr_class>(query.qclass));
    ldns_rr_set_question(question, true);
    ldns_pkt_push_rr(packet.get(), LDNS_SECTION_QUESTION, question);
  }
  if (query.edns) {
    ldns_pkt_set_edns_udp_size(packet.get(), static_cast<uint16_t>(kMaxUdpAnswerBytes));
    ldns_pkt_set_edns_do(packet.get(), query.dnssec_ok);
  }
  return packet;
}

// SvcParams wire form (RFC 9460 2.2): key (2), length (2), value; keys strictly increasing.
struct SvcParam {
  uint16_t key;
  std::span<const uint8_t> value;
};
std::optional<std::vector<SvcParam>> split_params(std::span<const uint8_t> data) {
  std::vector<SvcParam> params;
  size_t at = 0;
  while (at < data.size()) {
    if (data.size() - at < 4) return std::nullopt;
    uint16_t key = static_cast<uint16_t>(data[at] << 8 | data[at + 1]);
    size_t length = static_cast<size_t>(data[at + 2] << 8 | data[at + 3]);
    at += 4;
    if (data.size() - at < length) return std::nullopt;
    params.push_back(SvcParam{key, data.subspan(at, length)});
    at += length;
  }
  return params;
}

const ldns_rdf* params_field(const ldns_rr* rr) {
  ldns_rr_type type = ldns_rr_get_type(rr);
  if (type != LDNS_RR_TYPE_SVCB && type != LDNS_RR_TYPE_HTTPS) return nullptr;
  if (ldns_rr_rd_count(rr) < 3) return nullptr;  // AliasMode or no parameters
  const ldns_rdf* field = ldns_rr_rdf(rr, 2);
  if (!field || ldns_rdf_get_type(field) != LDNS_RDF_TYPE_SVCPARAMS) return nullptr;
  return field;
}

}  // namespace

std::string canonical_name(const ldns_rdf* name, bool* is_ldh) {
  std::unique_ptr<char, FreeChars> text(ldns_rdf2str(name));
  std::string out = text ? std::string(text.get()) : std::string();
  if (!out.empty() && out.back() == '.') out.pop_back();
  bool ldh = !out.empty();
  for (char& c : out) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '.')) ldh = false;
  }
  if (out.find("..") != std::string::npos || out.starts_with('.')) ldh = false;
  if (is_ldh) *is_ldh = ldh;
  return out;
}

ParsedQuery parse_query(std::span<const uint8_t> wire) {
  ParsedQuery parsed;
  if (wire.size() < 12) return parsed;  // no header: nothing to answer to
  if (wire[2] & 0x80) return parsed;    // a response: never answered
  parsed.query.id = static_cast<uint16_t>(wire[0] << 8 | wire[1]);
  parsed.query.opcode = static_cast<uint8_t>((wire[2] >> 3) & 0x0f);
  parsed.query.recursion_desired = (wire[2] & 0x01) != 0;
  parsed.shape = QueryShape::malformed;
  ldns_pkt* raw = nullptr;
  if (ldns_wire2pkt(&raw, wire.data(), wire.size()) != LDNS_STATUS_OK || raw == nullptr) {
    if (raw) ldns_pkt_free(raw);
    return parsed;
  }
  PacketPtr packet(raw);
  const ldns_rr_list* questions = ldns_pkt_question(packet.get());
  if (ldns_pkt_get_opcode(packet.get()) != LDNS_PACKET_QUERY || !questions ||
      ldns_rr_list_rr_count(questions) != 1 || ldns_pkt_ancount(packet.get()) != 0) {
    return parsed;
  }
  const ldns_rr* question = ldns_rr_list_rr(questions, 0);
  parsed.query.qtype = static_cast<uint16_t>(ldns_rr_get_type(question));
  parsed.query.qclass = static_cast<uint16_t>(ldns_rr_get_class(question));
  if (parsed.query.qclass != LDNS_RR_CLASS_IN && parsed.query.qclass != LDNS_RR_CLASS_ANY)
    return parsed;
  // Meta types that are not questions about a name's data (zone transfers, OPT, TSIG...).
  switch (parsed.query.qtype) {
    case LDNS_RR_TYPE_AXFR:
    case LDNS_RR_TYPE_IXFR:
    case LDNS_RR_TYPE_OPT:
    case LDNS_RR_TYPE_TSIG:
    case LDNS_RR_TYPE_TKEY:
    case 0:
      return parsed;
    default:
      break;
  }
  parsed.query.owner.reset(ldns_rdf_clone(ldns_rr_owner(question)));
  parsed.query.name = canonical_name(ldns_rr_owner(question), &parsed.query.name_is_ldh);
  if (parsed.query.name.size() > 253) parsed.query.name_is_ldh = false;
  parsed.query.edns = ldns_pkt_edns(packet.get());
  if (parsed.query.edns) {
    parsed.query.dnssec_ok = ldns_pkt_edns_do(packet.get());
    parsed.query.udp_size = std::max<uint16_t>(ldns_pkt_edns_udp_size(packet.get()),
                                               static_cast<uint16_t>(kClassicUdpBytes));
  }
  parsed.shape = QueryShape::ok;
  return parsed;
}

std::string qtype_name(uint16_t qtype) {
  std::unique_ptr<char, FreeChars> text(ldns_rr_type2str(static_cast<ldns_rr_type>(qtype)));
  return text ? std::string(text.get()) : "TYPE" + std::to_string(qtype);
}

std::optional<uint16_t> qtype_from_name(std::string_view text) {
  if (text.empty() || text.size() > 16) return std::nullopt;
  std::string upper(text);
  for (char& c : upper) {
    if (c >= 'a' && c <= 'z') c = static_cast<char>(c - 'a' + 'A');
    if (!((c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-')) return std::nullopt;
  }
  ldns_rr_type type = ldns_get_rr_type_by_name(upper.c_str());
  if (type == 0) return std::nullopt;
  // ldns answers some unknown names with a type: only a name that reads back as itself counts.
  if (qtype_name(static_cast<uint16_t>(type)) != upper && upper != "TYPE" + std::to_string(type))
    return std::nullopt;
  return static_cast<uint16_t>(type);
}

std::vector<uint8_t> build_answer(const DnsQuery& query, uint8_t rcode,
                                  std::span<const ldns_rr* const> answers,
                                  std::span<const ldns_rr* const> authority, size_t max_bytes) {
  PacketPtr packet = answer_skeleton(query, rcode);
  if (!packet) return {};
  for (const ldns_rr* rr : answers)
    ldns_pkt_push_rr(packet.get(), LDNS_SECTION_ANSWER, ldns_rr_clone(rr));
  for (const ldns_rr* rr : authority)
    ldns_pkt_push_rr(packet.get(), LDNS_SECTION_AUTHORITY, ldns_rr_clone(rr));
  std::vector<uint8_t> wire = to_wire(packet.get());
  if (wire.size() <= max_bytes) return wire;
  PacketPtr truncated = answer_skeleton(query, rcode);
  if (!truncated) return {};
  ldns_pkt_set_tc(truncated.get(), true);
  return to_wire(truncated.get());
}

std::vector<uint8_t> build_error(const DnsQuery& query, uint8_t rcode) {
  PacketPtr packet = answer_skeleton(query, rcode);
  return packet ? to_wire(packet.get()) : std::vector<uint8_t>{};
}

std::vector<uint8_t> build_upstream_query(const DnsQuery& query) {
  if (!query.owner) return {};
  PacketPtr packet(ldns_pkt_query_new(ldns_rdf_clone(query.owner.get()),
                                      static_cast<ldns_rr_type>(query.qtype),
                                      static_cast<ldns_rr_class>(query.qclass), LDNS_RD));
  if (!packet) return {};
  ldns_pkt_set_edns_udp_size(packet.get(), static_cast<uint16_t>(kMaxUdpAnswerBytes));
  ldns_pkt_set_edns_do(packet.get(), query.dnssec_ok);
  return to_wire(packet.get());
}

PacketPtr parse_answer(std::span<const uint8_t> wire) {
  ldns_pkt* raw = nullptr;
  if (ldns_wire2pkt(&raw, wire.data(), wire.size()) != LDNS_STATUS_OK || raw == nullptr) {
    if (raw) ldns_pkt_free(raw);
    return nullptr;
  }
  PacketPtr packet(raw);
  if (!ldns_pkt_qr(packet.get())) return nullptr;
  return packet;
}

std::optional<IpAddress> record_address(const ldns_rr* rr) {
  ldns_rr_type type = ldns_rr_get_type(rr);
  if ((type != LDNS_RR_TYPE_A && type != LDNS_RR_TYPE_AAAA) || ldns_rr_rd_count(rr) < 1)
    return std::nullopt;
  const ldns_rdf* field = ldns_rr_rdf(rr, 0);
  size_t size = ldns_rdf_size(field);
  const uint8_t* data = ldns_rdf_data(field);
  IpAddress address;
  if (type == LDNS_RR_TYPE_A && size == 4) {
    address.family = Family::v4;
  } else if (type == LDNS_RR_TYPE_AAAA && size == 16) {
    address.family = Family::v6;
  } else {
    return std::nullopt;
  }
  for (size_t i = 0; i < size; ++i) address.bits = (address.bits << 8) | data[i];
  return address;
}

bool has_ech(const ldns_rr* rr) {
  const ldns_rdf* field = params_field(rr);
  if (!field) return false;
  auto params = split_params({ldns_rdf_data(field), ldns_rdf_size(field)});
  if (!params) return false;
  for (const SvcParam& param : *params) {
    if (param.key == LDNS_SVCPARAM_KEY_ECH) return true;
  }
  return false;
}

bool strip_ech(ldns_rr* rr, bool* malformed) {
  if (malformed) *malformed = false;
  const ldns_rdf* field = params_field(rr);
  if (!field) return false;
  auto params = split_params({ldns_rdf_data(field), ldns_rdf_size(field)});
  if (!params) {
    if (malformed) *malformed = true;
    return false;
  }
  bool changed = false;
  std::vector<uint8_t> rebuilt;
  auto put16 = [&](size_t value) {
    rebuilt.push_back(static_cast<uint8_t>(value >> 8));
    rebuilt.push_back(static_cast<uint8_t>(value));
  };
  for (const SvcParam& param : *params) {
    if (param.key == LDNS_SVCPARAM_KEY_ECH) {
      changed = true;
      continue;
    }
    if (param.key == LDNS_SVCPARAM_KEY_MANDATORY) {
      std::vector<uint8_t> keys;
      for (size_t i = 0; i + 1 < param.value.size(); i += 2) {
        if ((param.value[i] << 8 | param.value[i + 1]) == LDNS_SVCPARAM_KEY_ECH) {
          changed = true;
          continue;
        }
        keys.push_back(param.value[i]);
        keys.push_back(param.value[i + 1]);
      }
      if (keys.empty()) continue;  // a mandatory list of nothing is not valid
      put16(param.key);
      put16(keys.size());
      rebuilt.insert(rebuilt.end(), keys.begin(), keys.end());
      continue;
    }
    put16(param.key);
    put16(param.value.size());
    rebuilt.insert(rebuilt.end(), param.value.begin(), param.value.end());
  }
  if (!changed) return false;
  if (rebuilt.empty()) {
    ldns_rdf_deep_free(ldns_rr_pop_rdf(rr));  // no parameters left
    return true;
  }
  ldns_rdf* replacement =
      ldns_rdf_new_frm_data(LDNS_RDF_TYPE_SVCPARAMS, rebuilt.size(), rebuilt.data());
  if (!replacement) return false;
  ldns_rdf_deep_free(ldns_rr_set_rdf(rr, replacement, 2));
  return true;
}

}  // namespace egressd
