#pragma once
// Name rules indexed by canonical suffix in one open-addressing table: a lookup walks the
// name's label boundaries from the full name to the top label, one hash probe per suffix, so
// matching is O(labels) whatever the number of rules, and always on label boundaries.
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "policy/level_pick.hpp"
#include "policy/rule.hpp"

namespace egressd {

class DomainIndex {
 public:
  static constexpr uint32_t kNoRule = UINT32_MAX;

  void add(RuleKind kind, std::string_view canonical_name, uint32_t rule_id);
  void finish();  // builds the table; no add() after this

  // Returns the deciding rule of the most specific level that has a rule matching the port
  // (`port_matches(rule_id)`), preferring an allowing rule (`is_allow(rule_id)`) on a tie;
  // kNoRule when no name rule matches.
  template <typename PortFilter, typename IsAllow>
  uint32_t lookup(std::string_view name, PortFilter&& port_matches, IsAllow&& is_allow) const;

  size_t memory_bytes() const;

 private:
  struct Member {
    uint32_t rule_id;
    RuleKind kind;
  };
  struct Group {
    uint32_t key_offset;
    uint32_t key_length;
    uint32_t member_begin;
    uint32_t member_count;
  };
  struct Slot {
    uint32_t hash = 0;
    uint32_t group_plus_one = 0;  // 0 = empty
  };
  struct Pending {
    std::string key;
    Member member;
  };

  static uint32_t hash_of(std::string_view key);
  const Group* find(std::string_view key) const;

  std::vector<Pending> pending_;
  std::string keys_;
  std::vector<Member> members_;
  std::vector<Group> groups_;
  std::vector<Slot> slots_;
};

template <typename PortFilter, typename IsAllow>
uint32_t DomainIndex::lookup(std::string_view name, PortFilter&& port_matches,
                             IsAllow&& is_allow) const {
  if (slots_.empty()) return kNoRule;
  // Level by level: exact, then .name itself, then each shorter suffix. At each level the
  // first allowing rule wins the tie, else the first denying one.
  auto decide_level = [&](const Group* group, bool at_full_name, bool exact_level) -> uint32_t {
    LevelPick pick;
    for (uint32_t i = 0; i < group->member_count; ++i) {
      const Member& member = members_[group->member_begin + i];
      bool kind_applies = exact_level ? member.kind == RuleKind::exact_name
                                      : (member.kind == RuleKind::suffix_name ||
                                         (member.kind == RuleKind::below_name && !at_full_name));
      if (kind_applies && port_matches(member.rule_id) &&
          pick.offer(member.rule_id, is_allow(member.rule_id)))
        break;
    }
    return pick.decided();
  };
  if (const Group* group = find(name)) {
    if (uint32_t rule = decide_level(group, true, true); rule != kNoRule) return rule;
    if (uint32_t rule = decide_level(group, true, false); rule != kNoRule) return rule;
  }
  for (size_t dot = name.find('.'); dot != std::string_view::npos; dot = name.find('.', dot + 1)) {
    if (const Group* group = find(name.substr(dot + 1))) {
      if (uint32_t rule = decide_level(group, false, false); rule != kNoRule) return rule;
    }
  }
  return kNoRule;
}

}  // namespace egressd
