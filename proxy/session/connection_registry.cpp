#include "session/connection_registry.hpp"

namespace egressd {

ConnectionRegistry::Shard& ConnectionRegistry::shard(const std::string& sandbox) const {
  return shards_[std::hash<std::string>{}(sandbox) % shards_.size()];
}

bool ConnectionRegistry::admit(const std::shared_ptr<LiveConnection>& connection, unsigned limit) {
  Shard& s = shard(connection->sandbox);
  std::lock_guard lock(s.mutex);
  auto& live = s.by_sandbox[connection->sandbox];
  if (live.size() >= limit) return false;
  live.emplace(connection->serial, connection);
  return true;
}

void ConnectionRegistry::remove(const LiveConnection& connection) {
  Shard& s = shard(connection.sandbox);
  std::lock_guard lock(s.mutex);
  auto found = s.by_sandbox.find(connection.sandbox);
  if (found == s.by_sandbox.end()) return;
  found->second.erase(connection.serial);
  if (found->second.empty()) s.by_sandbox.erase(found);
}

std::vector<std::shared_ptr<LiveConnection>> ConnectionRegistry::of_sandbox(
    const std::string& sandbox) const {
  Shard& s = shard(sandbox);
  std::lock_guard lock(s.mutex);
  std::vector<std::shared_ptr<LiveConnection>> out;
  auto found = s.by_sandbox.find(sandbox);
  if (found == s.by_sandbox.end()) return out;
  for (const auto& [serial, weak] : found->second) {
    if (auto live = weak.lock()) out.push_back(std::move(live));
  }
  return out;
}

}  // namespace egressd
