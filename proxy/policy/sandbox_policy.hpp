#pragma once
// One sandbox's policy, compiled for fast decisions, and decide() in DESIGN.md's order.
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "policy/cidr_index.hpp"
#include "policy/domain_index.hpp"
#include "policy/ip.hpp"
#include "policy/reason.hpp"
#include "policy/rule.hpp"

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
};

class CompiledPolicy {
 public:
  static std::variant<std::shared_ptr<const CompiledPolicy>, FieldError> compile(
      const SandboxSpec& spec);

  // Sandbox rules only (no guard, no audit): steps 2-4 of DESIGN.md's decision.
  Decision decide(const std::string* name, const std::optional<IpAddress>& destination,
                  uint16_t port) const;

  Verdict default_verdict() const { return default_verdict_; }
  Mode mode() const { return mode_; }
  std::vector<std::string> rule_texts(bool allow) const;
  size_t memory_bytes() const;

 private:
  struct RuleRecord {
    uint32_t text_offset;
    uint16_t text_length;
    bool allow;
    PortRange ports;
  };
  std::string_view text_of(uint32_t rule_id) const {
    const RuleRecord& r = rules_[rule_id];
    return std::string_view(texts_.data() + r.text_offset, r.text_length);
  }

  Verdict default_verdict_ = Verdict::deny;
  Mode mode_ = Mode::enforce;
  std::string texts_;
  std::vector<RuleRecord> rules_;
  std::vector<uint32_t> any_name_rules_;  // "*" and "*:PORTS"
  DomainIndex names_;
  CidrIndex v4_{32};
  CidrIndex v6_{128};
};

// Host-wide guard.deny: destinations no sandbox policy can open.
class Guard {
 public:
  static std::variant<Guard, FieldError> compile(const std::vector<std::string>& prefixes);
  // The guard entry covering `destination`, or empty.
  std::string_view covering(const IpAddress& destination) const;

 private:
  std::vector<std::string> texts_;
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
