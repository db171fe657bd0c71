#include "record/connection_registry.hpp"

namespace egressd {

ConnectionRegistry::Shard& ConnectionRegistry::shard(const std::string& sandbox) const {
  return shards_[std::hash<std::string>{}(sandbox) % shards_.size()];
}

bool ConnectionRegistry::admit(const std::shared_ptr<LiveConnection>& connection,
                               const ConnectionLimits& limits, bool peeking) {
  Shard& s = shard(connection->sandbox);
  std::lock_guard lock(s.mutex);
  size_t total = total_.load(std::memory_order_relaxed);
  if (total >= limits.total) return false;
  auto found = s.by_sandbox.find(connection->sandbox);
  size_t mine = found == s.by_sandbox.end() ? 0 : found->second.connections.size();
  if (mine >= limits.per_sandbox) return false;
  if (peeking && found != s.by_sandbox.end() && found->second.peeking >= limits.peeking_per_sandbox)
    return false;
  if (total >= static_cast<size_t>(limits.total) * 3 / 4) {
    size_t fair = limits.total / (tenants_.load(std::memory_order_relaxed) + 1);
    if (mine >= fair) return false;
  }
  if (found == s.by_sandbox.end()) {
    found = s.by_sandbox.emplace(connection->sandbox, Tenant{}).first;
    tenants_.fetch_add(1, std::memory_order_relaxed);
  }
  found->second.connections.emplace(connection->serial, connection);
  if (peeking) {
    ++found->second.peeking;
    connection->peeking_ = true;
  }
  total_.fetch_add(1, std::memory_order_relaxed);
  return true;
}

void ConnectionRegistry::peek_done(const LiveConnection& connection) {
  Shard& s = shard(connection.sandbox);
  std::lock_guard lock(s.mutex);
  if (!connection.peeking_) return;
  connection.peeking_ = false;
  auto found = s.by_sandbox.find(connection.sandbox);
  if (found != s.by_sandbox.end()) --found->second.peeking;
}

void ConnectionRegistry::remove(const LiveConnection& connection) {
  Shard& s = shard(connection.sandbox);
  std::lock_guard lock(s.mutex);
  auto found = s.by_sandbox.find(connection.sandbox);
  if (found == s.by_sandbox.end()) return;
  if (found->second.connections.erase(connection.serial) == 0) return;
  total_.fetch_sub(1, std::memory_order_relaxed);
  if (connection.peeking_) {
    connection.peeking_ = false;
    --found->second.peeking;
  }
  if (found->second.connections.empty()) {
    s.by_sandbox.erase(found);
    tenants_.fetch_sub(1, std::memory_order_relaxed);
  }
}

std::vector<std::shared_ptr<LiveConnection>> ConnectionRegistry::of_sandbox(
    const std::string& sandbox) const {
  Shard& s = shard(sandbox);
  std::lock_guard lock(s.mutex);
  std::vector<std::shared_ptr<LiveConnection>> out;
  auto found = s.by_sandbox.find(sandbox);
  if (found == s.by_sandbox.end()) return out;
  for (const auto& [serial, weak] : found->second.connections) {
    if (auto live = weak.lock()) out.push_back(std::move(live));
  }
  return out;
}

std::vector<std::shared_ptr<LiveConnection>> ConnectionRegistry::all() const {
  std::vector<std::shared_ptr<LiveConnection>> out;
  for (const Shard& s : shards_) {
    std::lock_guard lock(s.mutex);
    for (const auto& [sandbox, tenant] : s.by_sandbox) {
      for (const auto& [serial, weak] : tenant.connections) {
        if (auto live = weak.lock()) out.push_back(std::move(live));
      }
    }
  }
  return out;
}

}  // namespace egressd
