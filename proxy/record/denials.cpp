#include "record/denials.hpp"

#include <algorithm>

namespace egressd {

void DenialLog::record(const std::string& sandbox, Denial denial) {
  Shard& s = shard(sandbox);
  std::lock_guard lock(s.mutex);
  denial.sandbox = sandbox;
  auto& ring = s.by_sandbox[sandbox];
  if (ring.size() == kPerSandbox) ring.pop_front();
  ring.push_back(std::move(denial));
}

std::vector<Denial> DenialLog::recent(const std::string& sandbox) const {
  Shard& s = shard(sandbox);
  std::lock_guard lock(s.mutex);
  auto found = s.by_sandbox.find(sandbox);
  if (found == s.by_sandbox.end()) return {};
  return {found->second.rbegin(), found->second.rend()};  // newest first
}

void DenialLog::forget(const std::string& sandbox) {
  Shard& s = shard(sandbox);
  std::lock_guard lock(s.mutex);
  s.by_sandbox.erase(sandbox);
}

std::vector<Denial> DenialLog::recent_host_wide() const {
  std::vector<Denial> out;
  for (const Shard& s : shards_) {
    std::lock_guard lock(s.mutex);
    for (const auto& [sandbox, ring] : s.by_sandbox)
      out.insert(out.end(), ring.begin(), ring.end());
  }
  std::sort(out.begin(), out.end(),
            [](const Denial& a, const Denial& b) { return a.time > b.time; });
  if (out.size() > kHostWide) out.resize(kHostWide);
  return out;
}

}  // namespace egressd
