#include "policy/cidr_index.hpp"

#include <algorithm>

namespace egressd {

void CidrIndex::add(const IpPrefix& prefix, uint32_t rule_id) {
  entries_.push_back(Entry{prefix.address.bits, rule_id, prefix.length});
}

void CidrIndex::finish() {
  std::stable_sort(entries_.begin(), entries_.end(), [](const Entry& a, const Entry& b) {
    if (a.length != b.length) return a.length > b.length;
    return a.bits < b.bits;
  });
  entries_.shrink_to_fit();
  groups_.clear();
  for (uint32_t i = 0; i < entries_.size();) {
    uint32_t j = i;
    while (j < entries_.size() && entries_[j].length == entries_[i].length) ++j;
    groups_.push_back(LengthGroup{entries_[i].length, i, j});
    i = j;
  }
  groups_.shrink_to_fit();
}

size_t CidrIndex::memory_bytes() const {
  return entries_.capacity() * sizeof(Entry) + groups_.capacity() * sizeof(LengthGroup);
}

}  // namespace egressd
