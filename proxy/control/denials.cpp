#include "control/denials.hpp"

namespace egressd {

void DenialLog::record(const std::string& sandbox, Denial denial) {
  Shard& s = shard(sandbox);
  std::lock_guard lock(s.mutex);
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

}  // namespace egressd
