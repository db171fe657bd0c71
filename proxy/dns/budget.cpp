#include "dns/budget.hpp"

#include <algorithm>

#include "policy/public_suffix.hpp"

namespace egressd {

bool DnsBudget::take_query(const std::string& sandbox, const DnsBudgetLimits& limits,
                           Clock::time_point now) {
  Shard& s = shard(sandbox);
  std::lock_guard lock(s.mutex);
  State& state = s.sandboxes[sandbox];
  double burst = std::max(1u, limits.burst);
  if (state.tokens < 0) {
    state.tokens = burst;
    state.refilled = now;
    state.window_start = now;
  }
  double elapsed = std::chrono::duration<double>(now - state.refilled).count();
  if (elapsed > 0) {
    state.tokens = std::min(burst, state.tokens + elapsed * limits.queries_per_second);
    state.refilled = now;
  }
  if (state.tokens < 1) return false;
  state.tokens -= 1;
  return true;
}

bool DnsBudget::admit_name(const std::string& sandbox, std::string_view name,
                           const DnsBudgetLimits& limits, Clock::time_point now) {
  Shard& s = shard(sandbox);
  std::lock_guard lock(s.mutex);
  State& state = s.sandboxes[sandbox];
  if (state.tokens < 0) {
    state.tokens = std::max(1u, limits.burst);
    state.refilled = now;
    state.window_start = now;
  }
  if (now - state.window_start >= std::chrono::minutes(1)) {
    state.by_domain.clear();
    state.names = 0;
    state.window_start = now;
  }
  auto& names = state.by_domain[std::string(registrable_domain(name))];
  if (names.count(std::string(name))) return true;
  if (names.size() >= limits.new_names_per_minute || state.names >= kNamesPerSandbox) return false;
  names.emplace(name);
  ++state.names;
  return true;
}

void DnsBudget::forget(const std::string& sandbox) {
  Shard& s = shard(sandbox);
  std::lock_guard lock(s.mutex);
  s.sandboxes.erase(sandbox);
}

void AnswerMemory::remember(const std::string& sandbox, const std::string& name,
                            std::span<const IpAddress> addresses, unsigned ttl_s,
                            Clock::time_point now) {
  if (addresses.empty() || ttl_s == 0) return;
  Shard& s = shard(sandbox);
  std::lock_guard lock(s.mutex);
  auto& names = s.sandboxes[sandbox];
  auto found = names.find(name);
  if (found == names.end() && names.size() >= kNamesPerSandbox) {
    std::erase_if(names, [&](const auto& entry) { return entry.second.expires <= now; });
    if (names.size() >= kNamesPerSandbox) names.erase(names.begin());
  }
  Entry& entry = names[name];
  entry.addresses.assign(addresses.begin(), addresses.end());
  entry.expires = now + std::chrono::seconds(ttl_s);
}

bool AnswerMemory::gave(const std::string& sandbox, const std::string& name,
                        const IpAddress& address, Clock::time_point now) {
  Shard& s = shard(sandbox);
  std::lock_guard lock(s.mutex);
  auto by_sandbox = s.sandboxes.find(sandbox);
  if (by_sandbox == s.sandboxes.end()) return false;
  auto found = by_sandbox->second.find(name);
  if (found == by_sandbox->second.end()) return false;
  if (found->second.expires <= now) {
    by_sandbox->second.erase(found);
    return false;
  }
  const auto& list = found->second.addresses;
  IpAddress plain = address.unmapped();
  return std::find(list.begin(), list.end(), plain) != list.end();
}

void AnswerMemory::forget(const std::string& sandbox) {
  Shard& s = shard(sandbox);
  std::lock_guard lock(s.mutex);
  s.sandboxes.erase(sandbox);
}

size_t AnswerMemory::names(const std::string& sandbox) {
  Shard& s = shard(sandbox);
  std::lock_guard lock(s.mutex);
  auto found = s.sandboxes.find(sandbox);
  return found == s.sandboxes.end() ? 0 : found->second.size();
}

}  // namespace egressd
