#include "policy/sandbox_policy.hpp"

#include <algorithm>

namespace egressd {

std::string_view to_string(Mode mode) {
  return mode == Mode::audit ? "audit" : "enforce";
}

namespace {

// DESIGN.md "Request transforms": every field is validated before the policy is; the errors
// name the field and never quote a secret.
std::optional<FieldError> check_transforms(const SandboxSpec& spec) {
  auto at = [](std::string base, size_t i) { return base + "[" + std::to_string(i) + "]"; };
  if (spec.transforms.size() > kMaxTransforms)
    return FieldError{"transforms", "at most 64 transforms per sandbox"};
  for (size_t t = 0; t < spec.transforms.size(); ++t) {
    const Transform& transform = spec.transforms[t];
    std::string field = at("transforms", t);
    if (transform.hosts.empty()) return FieldError{field + ".hosts", "names at least one host"};
    if (transform.headers.empty() && transform.body.empty())
      return FieldError{field, "sets no header and no body field"};
    if (transform.hosts.size() > kMaxTransformEntries ||
        transform.headers.size() > kMaxTransformEntries ||
        transform.body.size() > kMaxTransformEntries)
      return FieldError{field, "at most 32 hosts, 32 headers and 32 body fields"};
    for (size_t h = 0; h < transform.hosts.size(); ++h) {
      if (auto error = transform_host_error(transform.hosts[h]))
        return FieldError{at(field + ".hosts", h), "\"" + transform.hosts[h] + "\": " + *error};
    }
    for (const auto& [name, value] : transform.headers) {
      if (auto error = header_name_error(name)) return FieldError{field + ".headers", *error};
      if (auto error = template_error(value)) return FieldError{field + ".headers." + name, *error};
    }
    for (const auto& [name, value] : transform.body) {
      if (name.empty() || name.size() > 256)
        return FieldError{field + ".body", "a body field name is 1 to 256 bytes"};
      if (auto error = template_error(value)) return FieldError{field + ".body." + name, *error};
    }
  }
  if (spec.bypass.size() > 1024) return FieldError{"bypass", "at most 1024 names"};
  for (size_t i = 0; i < spec.bypass.size(); ++i) {
    if (spec.bypass[i] == "*") return FieldError{at("bypass", i), "\"*\": name the hosts"};
    if (auto error = transform_host_error(spec.bypass[i]))
      return FieldError{at("bypass", i), "\"" + spec.bypass[i] + "\": " + *error};
  }
  if (spec.secrets.size() > kMaxSecrets) return FieldError{"secrets", "at most 64 secrets"};
  for (const auto& [name, value] : spec.secrets) {
    if (auto error = secret_name_error(name)) return FieldError{"secrets", *error};
    if (auto error = secret_value_error(value)) return FieldError{"secrets." + name, *error};
  }
  return std::nullopt;
}

}  // namespace

std::variant<std::shared_ptr<const CompiledPolicy>, FieldError> CompiledPolicy::compile(
    const SandboxSpec& spec) {
  auto policy = std::make_shared<CompiledPolicy>();
  policy->default_verdict_ = spec.default_verdict;
  policy->mode_ = spec.mode;
  policy->names_bypass_address_denies_ = spec.names_bypass_address_denies;
  policy->gateway_ = spec.gateway;
  size_t text_bytes = 0;
  for (const auto& text : spec.allow) text_bytes += text.size();
  for (const auto& text : spec.deny) text_bytes += text.size();
  policy->texts_.reserve(text_bytes);
  policy->rules_.reserve(spec.allow.size() + spec.deny.size());

  auto add_list = [&](const std::vector<std::string>& list, bool allow,
                      const char* field) -> std::optional<FieldError> {
    for (size_t i = 0; i < list.size(); ++i) {
      const std::string& text = list[i];
      auto parsed = parse_rule(text);
      if (auto* error = std::get_if<std::string>(&parsed)) {
        return FieldError{std::string(field) + "[" + std::to_string(i) + "]",
                          "\"" + text + "\": " + *error};
      }
      if (text.size() > UINT16_MAX) return FieldError{field, "rule too long"};
      const Rule& rule = std::get<Rule>(parsed);
      auto rule_id = static_cast<uint32_t>(policy->rules_.size());
      bool catch_all =
          rule.kind == RuleKind::any || (rule.kind == RuleKind::address && rule.prefix.length == 0);
      policy->rules_.push_back(RuleRecord{static_cast<uint32_t>(policy->texts_.size()),
                                          static_cast<uint16_t>(text.size()), allow, catch_all,
                                          rule.ports});
      policy->texts_ += text;
      if (allow && (rule.kind == RuleKind::any || rule.kind == RuleKind::address))
        policy->has_address_allows_ = true;
      switch (rule.kind) {
        case RuleKind::exact_name:
        case RuleKind::below_name:
        case RuleKind::suffix_name:
          policy->names_.add(rule.kind, rule.name, rule_id);
          break;
        case RuleKind::any:
          policy->any_name_rules_.push_back(rule_id);
          policy->v4_.add(IpPrefix{IpAddress{Family::v4, 0}, 0}, rule_id);
          policy->v6_.add(IpPrefix{IpAddress{Family::v6, 0}, 0}, rule_id);
          break;
        case RuleKind::address:
          (rule.prefix.address.family == Family::v4 ? policy->v4_ : policy->v6_)
              .add(rule.prefix, rule_id);
          break;
      }
    }
    return std::nullopt;
  };
  if (auto error = add_list(spec.allow, true, "egress.allow")) return *error;
  if (auto error = add_list(spec.deny, false, "egress.deny")) return *error;
  if (auto error = check_transforms(spec)) return *error;
  policy->transforms_ = spec.transforms;
  policy->bypass_ = spec.bypass;
  policy->secrets_ = spec.secrets;
  policy->names_.finish();
  policy->v4_.finish();
  policy->v6_.finish();
  policy->any_name_rules_.shrink_to_fit();
  return std::shared_ptr<const CompiledPolicy>(std::move(policy));
}

Decision CompiledPolicy::decide(const std::string* name,
                                const std::optional<IpAddress>& destination, uint16_t port) const {
  auto port_matches = [&](uint32_t rule_id) { return rules_[rule_id].ports.contains(port); };
  auto is_allow = [&](uint32_t rule_id) { return rules_[rule_id].allow; };
  auto decided = [&](uint32_t rule_id, Reason allowed, Reason denied) {
    bool allow = rules_[rule_id].allow;
    return Decision{allow ? Verdict::allow : Verdict::deny, allow ? allowed : denied,
                    text_of(rule_id)};
  };
  if (name != nullptr) {
    uint32_t rule = names_.lookup(*name, port_matches, is_allow);
    if (rule == DomainIndex::kNoRule) {
      LevelPick pick;  // the least specific level: "*" rules
      for (uint32_t id : any_name_rules_) {
        if (port_matches(id) && pick.offer(id, is_allow(id))) break;
      }
      rule = pick.decided();
    }
    if (rule != DomainIndex::kNoRule)
      return decided(rule, Reason::allowed_domain, Reason::denied_domain);
  }
  if (destination) {
    const CidrIndex& index = destination->family == Family::v4 ? v4_ : v6_;
    uint32_t rule = index.lookup(destination->bits, port_matches, is_allow);
    if (rule != CidrIndex::kNoRule)
      return decided(rule, Reason::allowed_address, Reason::denied_address);
  }
  return default_verdict_ == Verdict::allow ? Decision{Verdict::allow, Reason::default_allow, {}}
                                            : Decision{Verdict::deny, Reason::default_deny, {}};
}

Decision CompiledPolicy::decide_name(std::string_view name) const {
  auto any_port = [](uint32_t) { return true; };
  auto is_allow = [&](uint32_t rule_id) { return rules_[rule_id].allow; };
  uint32_t rule = names_.lookup(name, any_port, is_allow);
  if (rule == DomainIndex::kNoRule) {
    LevelPick pick;
    for (uint32_t id : any_name_rules_) {
      if (pick.offer(id, is_allow(id))) break;
    }
    rule = pick.decided();
  }
  if (rule != DomainIndex::kNoRule) {
    bool allow = rules_[rule].allow;
    return Decision{allow ? Verdict::allow : Verdict::deny,
                    allow ? Reason::allowed_domain : Reason::denied_domain, text_of(rule)};
  }
  return default_verdict_ == Verdict::allow ? Decision{Verdict::allow, Reason::default_allow, {}}
                                            : Decision{Verdict::deny, Reason::default_deny, {}};
}

bool CompiledPolicy::address_allowed_on_some_port(const IpAddress& address) const {
  auto any_port = [](uint32_t) { return true; };
  auto is_allow = [&](uint32_t rule_id) { return rules_[rule_id].allow; };
  IpAddress plain = address.unmapped();
  const CidrIndex& index = plain.family == Family::v4 ? v4_ : v6_;
  uint32_t rule = index.lookup(plain.bits, any_port, is_allow);
  return rule != CidrIndex::kNoRule && rules_[rule].allow;
}

std::string_view CompiledPolicy::address_denial(const IpAddress& address, uint16_t port) const {
  if (names_bypass_address_denies_) return {};
  auto port_matches = [&](uint32_t rule_id) { return rules_[rule_id].ports.contains(port); };
  auto is_allow = [&](uint32_t rule_id) { return rules_[rule_id].allow; };
  IpAddress plain = address.unmapped();
  const CidrIndex& index = plain.family == Family::v4 ? v4_ : v6_;
  uint32_t rule = index.lookup(plain.bits, port_matches, is_allow);
  if (rule == CidrIndex::kNoRule || rules_[rule].allow || rules_[rule].catch_all) return {};
  return text_of(rule);
}

std::vector<std::string> CompiledPolicy::rule_texts(bool allow) const {
  std::vector<std::string> texts;
  for (uint32_t id = 0; id < rules_.size(); ++id) {
    if (rules_[id].allow == allow) texts.emplace_back(text_of(id));
  }
  return texts;
}

std::vector<const Transform*> CompiledPolicy::transforms_for(std::string_view name) const {
  std::vector<const Transform*> out;
  if (transforms_.empty() || name.empty()) return out;
  for (const std::string& pattern : bypass_)
    if (transform_host_matches(pattern, name)) return out;
  for (const Transform& transform : transforms_) {
    for (const std::string& pattern : transform.hosts) {
      if (transform_host_matches(pattern, name)) {
        out.push_back(&transform);
        break;
      }
    }
  }
  return out;
}

size_t CompiledPolicy::memory_bytes() const {
  return sizeof(*this) + texts_.capacity() + rules_.capacity() * sizeof(RuleRecord) +
         any_name_rules_.capacity() * sizeof(uint32_t) + names_.memory_bytes() +
         v4_.memory_bytes() + v6_.memory_bytes();
}

const std::vector<std::string>& Guard::floor() {
  static const std::vector<std::string> entries{
      "0.0.0.0/8",          "::/128",
      "127.0.0.0/8",        "::1/128",
      "169.254.0.0/16",     "fe80::/10",
      "224.0.0.0/4",        "ff00::/8",
      "255.255.255.255/32", "fd00:ec2::254/128",
      "100.100.100.200/32", "168.63.129.16/32",
  };
  return entries;
}

void Guard::add(const IpPrefix& prefix, std::string text) {
  auto id = static_cast<uint32_t>(texts_.size());
  texts_.push_back(std::move(text));
  prefixes_.push_back(prefix);
  if (prefix.address.family == Family::v6) {
    v6_.add(prefix, id);
    return;
  }
  v4_.add(prefix, id);
  // The same IPv4 space spelt in IPv6: IPv4-mapped (::ffff:a.b.c.d) and NAT64 (64:ff9b::a.b.c.d,
  // RFC 6052), where a NAT64 gateway on the path would turn it back into the IPv4 address.
  for (uint128 base : {uint128(0xFFFF) << 32, uint128(0x0064FF9B) << 96}) {
    IpPrefix wide{IpAddress{Family::v6, base | prefix.address.bits},
                  static_cast<uint8_t>(96 + prefix.length)};
    auto wide_id = static_cast<uint32_t>(texts_.size());
    texts_.push_back(wide.to_string());
    prefixes_.push_back(wide);
    v6_.add(wide, wide_id);
  }
}

std::variant<Guard, FieldError> Guard::compile(const std::vector<std::string>& deny,
                                               const std::vector<std::string>& allow) {
  Guard guard;
  auto parse_list = [](const std::vector<std::string>& list, const char* field,
                       std::vector<IpPrefix>& out) -> std::optional<FieldError> {
    for (size_t i = 0; i < list.size(); ++i) {
      auto parsed = IpPrefix::parse(list[i]);
      std::string where = std::string(field) + "[" + std::to_string(i) + "]";
      if (auto* error = std::get_if<std::string>(&parsed))
        return FieldError{where, "\"" + list[i] + "\": " + *error};
      if (std::get<IpPrefix>(parsed).is_v4_mapped())
        return FieldError{where, "\"" + list[i] +
                                     "\": an IPv4-mapped IPv6 prefix; write the IPv4 prefix "
                                     "(its mapped and NAT64 forms are guarded with it)"};
      out.push_back(std::get<IpPrefix>(parsed));
    }
    return std::nullopt;
  };
  std::vector<IpPrefix> floor_prefixes, deny_prefixes, allow_prefixes;
  parse_list(floor(), "guard.floor", floor_prefixes);
  if (auto error = parse_list(deny, "guard.deny", deny_prefixes)) return *error;
  if (auto error = parse_list(allow, "guard.allow", allow_prefixes)) return *error;
  std::vector<bool> lifted(floor_prefixes.size(), false);
  for (size_t i = 0; i < allow_prefixes.size(); ++i) {
    auto found = std::find(floor_prefixes.begin(), floor_prefixes.end(), allow_prefixes[i]);
    if (found == floor_prefixes.end()) {
      std::string entries;
      for (const auto& text : floor()) entries += (entries.empty() ? "" : ", ") + text;
      return FieldError{"guard.allow[" + std::to_string(i) + "]",
                        "\"" + allow[i] + "\" is not an entry of the built-in floor (" + entries +
                            "); guard.allow can only lift one of those exactly"};
    }
    lifted[found - floor_prefixes.begin()] = true;
  }
  for (size_t i = 0; i < floor_prefixes.size(); ++i) {
    if (lifted[i]) {
      guard.lifted_.push_back(floor()[i]);
    } else {
      guard.add(floor_prefixes[i], floor()[i]);
    }
  }
  for (size_t i = 0; i < deny_prefixes.size(); ++i) guard.add(deny_prefixes[i], deny[i]);
  guard.v4_.finish();
  guard.v6_.finish();
  return guard;
}

std::string_view Guard::covering(const IpAddress& destination) const {
  auto any_port = [](uint32_t) { return true; };
  auto deny = [](uint32_t) { return false; };
  const CidrIndex& index = destination.family == Family::v4 ? v4_ : v6_;
  uint32_t id = index.lookup(destination.bits, any_port, deny);
  return id == CidrIndex::kNoRule ? std::string_view{} : std::string_view(texts_[id]);
}

Decision decide(const Guard& guard, const CompiledPolicy* policy, Verdict unknown_source,
                const DecisionInput& input) {
  if (policy == nullptr && unknown_source == Verdict::deny) {
    return Decision{Verdict::deny, Reason::unknown_source, {}};
  }
  // The guard holds in audit mode too: it protects the host, not the sandbox owner's intent.
  if (input.destination) {
    if (auto entry = guard.covering(*input.destination); !entry.empty()) {
      return Decision{Verdict::deny, Reason::guarded_destination, entry};
    }
  }
  if (policy == nullptr) return Decision{Verdict::allow, Reason::default_allow, {}};
  Decision decision = policy->decide(input.name, input.destination, input.port);
  if (decision.verdict == Verdict::deny && policy->mode() == Mode::audit) {
    decision.verdict = Verdict::allow;
    decision.would_deny = decision.reason;
    decision.reason = Reason::audit_allow;
  }
  return decision;
}

}  // namespace egressd
