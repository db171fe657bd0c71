#include "kernel/nft_netlink.hpp"

#include <libmnl/libmnl.h>
#include <libnftnl/chain.h>
#include <libnftnl/common.h>
#include <libnftnl/expr.h>
#include <libnftnl/object.h>
#include <libnftnl/rule.h>
#include <libnftnl/set.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nf_tables.h>
#include <linux/netfilter/nfnetlink.h>
#include <malloc.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <functional>
#include <memory>
#include <vector>

// The expressions below are the ones nft 1.0.6 generates for the same rule texts
// (`nft --debug=netlink`), so that `nft list` shows the table the same way whichever path
// wrote it (tests/e2e compares the two listings after random changes).
namespace egressd {
namespace {

constexpr size_t kMessageRoom = 16384;  // more than any one message below needs

struct Socket {
  mnl_socket* nl = mnl_socket_open(NETLINK_NETFILTER);
  ~Socket() {
    if (nl) mnl_socket_close(nl);
  }
  bool bind() { return nl && mnl_socket_bind(nl, 0, MNL_SOCKET_AUTOPID) == 0; }
};

std::string errno_text(const std::string& what) {
  return what + ": " + std::strerror(errno);
}

// Network-order bytes of an address (4 or 16) or a port.
std::vector<uint8_t> address_bytes(const IpAddress& address) {
  size_t size = address.family == Family::v4 ? 4 : 16;
  std::vector<uint8_t> out(size);
  for (size_t i = 0; i < size; ++i)
    out[size - 1 - i] = static_cast<uint8_t>(address.bits >> (8 * i));
  return out;
}

std::vector<uint8_t> port_bytes(uint16_t port) {
  return {static_cast<uint8_t>(port >> 8), static_cast<uint8_t>(port)};
}

IpAddress next_address(const IpAddress& address) {
  return {address.family, address.bits + 1};
}

bool is_last(const IpAddress& address) {
  return address.family == Family::v4 ? address.bits == 0xFFFFFFFFu : address.bits == ~uint128(0);
}

// Builds one rule's expressions.
struct RuleBuilder {
  nftnl_rule* rule;
  void add(nftnl_expr* e) { nftnl_rule_add_expr(rule, e); }
  void meta(uint32_t key) {
    nftnl_expr* e = nftnl_expr_alloc("meta");
    nftnl_expr_set_u32(e, NFTNL_EXPR_META_KEY, key);
    nftnl_expr_set_u32(e, NFTNL_EXPR_META_DREG, NFT_REG_1);
    add(e);
  }
  void cmp(uint32_t op, const std::vector<uint8_t>& data) {
    nftnl_expr* e = nftnl_expr_alloc("cmp");
    nftnl_expr_set_u32(e, NFTNL_EXPR_CMP_SREG, NFT_REG_1);
    nftnl_expr_set_u32(e, NFTNL_EXPR_CMP_OP, op);
    nftnl_expr_set(e, NFTNL_EXPR_CMP_DATA, data.data(), static_cast<uint32_t>(data.size()));
    add(e);
  }
  void payload(uint32_t base, uint32_t offset, uint32_t length) {
    nftnl_expr* e = nftnl_expr_alloc("payload");
    nftnl_expr_set_u32(e, NFTNL_EXPR_PAYLOAD_DREG, NFT_REG_1);
    nftnl_expr_set_u32(e, NFTNL_EXPR_PAYLOAD_BASE, base);
    nftnl_expr_set_u32(e, NFTNL_EXPR_PAYLOAD_OFFSET, offset);
    nftnl_expr_set_u32(e, NFTNL_EXPR_PAYLOAD_LEN, length);
    add(e);
  }
  // With `verdict`: a verdict map's lookup (its element's verdict is the rule's).
  void lookup(const char* set, bool verdict = false) {
    nftnl_expr* e = nftnl_expr_alloc("lookup");
    nftnl_expr_set_u32(e, NFTNL_EXPR_LOOKUP_SREG, NFT_REG_1);
    if (verdict) nftnl_expr_set_u32(e, NFTNL_EXPR_LOOKUP_DREG, NFT_REG_VERDICT);
    nftnl_expr_set_str(e, NFTNL_EXPR_LOOKUP_SET, set);
    add(e);
  }
  void verdict(int code, const char* chain = nullptr) {
    nftnl_expr* e = nftnl_expr_alloc("immediate");
    nftnl_expr_set_u32(e, NFTNL_EXPR_IMM_DREG, NFT_REG_VERDICT);
    nftnl_expr_set_u32(e, NFTNL_EXPR_IMM_VERDICT, static_cast<uint32_t>(code));
    if (chain) nftnl_expr_set_str(e, NFTNL_EXPR_IMM_CHAIN, chain);
    add(e);
  }
  // `value` equal, or within [low, high] (two comparisons, as nft writes a range).
  void match(const std::vector<uint8_t>& low, const std::vector<uint8_t>& high) {
    if (low == high) return cmp(NFT_CMP_EQ, low);
    cmp(NFT_CMP_GTE, low);
    cmp(NFT_CMP_LTE, high);
  }
  void family(bool v4) {
    meta(NFT_META_NFPROTO), cmp(NFT_CMP_EQ, {v4 ? uint8_t(NFPROTO_IPV4) : uint8_t(NFPROTO_IPV6)});
  }
  void tcp() { meta(NFT_META_L4PROTO), cmp(NFT_CMP_EQ, {IPPROTO_TCP}); }

  void write(const ChainRule& r) {
    switch (r.kind) {
      case ChainRule::Kind::inspected:
        tcp();
        payload(NFT_PAYLOAD_TRANSPORT_HEADER, 2, 2);
        lookup("fp_inspected");
        return verdict(NFT_RETURN);
      case ChainRule::Kind::mapped: {
        family(false);
        payload(NFT_PAYLOAD_NETWORK_HEADER, 24, 12);
        std::vector<uint8_t> prefix(12, 0);
        prefix[10] = prefix[11] = 0xFF;
        cmp(NFT_CMP_EQ, prefix);
        return verdict(NFT_RETURN);
      }
      case ChainRule::Kind::allow: {
        const AddressRange& to = r.allowed.destination;
        family(r.v4);
        payload(NFT_PAYLOAD_NETWORK_HEADER, r.v4 ? 16 : 24, r.v4 ? 4 : 16);
        match(address_bytes(to.low), address_bytes(to.high));
        tcp();
        payload(NFT_PAYLOAD_TRANSPORT_HEADER, 2, 2);
        match(port_bytes(r.allowed.ports.low), port_bytes(r.allowed.ports.high));
        return verdict(NFT_GOTO, "fp_allow");
      }
      case ChainRule::Kind::limit: {
        nftnl_expr* e = nftnl_expr_alloc("connlimit");
        nftnl_expr_set_u32(e, NFTNL_EXPR_CONNLIMIT_COUNT, r.limit);
        nftnl_expr_set_u32(e, NFTNL_EXPR_CONNLIMIT_FLAGS, NFT_CONNLIMIT_F_INV);  // "over"
        add(e);
        return verdict(NFT_GOTO, "fp_limit");
      }
      case ChainRule::Kind::allow_set:  // the text path's (plan.uses_sets())
      case ChainRule::Kind::refuse:
        break;
    }
    verdict(NFT_GOTO, "fp_refuse");
  }
};

// One nf_tables transaction: messages appended between a batch begin and end, sent at once,
// answered with the first error (each message remembers what it did, for that error).
class Batch {
 public:
  explicit Batch(std::string table) : table_(std::move(table)) {
    nftnl_batch_begin(room(), seq_++);
    close_message();
    what_.push_back("begin");
  }

  void chain(uint16_t type, const std::string& name, uint16_t flags) {
    nftnl_chain* c = nftnl_chain_alloc();
    nftnl_chain_set_u32(c, NFTNL_CHAIN_FAMILY, NFPROTO_INET);
    nftnl_chain_set_str(c, NFTNL_CHAIN_TABLE, table_.c_str());
    nftnl_chain_set_str(c, NFTNL_CHAIN_NAME, name.c_str());
    nftnl_chain_nlmsg_build_payload(header(type, flags), c);
    nftnl_chain_free(c);
    close_message(verb(type) + " chain " + name);
  }
  // Without `rule`: every rule of the chain (a flush).
  void rule(uint16_t type, const std::string& chain, const ChainRule* rule, uint16_t flags) {
    nftnl_rule* r = new_rule(chain);
    if (rule) RuleBuilder{r}.write(*rule);
    nftnl_rule_nlmsg_build_payload(header(type, flags), r);
    nftnl_rule_free(r);
    close_message(rule ? "add rule " + chain + " " + rule_text(*rule) : "flush chain " + chain);
  }
  void set(uint16_t type, const std::string& name) {
    nftnl_set* s = new_set(name);
    nftnl_set_nlmsg_build_payload(header(type, 0), s);
    nftnl_set_free(s);
    close_message(verb(type) + " set " + name);
  }
  // An interval element of `set`: its start (with `verdict` in a map: `chain`, or return
  // when empty), and its end (the address after it) unless it runs to the family's last
  // address, as nft sends them.
  void interval(uint16_t type, const std::string& set, const AddressRange& range,
                const std::string* verdict) {
    nftnl_set* s = new_set(set);
    std::vector<uint8_t> start = address_bytes(range.low);
    nftnl_set_elem* e = nftnl_set_elem_alloc();
    nftnl_set_elem_set(e, NFTNL_SET_ELEM_KEY, start.data(), static_cast<uint32_t>(start.size()));
    if (verdict) {
      nftnl_set_elem_set_u32(e, NFTNL_SET_ELEM_VERDICT,
                             static_cast<uint32_t>(verdict->empty() ? NFT_RETURN : NFT_GOTO));
      if (!verdict->empty()) nftnl_set_elem_set_str(e, NFTNL_SET_ELEM_CHAIN, verdict->c_str());
    }
    nftnl_set_elem_add(s, e);
    if (!is_last(range.high)) {
      std::vector<uint8_t> end = address_bytes(next_address(range.high));
      nftnl_set_elem* last = nftnl_set_elem_alloc();
      nftnl_set_elem_set(last, NFTNL_SET_ELEM_KEY, end.data(), static_cast<uint32_t>(end.size()));
      nftnl_set_elem_set_u32(last, NFTNL_SET_ELEM_FLAGS, NFT_SET_ELEM_INTERVAL_END);
      nftnl_set_elem_add(s, last);
    }
    elements(type, s,
             verb(type) + " element " + set + " " + range.low.to_string() + "-" +
                 range.high.to_string());
  }
  void source(uint16_t type, const SourceEntry& entry) {
    bool v4 = entry.range.low.family == Family::v4;
    interval(type, v4 ? "fp_by_source4" : "fp_by_source6", entry.range,
             type == NFT_MSG_NEWSETELEM ? &entry.chain : nullptr);
  }
  void port(const std::string& set, uint16_t port) {
    nftnl_set* s = new_set(set);
    std::vector<uint8_t> key = port_bytes(port);
    nftnl_set_elem* e = nftnl_set_elem_alloc();
    nftnl_set_elem_set(e, NFTNL_SET_ELEM_KEY, key.data(), static_cast<uint32_t>(key.size()));
    nftnl_set_elem_add(s, e);
    elements(NFT_MSG_NEWSETELEM, s, "add element " + set + " " + std::to_string(port));
  }
  // Every element of a set or map.
  void flush_set(const std::string& set) {
    elements(NFT_MSG_DELSETELEM, new_set(set), "flush set " + set);
  }
  // A rule of fast_path (kernel/fast_path_sets.cpp write_fast_path).
  void fast_path_rule(const std::function<void(RuleBuilder&)>& write, const std::string& what) {
    nftnl_rule* r = new_rule("fast_path");
    RuleBuilder builder{r};
    write(builder);
    nftnl_rule_nlmsg_build_payload(header(NFT_MSG_NEWRULE, NLM_F_APPEND | NLM_F_CREATE), r);
    nftnl_rule_free(r);
    close_message("add rule fast_path " + what);
  }

  std::string commit() {
    // NLM_F_ACK only on the last operation (acknowledgements of 10,000 could overflow the
    // receive buffer; errors come back without it): its answer says the batch was applied.
    for (size_t at = 0; at < used_;) {
      auto* nlh = reinterpret_cast<nlmsghdr*>(buffer_.data() + at);
      if (nlh->nlmsg_seq == last_operation_) nlh->nlmsg_flags |= NLM_F_ACK;
      at += NLMSG_ALIGN(nlh->nlmsg_len);
    }
    nftnl_batch_end(room(), seq_++);
    close_message();
    Socket socket;
    if (!socket.bind()) return errno_text("netlink socket");
    int fd = mnl_socket_get_fd(socket.nl);
    // The batch goes as one datagram: the send buffer must hold it.
    int size = static_cast<int>(used_ + 65536);
    if (used_ + 65536 > 200000 &&
        ::setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &size, sizeof(size)) != 0)
      return errno_text("netlink send buffer");
    // Errors come back without the message they refuse (NETLINK_CAP_ACK), in room for many.
    int on = 1, room = 4 << 20;
    ::setsockopt(fd, SOL_NETLINK, NETLINK_CAP_ACK, &on, sizeof(on));
    if (::setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &room, sizeof(room)) != 0)
      ::setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &room, sizeof(room));
    if (mnl_socket_sendto(socket.nl, buffer_.data(), used_) < 0) return errno_text("netlink send");
    // The kernel handled the batch inside sendto: its answers are queued already. Only the
    // last operation asked for an acknowledgement; an error names the operation refused.
    std::vector<char> answer(MNL_SOCKET_BUFFER_SIZE);
    bool acknowledged = false;
    for (;;) {
      ssize_t n = ::recv(fd, answer.data(), answer.size(), MSG_DONTWAIT);
      if (n < 0) {
        if (errno == EINTR) continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) break;
        return errno_text("netlink receive");
      }
      int left = static_cast<int>(n);
      for (auto* nlh = reinterpret_cast<nlmsghdr*>(answer.data()); mnl_nlmsg_ok(nlh, left);
           nlh = mnl_nlmsg_next(nlh, &left)) {
        if (nlh->nlmsg_type != NLMSG_ERROR) continue;
        auto* error = static_cast<nlmsgerr*>(mnl_nlmsg_get_payload(nlh));
        if (error->error == 0) {
          acknowledged = acknowledged || error->msg.nlmsg_seq == last_operation_;
          continue;
        }
        uint32_t seq = error->msg.nlmsg_seq;
        std::string what = seq < what_.size() ? what_[seq] : "?";
        return "nf_tables refused `" + what + "`: " + std::strerror(-error->error);
      }
    }
    if (!acknowledged) return "nf_tables did not acknowledge the transaction";
    return {};
  }

  size_t operations() const { return what_.size() - 1; }

 private:
  // A rule or set of this table, to be filled in (the caller frees it).
  nftnl_rule* new_rule(const std::string& chain) {
    nftnl_rule* r = nftnl_rule_alloc();
    nftnl_rule_set_u32(r, NFTNL_RULE_FAMILY, NFPROTO_INET);
    nftnl_rule_set_str(r, NFTNL_RULE_TABLE, table_.c_str());
    nftnl_rule_set_str(r, NFTNL_RULE_CHAIN, chain.c_str());
    return r;
  }
  nftnl_set* new_set(const std::string& name) {
    nftnl_set* s = nftnl_set_alloc();
    nftnl_set_set_u32(s, NFTNL_SET_FAMILY, NFPROTO_INET);
    nftnl_set_set_str(s, NFTNL_SET_TABLE, table_.c_str());
    nftnl_set_set_str(s, NFTNL_SET_NAME, name.c_str());
    return s;
  }
  void elements(uint16_t type, nftnl_set* s, std::string what) {
    nftnl_set_elems_nlmsg_build_payload(header(type, type == NFT_MSG_NEWSETELEM ? NLM_F_CREATE : 0),
                                        s);
    nftnl_set_free(s);
    close_message(std::move(what));
  }
  static std::string verb(uint16_t type) {
    switch (type) {
      case NFT_MSG_NEWCHAIN:
      case NFT_MSG_NEWSETELEM:
        return "add";
      case NFT_MSG_DELRULE:
        return "flush";
      default:
        return "delete";
    }
  }
  char* room() {
    if (buffer_.size() < used_ + kMessageRoom) buffer_.resize(used_ + 2 * kMessageRoom);
    return buffer_.data() + used_;
  }
  nlmsghdr* header(uint16_t type, uint16_t flags) {
    last_operation_ = seq_;
    return nftnl_nlmsg_build_hdr(room(), type, NFPROTO_INET, flags, seq_++);
  }
  void close_message(std::string what = {}) {
    auto* nlh = reinterpret_cast<nlmsghdr*>(buffer_.data() + used_);
    used_ += NLMSG_ALIGN(nlh->nlmsg_len);
    if (!what.empty()) what_.push_back(std::move(what));
  }

 private:
  std::string table_;
  std::vector<char> buffer_;
  size_t used_ = 0;
  uint32_t seq_ = 0;
  uint32_t last_operation_ = 0;
  std::vector<std::string> what_;  // by sequence number
};

}  // namespace

std::string nft_apply(const ChangePlan& plan, const std::string& table) {
  if (plan.uses_sets()) return "nft_apply: a sandbox with a set is the text path's";
  Batch batch(table);
  for (const SourceEntry& entry : plan.leave) batch.source(NFT_MSG_DELSETELEM, entry);
  for (const SandboxSets* sandbox : plan.gone)
    batch.rule(NFT_MSG_DELRULE, sandbox->chain, nullptr, 0);
  for (const SandboxSets* sandbox : plan.gone) batch.chain(NFT_MSG_DELCHAIN, sandbox->chain, 0);
  for (const SandboxSets* sandbox : plan.written) {
    batch.chain(NFT_MSG_NEWCHAIN, sandbox->chain, NLM_F_CREATE);
    batch.rule(NFT_MSG_DELRULE, sandbox->chain, nullptr, 0);
    for (const ChainRule& rule : chain_rules(*sandbox))
      batch.rule(NFT_MSG_NEWRULE, sandbox->chain, &rule, NLM_F_APPEND | NLM_F_CREATE);
  }
  for (const SourceEntry& entry : plan.enter) batch.source(NFT_MSG_NEWSETELEM, entry);
  if (batch.operations() == 0) return {};
  return batch.commit();
}

namespace {

// One request (a dump or a get) and its answers, each handed to `each`; empty or the error.
std::string ask(nlmsghdr* nlh, std::vector<char>& buffer, mnl_cb_t each, void* data,
                const std::string& what) {
  Socket socket;
  if (!socket.bind()) return errno_text("netlink socket");
  if (mnl_socket_sendto(socket.nl, nlh, nlh->nlmsg_len) < 0) return errno_text("netlink send");
  unsigned port = mnl_socket_get_portid(socket.nl);
  for (;;) {
    ssize_t n = mnl_socket_recvfrom(socket.nl, buffer.data(), buffer.size());
    if (n < 0) return errno_text("netlink receive");
    int rc = mnl_cb_run(buffer.data(), static_cast<size_t>(n), nlh->nlmsg_seq, port, each, data);
    if (rc < 0) return errno_text(what);
    if (rc == MNL_CB_STOP) return {};
  }
}

// Every chain or set of `table` whose name starts with fp_sb_ (a dump of names, filtered by
// table in the kernel).
std::string list_sandbox_objects(const std::string& table, uint16_t type,
                                 std::vector<std::string>& names) {
  std::vector<char> buffer(MNL_SOCKET_BUFFER_SIZE);
  nlmsghdr* nlh =
      nftnl_nlmsg_build_hdr(buffer.data(), type, NFPROTO_INET, NLM_F_DUMP | NLM_F_ACK, 1);
  if (type == NFT_MSG_GETCHAIN) {
    nftnl_chain* c = nftnl_chain_alloc();
    nftnl_chain_set_str(c, NFTNL_CHAIN_TABLE, table.c_str());
    nftnl_chain_nlmsg_build_payload(nlh, c);
    nftnl_chain_free(c);
  } else {
    nftnl_set* s = nftnl_set_alloc();
    nftnl_set_set_str(s, NFTNL_SET_TABLE, table.c_str());
    nftnl_set_nlmsg_build_payload(nlh, s);
    nftnl_set_free(s);
  }
  // The kernel filters a set dump by table, not a chain dump: both are checked here.
  struct Found {
    uint16_t type;
    const std::string* table;
    std::vector<std::string>* names;
  } found{type, &table, &names};
  auto each = [](const nlmsghdr* message, void* data) {
    auto* f = static_cast<Found*>(data);
    const char *name = nullptr, *owner = nullptr;
    std::string copy;
    if (f->type == NFT_MSG_GETCHAIN) {
      nftnl_chain* c = nftnl_chain_alloc();
      if (nftnl_chain_nlmsg_parse(message, c) == 0) {
        name = nftnl_chain_get_str(c, NFTNL_CHAIN_NAME);
        owner = nftnl_chain_get_str(c, NFTNL_CHAIN_TABLE);
      }
      if (name && owner && *f->table == owner) copy = name;
      nftnl_chain_free(c);
    } else {
      nftnl_set* s = nftnl_set_alloc();
      if (nftnl_set_nlmsg_parse(message, s) == 0) {
        name = nftnl_set_get_str(s, NFTNL_SET_NAME);
        owner = nftnl_set_get_str(s, NFTNL_SET_TABLE);
      }
      if (name && owner && *f->table == owner) copy = name;
      nftnl_set_free(s);
    }
    if (copy.rfind("fp_sb_", 0) == 0) f->names->push_back(std::move(copy));
    return MNL_CB_OK;
  };
  return ask(nlh, buffer, each, &found,
             std::string("list ") + (type == NFT_MSG_GETCHAIN ? "chains" : "sets"));
}

}  // namespace

std::string nft_fill_netlink(const KernelSets& sets, const std::string& table) {
  if (sets.any_set()) return "nft_fill_netlink: a sandbox with a set is the text path's";
  std::vector<std::string> chains, old_sets;
  if (std::string problem = list_sandbox_objects(table, NFT_MSG_GETCHAIN, chains); !problem.empty())
    return problem;
  if (std::string problem = list_sandbox_objects(table, NFT_MSG_GETSET, old_sets); !problem.empty())
    return problem;
  Batch batch(table);
  // As nft_fill: nothing references a sandbox chain once fast_path and the maps are empty,
  // and nothing a sandbox set once its chain is.
  batch.rule(NFT_MSG_DELRULE, "fast_path", nullptr, 0);
  batch.flush_set("fp_by_source4");
  batch.flush_set("fp_by_source6");
  for (const std::string& chain : chains) batch.rule(NFT_MSG_DELRULE, chain, nullptr, 0);
  for (const std::string& chain : chains) batch.chain(NFT_MSG_DELCHAIN, chain, 0);
  for (const std::string& set : old_sets) batch.set(NFT_MSG_DELSET, set);
  batch.flush_set("fp_guard4");
  for (const AddressRange& range : sets.guard4)
    batch.interval(NFT_MSG_NEWSETELEM, "fp_guard4", range, nullptr);
  batch.flush_set("fp_guard6");
  for (const AddressRange& range : sets.guard6)
    batch.interval(NFT_MSG_NEWSETELEM, "fp_guard6", range, nullptr);
  batch.flush_set("fp_inspected");
  for (uint16_t port : sets.inspected) batch.port("fp_inspected", port);
  for (const auto& sandbox : sets.sandboxes) {
    batch.chain(NFT_MSG_NEWCHAIN, sandbox->chain, NLM_F_CREATE);
    for (const ChainRule& rule : chain_rules(*sandbox))
      batch.rule(NFT_MSG_NEWRULE, sandbox->chain, &rule, NLM_F_APPEND | NLM_F_CREATE);
  }
  for (const SourceEntry& entry : source_entries(sets)) batch.source(NFT_MSG_NEWSETELEM, entry);
  // fast_path last (kernel/fast_path_sets.cpp write_fast_path, the same rules): the guards
  // (daddr), then the source maps (saddr, their element's verdict).
  struct Lookup {
    bool v4;
    uint32_t offset;
    const char* set;
    bool map;
  };
  for (Lookup l :
       {Lookup{true, 16, "fp_guard4", false}, Lookup{false, 24, "fp_guard6", false},
        Lookup{true, 12, "fp_by_source4", true}, Lookup{false, 8, "fp_by_source6", true}}) {
    batch.fast_path_rule(
        [l](RuleBuilder& r) {
          r.family(l.v4);
          r.payload(NFT_PAYLOAD_NETWORK_HEADER, l.offset, l.v4 ? 4 : 16);
          r.lookup(l.set, l.map);
          if (!l.map) r.verdict(NFT_GOTO, "fp_refuse");
        },
        l.set);
  }
  if (sets.refuse_unknown_sources)
    batch.fast_path_rule([](RuleBuilder& r) { r.verdict(NFT_GOTO, "fp_refuse"); }, "refuse");
  std::string problem = batch.commit();
  batch = Batch(table);  // the fill's buffer (tens of MiB at 10,000 sandboxes) freed now...
  malloc_trim(0);        // ...and given back: glibc keeps freed large blocks in its heap
  return problem;
}

std::string nft_rule_count(const std::string& table, const std::string& chain, size_t& count) {
  count = 0;
  std::vector<char> buffer(MNL_SOCKET_BUFFER_SIZE);
  nlmsghdr* nlh = nftnl_nlmsg_build_hdr(buffer.data(), NFT_MSG_GETRULE, NFPROTO_INET,
                                        NLM_F_DUMP | NLM_F_ACK, 1);
  nftnl_rule* r = nftnl_rule_alloc();
  nftnl_rule_set_str(r, NFTNL_RULE_TABLE, table.c_str());
  nftnl_rule_set_str(r, NFTNL_RULE_CHAIN, chain.c_str());
  nftnl_rule_nlmsg_build_payload(nlh, r);
  nftnl_rule_free(r);
  auto counted = [](const nlmsghdr*, void* data) {
    ++*static_cast<size_t*>(data);
    return MNL_CB_OK;
  };
  return ask(nlh, buffer, counted, &count, "list chain " + chain);
}

std::string nft_counter_packets(const std::string& table, const std::string& counter,
                                uint64_t& packets) {
  std::vector<char> buffer(MNL_SOCKET_BUFFER_SIZE);
  nlmsghdr* nlh = nftnl_nlmsg_build_hdr(buffer.data(), NFT_MSG_GETOBJ, NFPROTO_INET, NLM_F_ACK, 1);
  nftnl_obj* o = nftnl_obj_alloc();
  nftnl_obj_set_str(o, NFTNL_OBJ_TABLE, table.c_str());
  nftnl_obj_set_str(o, NFTNL_OBJ_NAME, counter.c_str());
  nftnl_obj_set_u32(o, NFTNL_OBJ_TYPE, NFT_OBJECT_COUNTER);
  nftnl_obj_nlmsg_build_payload(nlh, o);
  nftnl_obj_free(o);
  auto read = [](const nlmsghdr* answer, void* data) {
    nftnl_obj* got = nftnl_obj_alloc();
    if (nftnl_obj_nlmsg_parse(answer, got) == 0 && nftnl_obj_is_set(got, NFTNL_OBJ_CTR_PKTS))
      *static_cast<uint64_t*>(data) = nftnl_obj_get_u64(got, NFTNL_OBJ_CTR_PKTS);
    nftnl_obj_free(got);
    return MNL_CB_OK;
  };
  packets = 0;
  return ask(nlh, buffer, read, &packets, "list counter " + counter);
}

}  // namespace egressd
