#pragma once
// Among the matching rules of one specificity level, the deciding one: the first that allows,
// else the first that denies (DESIGN.md: equal specificity, allow wins).
#include <cstdint>

namespace egressd {

class LevelPick {
 public:
  static constexpr uint32_t kNone = UINT32_MAX;
  // True once an allowing rule was offered: it decides the level, stop looking.
  bool offer(uint32_t rule_id, bool allow) {
    if (allow) {
      decided_ = rule_id;
      return true;
    }
    if (decided_ == kNone) decided_ = rule_id;
    return false;
  }
  uint32_t decided() const { return decided_; }

 private:
  uint32_t decided_ = kNone;
};

}  // namespace egressd
