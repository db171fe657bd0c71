#pragma once
// One sandbox's policy, compiled for fast decisions, and decide() in DESIGN.md's order.
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "core/ip.hpp"
#include "core/reason.hpp"
#include "policy/cidr_index.hpp"
#include "policy/domain_index.hpp"
#include "policy/rule.hpp"
#include "policy/transform.hpp"

namespace egressd {

enum class Mode : uint8_t { enforce, audit };
std::string_view to_string(Mode mode);

// A sandbox as written by its owner (config file or API), before validation.
struct SandboxSpec {
  std::string id;
  std::vector<std::string> sources;
  Verdict default_verdict = Verdict::deny;
  std::vector<std::string> allow;
  std::vector<std::string> deny;
  Mode mode = Mode::enforce;
  // E2B's documented meaning: an allowed domain beats denyOut, so address denies judge only
  // the fast path and literal destinations, not the addresses dialled for an allowed name.
  bool names_bypass_address_denies = false;
  // DESIGN.md "Dedicated egress addresses": the gateway (a name in the configuration's
  // `gateways`) every relayed connection of this sandbox leaves through; empty: the default.
  std::string gateway;
  // DESIGN.md "Request transforms": names whose requests egressd intercepts and edits, names
  // never intercepted (Blaxel's proxy.bypass), and the write-only secrets the edits use.
  std::vector<Transform> transforms;
  std::vector<std::string> bypass;
  Secrets secrets;
};

// A validation error with the field it is about ("egress.allow[2]") and why.
struct FieldError {
  std::string field;
  std::string message;
};

struct Decision {
  Verdict verdict = Verdict::deny;
  Reason reason = Reason::default_deny;
  std::string_view rule;  // the rule text as written; empty when none (default); lives as
                          // long as the policy or guard that decided
  std::optional<Reason> would_deny;  // audit mode: the refusal this decision would have been
};

class CompiledPolicy {
 public:
  static std::variant<std::shared_ptr<const CompiledPolicy>, FieldError> compile(
      const SandboxSpec& spec);

  // Sandbox rules only (no guard, no audit): steps 2-4 of DESIGN.md's decision.
  Decision decide(const std::string* name, const std::optional<IpAddress>& destination,
                  uint16_t port) const;

  // DESIGN.md: an address deny rule narrower than /0 names a place the sandbox must never reach,
  // so it also holds against the address dialled for an allowed name. Returns the deny rule
  // that decides `address` on `port` (longest prefix, allow wins ties), or empty when that
  // rule is an allow, a catch-all, or none.
  std::string_view address_denial(const IpAddress& address, uint16_t port) const;

  // DESIGN.md "DNS for sandboxes": a name judged by the domain rules alone, ports ignored
  // (most specific wins, allow wins ties); no rule: the default.
  Decision decide_name(std::string_view name) const;
  // Whether an address allow rule lets `address` through on some port (longest prefix over
  // every rule whatever its ports, allow wins ties; the default does not count): what a DNS answer
  // for a name the domain rules do not allow may still carry.
  bool address_allowed_on_some_port(const IpAddress& address) const;
  bool has_address_allows() const { return has_address_allows_; }

  Verdict default_verdict() const { return default_verdict_; }
  bool names_bypass_address_denies() const { return names_bypass_address_denies_; }
  const std::string& gateway() const { return gateway_; }
  // The transforms that apply to a canonical name, in order; empty when none does or the name
  // is bypassed: then the connection is never intercepted.
  std::vector<const Transform*> transforms_for(std::string_view name) const;
  bool has_transforms() const { return !transforms_.empty(); }
  const std::vector<Transform>& transforms() const { return transforms_; }
  const std::vector<std::string>& bypass() const { return bypass_; }
  const Secrets& secrets() const { return secrets_; }
  Mode mode() const { return mode_; }
  std::vector<std::string> rule_texts(bool allow) const;
  size_t memory_bytes() const;

 private:
  struct RuleRecord {
    uint32_t text_offset;
    uint16_t text_length;
    bool allow;
    bool catch_all;  // "*", 0.0.0.0/0, ::/0
    PortRange ports;
  };
  std::string_view text_of(uint32_t rule_id) const {
    const RuleRecord& r = rules_[rule_id];
    return std::string_view(texts_.data() + r.text_offset, r.text_length);
  }

  Verdict default_verdict_ = Verdict::deny;
  Mode mode_ = Mode::enforce;
  bool names_bypass_address_denies_ = false;
  bool has_address_allows_ = false;
  std::string gateway_;
  std::vector<Transform> transforms_;
  std::vector<std::string> bypass_;
  Secrets secrets_;
  std::string texts_;
  std::vector<RuleRecord> rules_;
  std::vector<uint32_t> any_name_rules_;  // "*" and "*:PORTS"
  DomainIndex names_;
  CidrIndex v4_{32};
  CidrIndex v6_{128};
};

// The host-wide guard (DESIGN.md Policy step 1): a built-in floor that no configuration can
// shrink by accident, plus guard.deny; guard.allow lifts named floor entries on purpose.
class Guard {
 public:
  // The floor as written in DESIGN.md, IPv4 entries without their mapped/NAT64 forms (those
  // are added by compile() for every IPv4 entry).
  static const std::vector<std::string>& floor();

  // Errors name "guard.deny[i]" or "guard.allow[i]".
  static std::variant<Guard, FieldError> compile(const std::vector<std::string>& deny,
                                                 const std::vector<std::string>& allow = {});
  // The guard entry covering `destination`, or empty.
  std::string_view covering(const IpAddress& destination) const;
  // The floor entries guard.allow lifted (for the start-up log).
  const std::vector<std::string>& lifted() const { return lifted_; }
  // Every guarded prefix, IPv4 ones with their IPv6 forms (for the kernel's sets).
  const std::vector<IpPrefix>& prefixes() const { return prefixes_; }

 private:
  void add(const IpPrefix& prefix, std::string text);

  std::vector<IpPrefix> prefixes_;
  std::vector<std::string> texts_;
  std::vector<std::string> lifted_;
  CidrIndex v4_{32};
  CidrIndex v6_{128};
};

// The full decision for a connection from a known sandbox (policy may be null: unknown source).
struct DecisionInput {
  const std::string* name = nullptr;  // canonical name observed on an inspected port
  std::optional<IpAddress> destination;
  uint16_t port = 0;
};
Decision decide(const Guard& guard, const CompiledPolicy* policy, Verdict unknown_source,
                const DecisionInput& input);

}  // namespace egressd
