#pragma once
// A tiny authoritative DNS server on 127.0.0.1 for tests: A/AAAA from a table with a given TTL,
// NXDOMAIN otherwise, and a switch to drop every query (a server that is down). Counts queries.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace egressd::testing {

class TestDnsServer {
 public:
  struct Record {
    std::vector<std::string> v4, v6;
    uint32_t ttl = 60;
  };

  TestDnsServer() {
    fd_ = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    bind(fd_, reinterpret_cast<sockaddr*>(&address), sizeof(address));
    socklen_t length = sizeof(address);
    getsockname(fd_, reinterpret_cast<sockaddr*>(&address), &length);
    port_ = ntohs(address.sin_port);
    thread_ = std::thread([this] { serve(); });
  }
  ~TestDnsServer() {
    stop_ = true;
    thread_.join();
    close(fd_);
  }
  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }
  void set(const std::string& name, Record record) {
    std::lock_guard lock(mutex_);
    records_[name] = std::move(record);
  }
  void drop_all(bool drop) { drop_ = drop; }
  int queries() const { return queries_; }

 private:
  void serve() {
    while (!stop_) {
      pollfd p{fd_, POLLIN, 0};
      if (poll(&p, 1, 50) != 1) continue;
      uint8_t query[512];
      sockaddr_in peer{};
      socklen_t peer_length = sizeof(peer);
      ssize_t n =
          recvfrom(fd_, query, sizeof(query), 0, reinterpret_cast<sockaddr*>(&peer), &peer_length);
      if (n < 17) continue;
      ++queries_;
      if (drop_) continue;
      // Question: labels from offset 12, then qtype, qclass.
      std::string name;
      size_t at = 12;
      while (at < static_cast<size_t>(n) && query[at] != 0) {
        if (!name.empty()) name += '.';
        name.append(reinterpret_cast<char*>(query + at + 1), query[at]);
        at += query[at] + 1;
      }
      at += 1;
      if (at + 4 > static_cast<size_t>(n)) continue;
      uint16_t qtype = static_cast<uint16_t>(query[at] << 8 | query[at + 1]);
      size_t question_end = at + 4;
      std::vector<uint8_t> reply(query, query + question_end);
      reply[2] = 0x84 | (query[2] & 1);  // QR, AA, RD copied
      reply[3] = 0x80;
      reply[6] = reply[7] = reply[8] = reply[9] = reply[10] = reply[11] = 0;
      Record record;
      bool known;
      {
        std::lock_guard lock(mutex_);
        auto found = records_.find(name);
        known = found != records_.end();
        if (known) record = found->second;
      }
      if (!known) {
        reply[3] |= 3;  // NXDOMAIN
      } else {
        const auto& list = qtype == 28 ? record.v6 : record.v4;
        int family = qtype == 28 ? AF_INET6 : AF_INET;
        uint16_t count = 0;
        for (const auto& text : list) {
          uint8_t rdata[16];
          if (inet_pton(family, text.c_str(), rdata) != 1) continue;
          size_t size = family == AF_INET6 ? 16 : 4;
          uint8_t head[] = {0xc0,
                            0x0c,
                            static_cast<uint8_t>(qtype >> 8),
                            static_cast<uint8_t>(qtype),
                            0,
                            1,
                            static_cast<uint8_t>(record.ttl >> 24),
                            static_cast<uint8_t>(record.ttl >> 16),
                            static_cast<uint8_t>(record.ttl >> 8),
                            static_cast<uint8_t>(record.ttl),
                            0,
                            static_cast<uint8_t>(size)};
          reply.insert(reply.end(), head, head + sizeof(head));
          reply.insert(reply.end(), rdata, rdata + size);
          ++count;
        }
        reply[7] = static_cast<uint8_t>(count);
      }
      sendto(fd_, reply.data(), reply.size(), 0, reinterpret_cast<sockaddr*>(&peer), peer_length);
    }
  }

  int fd_ = -1;
  uint16_t port_ = 0;
  std::thread thread_;
  std::atomic<bool> stop_{false}, drop_{false};
  std::atomic<int> queries_{0};
  std::mutex mutex_;
  std::map<std::string, Record> records_;
};

}  // namespace egressd::testing
