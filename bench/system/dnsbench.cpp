// DNS load generator for bench/system/dns.py: one epoll thread keeps CONC UDP queries in
// flight (one socket each) to IP:PORT, cycling over the names given, for SECONDS; prints one
// JSON line: answered queries per second, timeouts, and per-query latency p50/p99 in us.
//   dnsbench IP PORT CONC SECONDS NAME...
// Queries are written with ldns (A, recursion desired), as the filter reads them.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

// clang-format off
#include <ldns/ldns.h>
// clang-format on

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;

std::vector<uint8_t> query_for(const char* name, uint16_t id) {
  ldns_pkt* packet =
      ldns_pkt_query_new(ldns_dname_new_frm_str(name), LDNS_RR_TYPE_A, LDNS_RR_CLASS_IN, LDNS_RD);
  ldns_pkt_set_id(packet, id);
  uint8_t* buffer = nullptr;
  size_t size = 0;
  if (ldns_pkt2wire(&buffer, packet, &size) != LDNS_STATUS_OK) std::abort();
  std::vector<uint8_t> wire(buffer, buffer + size);
  std::free(buffer);
  ldns_pkt_free(packet);
  return wire;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 6) {
    std::fprintf(stderr, "usage: dnsbench IP PORT CONC SECONDS NAME...\n");
    return 2;
  }
  sockaddr_in server{};
  server.sin_family = AF_INET;
  server.sin_port = htons(static_cast<uint16_t>(std::atoi(argv[2])));
  if (inet_pton(AF_INET, argv[1], &server.sin_addr) != 1) return 2;
  int concurrency = std::max(1, std::atoi(argv[3]));
  double seconds = std::atof(argv[4]);
  std::vector<const char*> names(argv + 5, argv + argc);

  int epoll = epoll_create1(0);
  struct Slot {
    int fd;
    uint16_t id;
    Clock::time_point sent;
  };
  std::vector<Slot> slots(static_cast<size_t>(concurrency));
  std::vector<double> latencies;
  latencies.reserve(1 << 20);
  size_t next_name = 0, timeouts = 0;
  uint16_t next_id = 1;
  auto send_one = [&](Slot& slot) {
    slot.id = next_id++;
    std::vector<uint8_t> wire = query_for(names[next_name++ % names.size()], slot.id);
    slot.sent = Clock::now();
    ::send(slot.fd, wire.data(), wire.size(), 0);
  };
  for (size_t i = 0; i < slots.size(); ++i) {
    slots[i].fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);
    if (connect(slots[i].fd, reinterpret_cast<sockaddr*>(&server), sizeof(server)) != 0) return 1;
    epoll_event event{};
    event.events = EPOLLIN;
    event.data.u64 = i;
    epoll_ctl(epoll, EPOLL_CTL_ADD, slots[i].fd, &event);
    send_one(slots[i]);
  }
  auto start = Clock::now();
  auto end =
      start + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(seconds));
  std::vector<epoll_event> events(256);
  uint8_t buffer[4096];
  while (Clock::now() < end) {
    int n = epoll_wait(epoll, events.data(), static_cast<int>(events.size()), 50);
    auto now = Clock::now();
    for (int e = 0; e < n; ++e) {
      Slot& slot = slots[events[e].data.u64];
      ssize_t got = ::recv(slot.fd, buffer, sizeof(buffer), 0);
      if (got < 12) continue;
      if ((buffer[0] << 8 | buffer[1]) != slot.id) continue;  // a late answer to a timed-out query
      latencies.push_back(std::chrono::duration<double, std::micro>(now - slot.sent).count());
      send_one(slot);
    }
    for (Slot& slot : slots) {  // a lost query is sent again after a second
      if (now - slot.sent > std::chrono::seconds(1)) {
        ++timeouts;
        send_one(slot);
      }
    }
  }
  double elapsed = std::chrono::duration<double>(Clock::now() - start).count();
  std::sort(latencies.begin(), latencies.end());
  auto percentile = [&](double p) {
    return latencies.empty() ? 0.0 : latencies[static_cast<size_t>(p * (latencies.size() - 1))];
  };
  std::printf(
      "{\"qps\": %.0f, \"answered\": %zu, \"timeouts\": %zu, \"p50_us\": %.1f, \"p99_us\": %.1f}\n",
      static_cast<double>(latencies.size()) / elapsed, latencies.size(), timeouts, percentile(0.5),
      percentile(0.99));
  return 0;
}
