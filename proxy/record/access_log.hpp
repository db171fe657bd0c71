#pragma once
// One JSON line per finished connection (DESIGN.md fields), to stdout or a file. Lines are
// buffered and flushed by the server's timer, so logging never costs a syscall per connection.
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "core/reason.hpp"

namespace egressd {

struct AccessRecord {
  uint64_t id = 0;  // the connection's id in /v1/connections; 0: none (a DNS query)
  std::chrono::system_clock::time_point start{};  // when it was accepted; epoch: unknown
  std::optional<double> connect_ms;               // time to connect upstream, when it did
  std::string sandbox;
  std::string src;
  std::string dst;
  uint16_t port = 0;
  const char* proto = "tcp";
  std::string name;
  Verdict verdict = Verdict::deny;
  Reason reason = Reason::default_deny;
  std::string rule;
  uint64_t bytes_up = 0;
  uint64_t bytes_down = 0;
  double duration_ms = 0;
  bool ech = false;
  bool intercepted = false;  // DESIGN.md "Request transforms": egressd terminated TLS / edited
  bool kernel = false;  // DESIGN.md "Kernel fast path": forwarded by the kernel, from conntrack
  std::string dialed;   // where egressd connected, when it differs from dst
  std::string via;      // the gateway (dedicated egress) it left through
  std::optional<Reason> would_deny;  // audit mode: the refusal it would have been
  // proto "dns": the query type and what the answer gave (addresses, CNAME targets, types).
  std::string qtype;
  std::vector<std::string> answers;
};

class AccessLog {
 public:
  // "-" = stdout; otherwise a file opened for append. False (with errno) when it cannot open.
  bool open(const std::string& target);
  void write(const AccessRecord& record);
  void flush();
  bool reopen();  // after logrotate moved the file (SIGUSR1)
  ~AccessLog();

 private:
  std::mutex mutex_;
  void write_pending();
  std::string target_;
  FILE* file_ = nullptr;  // only its descriptor is written (write_pending)
  std::string pending_;   // whole lines not written yet
};

std::string access_log_line(const AccessRecord& record);

}  // namespace egressd
