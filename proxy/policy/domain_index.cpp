#include "policy/domain_index.hpp"

#include <algorithm>
#include <bit>

namespace egressd {

uint32_t DomainIndex::hash_of(std::string_view key) {
  // FNV-1a, then a finaliser so the low bits used for the slot are well mixed.
  uint64_t hash = 0xcbf29ce484222325ULL;
  for (char c : key) hash = (hash ^ static_cast<uint8_t>(c)) * 0x100000001b3ULL;
  hash ^= hash >> 33;
  hash *= 0xff51afd7ed558ccdULL;
  hash ^= hash >> 33;
  return static_cast<uint32_t>(hash) | 1u;
}

void DomainIndex::add(RuleKind kind, std::string_view canonical_name, uint32_t rule_id) {
  pending_.push_back({std::string(canonical_name), Member{rule_id, kind}});
}

void DomainIndex::finish() {
  std::stable_sort(pending_.begin(), pending_.end(),
                   [](const Pending& a, const Pending& b) { return a.key < b.key; });
  for (size_t i = 0; i < pending_.size();) {
    size_t j = i;
    Group group{static_cast<uint32_t>(keys_.size()), static_cast<uint32_t>(pending_[i].key.size()),
                static_cast<uint32_t>(members_.size()), 0};
    keys_ += pending_[i].key;
    for (; j < pending_.size() && pending_[j].key == pending_[i].key; ++j) {
      members_.push_back(pending_[j].member);
      ++group.member_count;
    }
    groups_.push_back(group);
    i = j;
  }
  pending_.clear();
  pending_.shrink_to_fit();
  keys_.shrink_to_fit();
  members_.shrink_to_fit();
  groups_.shrink_to_fit();
  if (groups_.empty()) return;
  size_t capacity = std::bit_ceil(groups_.size() * 2);
  slots_.assign(capacity, Slot{});
  for (uint32_t g = 0; g < groups_.size(); ++g) {
    std::string_view key(keys_.data() + groups_[g].key_offset, groups_[g].key_length);
    uint32_t hash = hash_of(key);
    for (size_t slot = hash & (capacity - 1);; slot = (slot + 1) & (capacity - 1)) {
      if (slots_[slot].group_plus_one == 0) {
        slots_[slot] = Slot{hash, g + 1};
        break;
      }
    }
  }
}

const DomainIndex::Group* DomainIndex::find(std::string_view key) const {
  uint32_t hash = hash_of(key);
  size_t mask = slots_.size() - 1;
  for (size_t slot = hash & mask;; slot = (slot + 1) & mask) {
    const Slot& candidate = slots_[slot];
    if (candidate.group_plus_one == 0) return nullptr;
    if (candidate.hash != hash) continue;
    const Group& group = groups_[candidate.group_plus_one - 1];
    if (std::string_view(keys_.data() + group.key_offset, group.key_length) == key) return &group;
  }
}

size_t DomainIndex::memory_bytes() const {
  return keys_.capacity() + members_.capacity() * sizeof(Member) +
         groups_.capacity() * sizeof(Group) + slots_.capacity() * sizeof(Slot);
}

}  // namespace egressd
