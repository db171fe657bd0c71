#include "app/kernel_path.hpp"

#include <fstream>

#include "core/log.hpp"

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

bool KernelPath::loaded() const {
  std::lock_guard lock(mutex_);
  return loaded_.has_value();
}

// The table firewall.sh --fast-path made, and its mark.
bool KernelPath::find_table(std::string& problem) {
  std::string listing;
  problem = nft_.run("list set inet " + table_ + " fp_mark\n", &listing);
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
  std::string refuse;
  nft_.run("list chain inet " + table_ + " fp_refuse\n", &refuse);
  auto group_at = refuse.find("log group ");
  int group = group_at == std::string::npos ? -1 : std::atoi(refuse.c_str() + group_at + 10);
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

void KernelPath::sync() {
  std::lock_guard lock(mutex_);
  if (stopped_) return;
  auto settings = shared_.settings.load();
  auto snapshot = shared_.store.snapshot();
  KernelSets next = compile_kernel_sets(*snapshot, settings->guard, settings->unknown_source,
                                        inspected_ports(*settings), loaded_ ? &*loaded_ : nullptr);
  std::string problem;
  bool incremental = loaded_ && same_globals(*loaded_, next);
  if (incremental) {
    std::string change = nft_change(*loaded_, next, table_);
    problem = change.empty() ? std::string() : nft_.run(change);
  }
  if (!incremental || !problem.empty()) {
    // A whole fill: the first, after new globals, or after the table changed under us.
    std::string listing;
    if (!find_table(problem) ||
        !(problem = nft_.run("list table inet " + table_ + "\n", &listing)).empty() ||
        !(problem = nft_.run(nft_fill(next, table_, listed_objects(listing)))).empty()) {
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
  bool had = loaded_.has_value();
  loaded_ = std::move(next);
  if (had && settings->on_update == OnUpdate::revoke) revoke(*loaded_);
}

// Every kernel-forwarded flow is decided again as the proxy would decide it now; the denied
// ones lose their conntrack entry.
void KernelPath::revoke(const KernelSets& next) {
  auto settings = shared_.settings.load();
  auto snapshot = shared_.store.snapshot();
  auto result = conntrack_revoke(mark_, [&](const KernelFlow& flow) {
    const Sandbox* sandbox = snapshot->find_by_source(flow.source);
    DecisionInput input;
    input.destination = flow.destination;
    input.port = flow.port;
    Decision decision = decide(settings->guard, sandbox ? sandbox->policy.get() : nullptr,
                               settings->unknown_source, input);
    if (decision.verdict == Verdict::allow) return false;
    AccessRecord record;
    record.id = shared_.next_serial.fetch_add(1);
    record.start = flow.start;
    record.sandbox = sandbox ? sandbox->id : std::string();
    record.src = flow.source.to_string();
    record.dst = flow.destination.to_string();
    record.port = flow.port;
    record.verdict = Verdict::deny;
    record.reason = Reason::revoked;
    record.rule = std::string(decision.rule);
    record.bytes_up = flow.bytes_up;
    record.bytes_down = flow.bytes_down;
    record.kernel = true;
    shared_.outcomes.finished(record, flow.destination);
    return true;
  });
  if (auto* problem = std::get_if<std::string>(&result))
    log_line("fast_path kernel: revoking denied flows: " + *problem);
}

// One finished kernel-forwarded flow: its line and counts, decided again for reason and rule
// (the policy may have changed since its SYN; a revoked flow was logged when it was revoked).
void KernelPath::account(const KernelFlow& flow) {
  auto settings = shared_.settings.load();
  auto snapshot = shared_.store.snapshot();
  const Sandbox* sandbox = snapshot->find_by_source(flow.source);
  DecisionInput input;
  input.destination = flow.destination;
  input.port = flow.port;
  Decision decision = decide(settings->guard, sandbox ? sandbox->policy.get() : nullptr,
                             settings->unknown_source, input);
  if (decision.verdict != Verdict::allow) return;
  AccessRecord record;
  record.id = shared_.next_serial.fetch_add(1);
  record.start = flow.start;
  record.sandbox = sandbox ? sandbox->id : std::string();
  record.src = flow.source.to_string();
  record.dst = flow.destination.to_string();
  record.port = flow.port;
  record.verdict = Verdict::allow;
  record.reason = decision.reason;
  record.rule = std::string(decision.rule);
  record.bytes_up = flow.bytes_up;
  record.bytes_down = flow.bytes_down;
  if (flow.start.time_since_epoch().count() && flow.stop >= flow.start)
    record.duration_ms = std::chrono::duration<double, std::milli>(flow.stop - flow.start).count();
  record.kernel = true;
  shared_.metrics.bytes_up(static_cast<double>(flow.bytes_up));
  shared_.metrics.bytes_down(static_cast<double>(flow.bytes_down));
  shared_.outcomes.finished(record, flow.destination);
}

// One SYN the kernel refused: its line, counts and denial, as the proxy would have written
// them (decided again for reason and rule).
void KernelPath::refused(const KernelRefusal& refusal) {
  auto settings = shared_.settings.load();
  auto snapshot = shared_.store.snapshot();
  const Sandbox* sandbox = snapshot->find_by_source(refusal.source);
  DecisionInput input;
  input.destination = refusal.destination;
  input.port = refusal.port;
  Decision decision = decide(settings->guard, sandbox ? sandbox->policy.get() : nullptr,
                             settings->unknown_source, input);
  if (decision.verdict == Verdict::allow) return;  // a change since: the kernel has it now
  AccessRecord record;
  record.id = shared_.next_serial.fetch_add(1);
  record.start = std::chrono::system_clock::now();
  record.sandbox = sandbox ? sandbox->id : std::string();
  record.src = refusal.source.to_string();
  record.dst = refusal.destination.to_string();
  record.port = refusal.port;
  record.verdict = Verdict::deny;
  record.reason = decision.reason;
  record.rule = std::string(decision.rule);
  record.kernel = true;
  shared_.outcomes.finished(record, refusal.destination);
}

void KernelPath::check() {
  {
    std::lock_guard lock(mutex_);
    if (stopped_) return;
    if (loaded_) {
      std::string listing;
      std::string problem = nft_.run("list chain inet " + table_ + " fast_path\n", &listing);
      if (problem.empty() && listing.find("fp_by_source4") != std::string::npos) return;
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
