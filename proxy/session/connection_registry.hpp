#pragma once
// Live connections by sandbox: enforces limits.max_connections_per_sandbox, lists them for
// the API and lets a policy change reach them. Each connection is owned by its worker thread;
// others only post to its executor.
#include <asio/any_io_executor.hpp>

#include <array>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "policy/ip.hpp"
#include "policy/reason.hpp"

namespace egressd {

struct LiveConnection {
  uint64_t serial = 0;
  std::string sandbox;
  IpAddress source;
  uint16_t source_port = 0;
  IpAddress destination;
  uint16_t port = 0;
  const char* proto = "tcp";
  std::chrono::system_clock::time_point started;
  asio::any_io_executor executor;
  // Runs on the connection's executor: closes it with `reason` (revoked).
  std::function<void(Reason)> abort;

  // The observed name and whether the connection was allowed: written by the connection's
  // thread, read by the control thread.
  void set_decided(std::string observed_name) {
    std::lock_guard lock(mutex_);
    name_ = std::move(observed_name);
    decided_ = true;
  }
  void set_dialed(const IpAddress& address) {
    std::lock_guard lock(mutex_);
    dialed_ = address;
  }
  IpAddress dialed() const {
    std::lock_guard lock(mutex_);
    return dialed_.value_or(destination);
  }
  std::pair<std::string, bool> facts() const {
    std::lock_guard lock(mutex_);
    return {name_, decided_};
  }

 private:
  mutable std::mutex mutex_;
  std::string name_;
  bool decided_ = false;
  std::optional<IpAddress> dialed_;
};

class ConnectionRegistry {
 public:
  // Registers `connection` unless its sandbox already has `limit` live connections.
  bool admit(const std::shared_ptr<LiveConnection>& connection, unsigned limit);
  void remove(const LiveConnection& connection);
  std::vector<std::shared_ptr<LiveConnection>> of_sandbox(const std::string& sandbox) const;

 private:
  struct Shard {
    mutable std::mutex mutex;
    std::unordered_map<std::string, std::unordered_map<uint64_t, std::weak_ptr<LiveConnection>>>
        by_sandbox;
  };
  Shard& shard(const std::string& sandbox) const;
  mutable std::array<Shard, 32> shards_;
};

}  // namespace egressd
