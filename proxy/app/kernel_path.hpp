#pragma once
// DESIGN.md "Kernel fast path" (fast_path: kernel), the daemon's side: keeps the firewall's
// table inet egressd filled with every sandbox's fast-path decisions (one transaction per
// policy change, only the sandboxes that changed), deletes the conntrack entries of the
// kernel-forwarded flows a change denies (on_update: revoke), and writes one access-log line
// per finished kernel-forwarded flow from conntrack's destroy events.
// Until the table is there (firewall.sh up --fast-path), the proxy decides everything, and a
// timer tries again; a firewall reload (which empties the table) is noticed the same way.
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "app/daemon.hpp"
#include "kernel/fast_path_sets.hpp"
#include "kernel/netfilter.hpp"

namespace egressd {

class KernelPath {
 public:
  explicit KernelPath(Shared& shared, std::string table = "egressd")
      : shared_(shared), table_(std::move(table)) {}
  ~KernelPath() {
    events_.stop();
    refusals_.stop();
  }
  // After every change of the policies or settings (under the control API's write lock, so
  // before the API answers), and from the timer: brings the kernel up to date.
  void sync();
  // The timer's: a table emptied by a firewall reload (or never filled) is filled again.
  void check();
  // A stopping egressd empties fast_path (new connections go to TPROXY, where nobody
  // listens: closed); one handing over to a new process leaves it to that one.
  void stop(bool handed_over);
  // The kernel-forwarded flows open now (GET /v1/connections), each with the id its
  // access-log line will carry; none until the table is filled.
  std::vector<KernelFlow> live();

 private:
  bool find_table(std::string& problem);
  std::string fill(const KernelSets& next);
  AccessRecord decided_again(const IpAddress& source, const IpAddress& destination, uint16_t port);
  void write(AccessRecord& record, const KernelFlow* flow, const IpAddress& destination);
  void account(const KernelFlow& flow);
  void refused(const KernelRefusal& refusal);
  void revoke(const KernelSets& before, bool denied_too);
  void count_unlogged();

  Shared& shared_;
  std::string table_;
  std::mutex mutex_;
  Nft nft_{"/proc/self/exe"};         // transactions in a child egressd --nft-run
  uint32_t mark_ = 0;                 // from the table's fp_mark set
  std::optional<KernelSets> loaded_;  // what the kernel holds now
  std::string last_problem_;          // said once, not every tick
  bool stopped_ = false;
  bool limit_chain_ = false;  // the table has fp_limit (firewall.sh of this version)
  bool limit_said_ = false;
  ConntrackEvents events_;
  int log_group_ = -1;  // from the table's fp_refuse
  RefusalLog refusals_;
  uint64_t unlogged_ = 0;  // fp_unlogged's packets at the last tick
  uint64_t refusals_lost_ = 0, event_overruns_ = 0;
  // A live flow, as conntrack names it while it lives: its id and the sandbox's port.
  using FlowKey = std::pair<uint32_t, uint16_t>;
  static FlowKey key_of(const KernelFlow& flow) { return {flow.conntrack_id, flow.source_port}; }
  std::mutex flows_mutex_;  // listed_ and revoked_
  // The ids live() gave, until the flow's line is written (or a later live() no longer finds
  // it).
  std::map<FlowKey, uint64_t> listed_;
  // Flows revoked (their line written) whose destroy event has not come yet.
  std::set<FlowKey> revoked_;
};

}  // namespace egressd
