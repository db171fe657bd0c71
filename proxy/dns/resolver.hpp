#pragma once
// An asynchronous A/AAAA resolver on c-ares, driven by one worker's io_context: c-ares
// sockets are watched by Asio, its timeouts by an Asio timer; nothing blocks the thread.
#include <ares.h>

#include <asio/awaitable.hpp>
#include <asio/io_context.hpp>
#include <asio/posix/stream_descriptor.hpp>
#include <asio/steady_timer.hpp>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <unordered_map>
#include <vector>

#include "dns/dns_cache.hpp"

namespace egressd {

struct ResolverOptions {
  std::vector<std::string> servers;  // empty: /etc/resolv.conf
  unsigned timeout_ms = 2000;        // per try
  unsigned tries = 2;
};

class AresChannel {
 public:
  using Callback = std::function<void(DnsAnswer)>;
  AresChannel(asio::io_context& io, const ResolverOptions& options);
  ~AresChannel();
  AresChannel(const AresChannel&) = delete;
  AresChannel& operator=(const AresChannel&) = delete;
  bool ok() const { return channel_ != nullptr; }
  const std::string& error() const { return error_; }

  // Resolves `name` (A and AAAA); `done` runs on the io_context's thread.
  void resolve(const std::string& name, Callback done);
  // Sends one DNS query message (the DNS filter's) to the servers, over TCP when the answer is
  // truncated; `done` gets the c-ares status and the answer message (empty on failure).
  using MessageCallback = std::function<void(int status, std::vector<uint8_t> answer)>;
  void send(std::span<const uint8_t> query, MessageCallback done);

 private:
  struct Watcher;
  static void on_socket_state(void* data, ares_socket_t fd, int readable, int writable);
  void arm(const std::shared_ptr<Watcher>& watcher);
  void reset_timer();

  asio::io_context& io_;
  ares_channel channel_ = nullptr;
  std::string error_;
  std::unordered_map<ares_socket_t, std::shared_ptr<Watcher>> watchers_;
  asio::steady_timer timer_;
};

}  // namespace egressd
