#pragma once
// Address rules of one family for longest-prefix match: entries grouped by prefix length
// (longest first), each group sorted by address; a lookup does one binary search per distinct
// prefix length present, not a scan over rules.
#include <cstdint>
#include <vector>

#include "core/ip.hpp"
#include "policy/level_pick.hpp"

namespace egressd {

class CidrIndex {
 public:
  static constexpr uint32_t kNoRule = UINT32_MAX;

  explicit CidrIndex(int width) : width_(width) {}
  void add(const IpPrefix& prefix, uint32_t rule_id);
  void finish();

  template <typename PortFilter, typename IsAllow>
  uint32_t lookup(uint128 address, PortFilter&& port_matches, IsAllow&& is_allow) const;

  size_t memory_bytes() const;
  bool empty() const { return entries_.empty(); }

 private:
  struct Entry {
    uint128 bits;
    uint32_t rule_id;
    uint8_t length;
  };
  struct LengthGroup {
    uint8_t length;
    uint32_t begin;
    uint32_t end;
  };
  int width_;
  std::vector<Entry> entries_;
  std::vector<LengthGroup> groups_;
};

template <typename PortFilter, typename IsAllow>
uint32_t CidrIndex::lookup(uint128 address, PortFilter&& port_matches, IsAllow&& is_allow) const {
  for (const LengthGroup& group : groups_) {
    uint128 masked = address & prefix_mask(width_, group.length);
    const Entry* first = entries_.data() + group.begin;
    const Entry* last = entries_.data() + group.end;
    while (first < last) {  // lower_bound on bits
      const Entry* middle = first + (last - first) / 2;
      if (middle->bits < masked) {
        first = middle + 1;
      } else {
        last = middle;
      }
    }
    LevelPick pick;
    for (const Entry* e = first; e < entries_.data() + group.end && e->bits == masked; ++e) {
      if (port_matches(e->rule_id) && pick.offer(e->rule_id, is_allow(e->rule_id))) break;
    }
    if (pick.decided() != kNoRule) return pick.decided();
  }
  return kNoRule;
}

}  // namespace egressd
