#pragma once
// Live connections by sandbox: enforces the connection limits (DESIGN.md "What a connection
// gets"), lists them for the API and lets a policy change reach them. Each connection is owned
// by its worker thread; others only post to its executor.
//
// Fair sharing: once the daemon holds 3/4 of limits.max_connections, a sandbox that holds more
// than its fair share, max_connections / (sandboxes holding connections + 1), is refused. So
// one greedy sandbox stops at 3/4 and the last quarter stays open to the others, and several
// greedy ones each stop near an equal share. Connections still peeking (no decision yet) are
// capped per sandbox too: they hold descriptors while sending nothing.
#include <asio/any_io_executor.hpp>

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "core/ip.hpp"
#include "core/reason.hpp"

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
  friend class ConnectionRegistry;
  mutable bool peeking_ = false;  // guarded by the registry shard's mutex
};

struct ConnectionLimits {
  unsigned per_sandbox = 4096;
  unsigned total = 8192;
  unsigned peeking_per_sandbox = 256;
};

class ConnectionRegistry {
 public:
  // Registers `connection` (peeking: it starts in the peek phase) unless a limit refuses it.
  bool admit(const std::shared_ptr<LiveConnection>& connection, const ConnectionLimits& limits,
             bool peeking);
  // The connection left the peek phase (decided, or refused).
  void peek_done(const LiveConnection& connection);
  void remove(const LiveConnection& connection);
  std::vector<std::shared_ptr<LiveConnection>> of_sandbox(const std::string& sandbox) const;
  // Every live connection, unknown sources' (sandbox "") included.
  std::vector<std::shared_ptr<LiveConnection>> all() const;
  size_t total() const { return total_.load(std::memory_order_relaxed); }

 private:
  struct Tenant {
    std::unordered_map<uint64_t, std::weak_ptr<LiveConnection>> connections;
    unsigned peeking = 0;
  };
  struct Shard {
    mutable std::mutex mutex;
    std::unordered_map<std::string, Tenant> by_sandbox;
  };
  std::atomic<size_t> total_{0};
  std::atomic<size_t> tenants_{0};  // sandboxes holding at least one connection
  Shard& shard(const std::string& sandbox) const;
  mutable std::array<Shard, 32> shards_;
};

}  // namespace egressd
