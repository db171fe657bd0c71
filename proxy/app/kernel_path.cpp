#include "app/kernel_path.hpp"

#include <fstream>

#include "core/log.hpp"
#include "kernel/nft_netlink.hpp"

namespace egressd {
namespace {

std::vector<uint16_t> inspected_ports(const Settings& settings) {
  std::vector<uint16_t> ports;
  for (size_t port = 1; port < 65536; ++port)
    if (settings.tls_ports.test(port) || settings.http_ports.test(port))
      ports.push_back(static_cast<uint16_t>(port));
  return ports;
}

bool sysctl_on(const char* path) {
  std::ifstream file(path);
  int value = 0;
  return file >> value && value != 0;
}

}  // namespace

// The table firewall.sh --fast-path made, its mark and its NFLOG group (one helper run).
bool KernelPath::find_table(std::string& problem) {
  std::string listing;
  problem = nft_.run(
      "list set inet " + table_ + " fp_mark\nlist chain inet " + table_ + " fp_refuse\n", &listing);
  if (!problem.empty()) {
    problem = "table inet " + table_ +
              " has no fast path (run deploy/firewall.sh up --fast-path): " + problem;
    return false;
  }
  auto at = listing.find("elements = {");
  uint32_t mark = at == std::string::npos
                      ? 0
                      : static_cast<uint32_t>(std::strtoul(listing.c_str() + at + 12, nullptr, 0));
  if (mark == 0) {
    problem = "table inet " + table_ + ": set fp_mark holds no mark";
    return false;
  }
  auto group_at = listing.find("log group ");
  int group = group_at == std::string::npos ? -1 : std::atoi(listing.c_str() + group_at + 10);
  if (group != log_group_) {
    refusals_.stop();
    log_group_ = group;
    if (group < 0) {
      log_line(
          "fast_path kernel: fp_refuse logs nothing: refusals at SYN are not in the access log");
    } else if (std::string error = refusals_.start(static_cast<uint16_t>(group),
                                                   [this](const KernelRefusal& r) { refused(r); });
               !error.empty()) {
      log_line("fast_path kernel: refusals at SYN are not in the access log: " + error);
    }
  }
  if (mark != mark_) {
    events_.stop();
    mark_ = mark;
    if (std::string error = events_.start(mark_, [this](const KernelFlow& f) { account(f); });
        !error.empty())
      log_line("fast_path kernel: no access-log lines for kernel-forwarded flows: " + error);
    if (!sysctl_on("/proc/sys/net/netfilter/nf_conntrack_acct"))
      log_line(
          "fast_path kernel: net.netfilter.nf_conntrack_acct is 0: kernel-forwarded flows are "
          "logged with 0 bytes (firewall.sh up --fast-path turns it on)");
  }
  return true;
}

// One netlink batch of this process; with a sandbox that has a set, nft text in the helper
// (after reading back which sandbox objects the table holds).
std::string KernelPath::fill(const KernelSets& next) {
  std::string problem;
  if (!find_table(problem)) return problem;
  if (!next.any_set()) return nft_fill_netlink(next, table_);
  std::string listing;
  if (!(problem = nft_.run("list table inet " + table_ + "\n", &listing)).empty()) return problem;
  return nft_.run(nft_fill(next, table_, listed_objects(listing)));
}

void KernelPath::sync() {
  std::lock_guard lock(mutex_);
  if (stopped_) return;
  auto settings = shared_.settings.load();
  auto snapshot = shared_.store.snapshot();
  // A table from an older firewall.sh has no fp_limit: no limit then, said once per table
  // (no table at all is the fill's to report).
  size_t rules = 0;
  if (!loaded_ && nft_rule_count(table_, "fp_refuse", rules).empty()) {
    bool had = limit_chain_;
    limit_chain_ = nft_rule_count(table_, "fp_limit", rules).empty() && rules > 0;
    if (!limit_chain_ && (had || !limit_said_))
      log_line("fast_path kernel: table inet " + table_ +
               " has no chain fp_limit (firewall.sh older than egressd): kernel-forwarded "
               "connections are not limited per sandbox; re-run firewall.sh up --fast-path");
    limit_said_ = true;
  }
  uint32_t limit = limit_chain_ ? settings->max_connections_per_sandbox : 0;
  KernelSets next =
      compile_kernel_sets(*snapshot, settings->guard, settings->unknown_source,
                          inspected_ports(*settings), loaded_ ? &*loaded_ : nullptr, limit);
  std::string problem;
  bool incremental = loaded_ && same_globals(*loaded_, next);
  bool changed = !incremental;
  if (incremental) {
    // A netlink batch of this process (no ruleset read back); a sandbox with a set (a long
    // allow list) goes through nft text in the helper.
    ChangePlan plan = plan_change(*loaded_, next);
    changed = !plan.empty();
    if (changed)
      problem = plan.uses_sets() ? nft_.run(nft_change(plan, table_)) : nft_apply(plan, table_);
  }
  if (!incremental || !problem.empty()) {
    // A whole fill: the first, after new globals, or after the table changed under us.
    if (!(problem = fill(next)).empty()) {
      loaded_.reset();
      if (problem != last_problem_)
        log_line("fast_path kernel: the proxy decides every connection until this is fixed: " +
                 problem.substr(0, 600));
      last_problem_ = problem;
      return;
    }
    if (!last_problem_.empty() || !loaded_)
      log_line("fast_path kernel: " + std::to_string(next.sandboxes.size()) +
               " sandboxes decided at SYN in table inet " + table_ + " (" +
               std::to_string(next.proxied.size()) + " left to the proxy)");
    last_problem_.clear();
  }
  std::optional<KernelSets> before = std::exchange(loaded_, std::move(next));
  // What the kernel forwards changed only with its table: a change it did not see (a name
  // rule, a sandbox the proxy decides) leaves its flows as allowed as they were.
  if (before && changed) revoke(*before, settings->on_update == OnUpdate::revoke);
}

// The access-log record of a connection the kernel decided, decided again as the proxy would
// decide it now: verdict, reason and rule (the policy may have changed since its SYN).
AccessRecord KernelPath::decided_again(const IpAddress& source, const IpAddress& destination,
                                       uint16_t port) {
  auto settings = shared_.settings.load();
  auto snapshot = shared_.store.snapshot();
  const Sandbox* sandbox = snapshot->find_by_source(source);
  DecisionInput input;
  input.destination = destination;
  input.port = port;
  Decision decision = decide(settings->guard, sandbox ? sandbox->policy.get() : nullptr,
                             settings->unknown_source, input);
  AccessRecord record;
  record.sandbox = sandbox ? sandbox->id : std::string();
  record.src = source.to_string();
  record.dst = destination.to_string();
  record.port = port;
  record.verdict = decision.verdict;
  record.reason = decision.reason;
  record.rule = std::string(decision.rule);
  record.kernel = true;
  return record;
}

// A flow's line carries the id /v1/connections showed for it, if it was listed.
void KernelPath::write(AccessRecord& record, const KernelFlow* flow, const IpAddress& destination) {
  record.id = 0;
  if (flow) {
    std::lock_guard lock(flows_mutex_);
    if (auto at = listed_.find(key_of(*flow)); at != listed_.end()) {
      record.id = at->second;
      listed_.erase(at);
    }
  }
  if (record.id == 0) record.id = shared_.next_serial.fetch_add(1);
  shared_.outcomes.finished(record, destination);
}

std::vector<KernelFlow> KernelPath::live() {
  uint32_t mark = 0;
  {
    std::lock_guard lock(mutex_);
    if (!loaded_ || stopped_) return {};
    mark = mark_;
  }
  auto dumped = conntrack_flows(mark);
  auto* flows = std::get_if<std::vector<KernelFlow>>(&dumped);
  if (!flows) return {};
  std::lock_guard lock(flows_mutex_);
  std::map<FlowKey, uint64_t> listed;
  for (KernelFlow& flow : *flows) {
    FlowKey key = key_of(flow);
    auto at = listed_.find(key);
    flow.serial = at != listed_.end() ? at->second : shared_.next_serial.fetch_add(1);
    listed.emplace(key, flow.serial);
  }
  listed_ = std::move(listed);  // those that ended without a line (a lost event) are forgotten
  return std::move(*flows);
}

namespace {

// The sandbox of `before` whose sources hold `source` (empty: none).
std::string owner_in(const KernelSets& before, const IpAddress& source) {
  for (const auto& sandbox : before.sandboxes)
    for (const AddressRange& range : sandbox->sources)
      if (range.low.family == source.family && range.low.bits <= source.bits &&
          source.bits <= range.high.bits)
        return sandbox->id;
  return {};
}

}  // namespace

// Every kernel-forwarded flow that is still open whose sandbox is gone (deleted, or the source
// is no longer its: closed whatever on_update says, as DELETE closes the proxy's connections)
// and, with `denied_too` (on_update: revoke), every one the policy now denies, loses its
// conntrack entry and gets its line (reason revoked). `before`: what the kernel held, for the
// name of a deleted sandbox.
void KernelPath::revoke(const KernelSets& before, bool denied_too) {
  auto result = conntrack_revoke(mark_, [&](const KernelFlow& flow) {
    AccessRecord record = decided_again(flow.source, flow.destination, flow.port);
    bool orphaned = record.sandbox.empty();
    if (!orphaned && (!denied_too || record.verdict == Verdict::allow)) return false;
    if (orphaned) record.sandbox = owner_in(before, flow.source);
    record.start = flow.start;
    record.verdict = Verdict::deny;
    record.reason = Reason::revoked;
    record.bytes_up = flow.bytes_up;
    record.bytes_down = flow.bytes_down;
    {
      std::lock_guard lock(flows_mutex_);
      if (revoked_.size() > 65536) revoked_.clear();  // destroy events lost: start again
      revoked_.insert(key_of(flow));
    }
    write(record, &flow, flow.destination);
    return true;
  });
  if (auto* problem = std::get_if<std::string>(&result))
    log_line("fast_path kernel: revoking denied flows: " + *problem);
}

// One finished kernel-forwarded flow: its line and counts (a revoked one had its line when it
// was revoked).
void KernelPath::account(const KernelFlow& flow) {
  {
    std::lock_guard lock(flows_mutex_);
    if (revoked_.erase(key_of(flow))) return;
  }
  AccessRecord record = decided_again(flow.source, flow.destination, flow.port);
  if (record.verdict != Verdict::allow) {
    // Denied now, yet never revoked (on_update: keep): it ran as allowed at its SYN, by an
    // address rule (the only kind the kernel decides by); which one is not known any more.
    record.verdict = Verdict::allow;
    record.reason = Reason::allowed_address;
    record.rule.clear();
  }
  record.start = flow.start;
  record.bytes_up = flow.bytes_up;
  record.bytes_down = flow.bytes_down;
  if (flow.start.time_since_epoch().count() && flow.stop >= flow.start)
    record.duration_ms = std::chrono::duration<double, std::milli>(flow.stop - flow.start).count();
  shared_.metrics.bytes_up(static_cast<double>(flow.bytes_up));
  shared_.metrics.bytes_down(static_cast<double>(flow.bytes_down));
  write(record, &flow, flow.destination);
}

// One SYN the kernel refused: its line, counts and denial, as the proxy would have written them.
void KernelPath::refused(const KernelRefusal& refusal) {
  AccessRecord record = decided_again(refusal.source, refusal.destination, refusal.port);
  if (refusal.over_limit) {  // fp_limit's: whatever the policy says, the sandbox was full
    record.verdict = Verdict::deny;
    record.reason = Reason::connection_limit;
    record.rule.clear();
  }
  if (record.verdict == Verdict::allow) return;  // a change since: the kernel has it now
  record.start = std::chrono::system_clock::now();
  write(record, nullptr, refusal.destination);
}

// What the access log could not show since the last tick, counted instead: refusals over
// fp_refuse's log limit (its counter fp_unlogged; a reloaded table starts it at 0 again),
// refusals lost on the NFLOG socket, overruns of the conntrack event socket.
void KernelPath::count_unlogged() {
  uint64_t packets = 0;
  if (nft_counter_packets(table_, "fp_unlogged", packets).empty()) {
    shared_.metrics.kernel_unlogged_refusals(packets >= unlogged_ ? packets - unlogged_ : packets);
    unlogged_ = packets;
  }
  uint64_t lost = refusals_.lost(), overruns = events_.lost();
  shared_.metrics.kernel_unlogged_refusals(lost - refusals_lost_);
  shared_.metrics.kernel_event_overruns(overruns - event_overruns_);
  refusals_lost_ = lost;
  event_overruns_ = overruns;
}

void KernelPath::check() {
  {
    std::lock_guard lock(mutex_);
    if (stopped_) return;
    if (loaded_) {
      count_unlogged();
      // A reload declares fast_path empty; egressd's fill never leaves it so.
      size_t rules = 0;
      std::string problem = nft_rule_count(table_, "fast_path", rules);
      if (problem.empty() && rules > 0) return;
      log_line("fast_path kernel: table inet " + table_ +
               " was replaced (firewall reload?); filling it again");
      loaded_.reset();
    }
  }
  sync();
}

void KernelPath::stop(bool handed_over) {
  std::lock_guard lock(mutex_);
  stopped_ = true;
  events_.stop();
  refusals_.stop();
  if (loaded_ && !handed_over) {
    if (std::string problem = nft_.run(nft_clear(table_)); !problem.empty())
      log_line("fast_path kernel: could not empty fast_path: " + problem);
  }
  loaded_.reset();
}

}  // namespace egressd
