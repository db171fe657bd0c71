#pragma once
// The kernel's side of the fast path: nftables transactions through libnftables, and the
// connection tracking table through libnetfilter_conntrack (revocation: dump and delete;
// accounting: destroy events). Needs CAP_NET_ADMIN in the network namespace of the firewall.
#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <variant>
#include <vector>

#include "core/ip.hpp"
#include "kernel/flow.hpp"
#include "kernel/packet.hpp"

struct nft_ctx;
struct nfct_handle;
struct nflog_handle;

namespace egressd {

class Nft {
 public:
  // With `helper` (a program that runs nft_run_stdio(): egressd --nft-run), every transaction
  // runs in a short-lived child process: libnftables' parse of a whole fill (hundreds of MiB
  // at 10,000 sandboxes) and its ruleset cache never stay in this process's memory.
  explicit Nft(std::string helper = {});
  ~Nft();
  Nft(const Nft&) = delete;
  Nft& operator=(const Nft&) = delete;
  // Runs the commands as one transaction: empty on success, else nft's error text.
  // `output`: what nft printed (a `list` command's answer).
  std::string run(const std::string& commands, std::string* output = nullptr);

 private:
  std::string run_in_helper(const std::string& commands, std::string* output);
  std::string helper_;
  nft_ctx* ctx_ = nullptr;
};

// The helper's side: commands on stdin, nft's output on stdout, its errors on stderr; exit 0
// when the transaction was applied.
int nft_run_stdio();

// Deletes the tracked TCP connections carrying `mark` that `revoke` picks (their next packet
// finds no connection and goes to TPROXY, where nothing knows it: a reset). The number
// deleted, or what failed.
std::variant<size_t, std::string> conntrack_revoke(
    uint32_t mark, const std::function<bool(const KernelFlow&)>& revoke);

// The live (not closed) tracked TCP connections carrying `mark`: one dump, both families.
std::variant<std::vector<KernelFlow>, std::string> conntrack_flows(uint32_t mark);

// The tracked TCP connections carrying `mark` (filtered in the kernel) as they finish, from
// their destroy events (counters and times), on a thread of its own, each handed to
// `finished`. One that closed is deleted from conntrack when it does (an update event to
// TIME_WAIT or CLOSE), so its line is written then, not after conntrack's TIME_WAIT. Events the
// socket had no room for are lost (the kernel says so: counted in lost()).
class ConntrackEvents {
 public:
  ~ConntrackEvents() { stop(); }
  std::string start(uint32_t mark, std::function<void(const KernelFlow&)> finished);
  void stop();
  uint64_t lost() const { return lost_.load(); }
  void deliver(const KernelFlow& flow) { finished_(flow); }  // the event thread's

 private:
  nfct_handle* handle_ = nullptr;   // destroy events
  nfct_handle* closing_ = nullptr;  // update events to TIME_WAIT or CLOSE
  uint32_t mark_ = 0;
  std::function<void(const KernelFlow&)> finished_;
  std::atomic<bool> done_{false};
  std::atomic<uint64_t> lost_{0};
  std::thread thread_;
};

// The SYNs the kernel refused, as NFLOG group `group` (firewall.sh's fp_refuse logs them,
// rate-limited) hands them over: source, destination and port of each, on a thread of its own.
class RefusalLog {
 public:
  ~RefusalLog() { stop(); }
  std::string start(uint16_t group, std::function<void(const KernelRefusal&)> refused);
  void stop();
  // The thread's: each NFLOG message's sequence number (a gap since the previous one: messages
  // the socket had no room for, counted in lost()), then the refusal it carries.
  void sequence(uint32_t number);
  void deliver(const KernelRefusal& refusal) { refused_(refusal); }
  uint64_t lost() const { return lost_.load(); }

 private:
  nflog_handle* handle_ = nullptr;
  std::function<void(const KernelRefusal&)> refused_;
  std::optional<uint32_t> last_sequence_;
  std::atomic<uint64_t> lost_{0};
  std::atomic<bool> done_{false};
  std::thread thread_;
};

}  // namespace egressd
