// Load generator and origin for bench/system: plain blocking sockets, one thread per
// connection on the server, so the proxy under test is the only thing that varies.
//   netbench serve ADDR BULK_BYTES            origin on ADDR ports 443, 4443, 9000, 9001, 9002
//       443, 9000: read the first bytes, send BULK_BYTES, close       (bulk)
//       4443, 9001: read the first bytes, send 128 bytes, close       (new-connection rate;
//                   one epoll thread for these, no thread per connection)
//       9002: echo                                                    (idle connections)
//   netbench bulk IP PORT SNI                 one download; prints bytes and seconds
//   netbench rate IP PORT SNI CONC SECONDS    connect, send hello, read to EOF, repeat, with CONC
//                                             in flight from one epoll thread; prints
//                                             connections/s and per-connection p50/p99 in us
//   netbench idle IP PORT SNI COUNT SECONDS   COUNT relayed connections held open
// Every client sends a real TLS ClientHello first (SNI = SNI), so TLS ports are inspected.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "../../tests/support/tls_builder.hpp"

namespace {

using Clock = std::chrono::steady_clock;

sockaddr_storage address_of(const std::string& ip, int port, socklen_t& length) {
  sockaddr_storage storage{};
  if (ip.find(':') != std::string::npos) {
    auto* a = reinterpret_cast<sockaddr_in6*>(&storage);
    a->sin6_family = AF_INET6;
    a->sin6_port = htons(static_cast<uint16_t>(port));
    inet_pton(AF_INET6, ip.c_str(), &a->sin6_addr);
    length = sizeof(sockaddr_in6);
  } else {
    auto* a = reinterpret_cast<sockaddr_in*>(&storage);
    a->sin_family = AF_INET;
    a->sin_port = htons(static_cast<uint16_t>(port));
    inet_pton(AF_INET, ip.c_str(), &a->sin_addr);
    length = sizeof(sockaddr_in);
  }
  return storage;
}

int connect_to(const std::string& ip, int port) {
  socklen_t length;
  sockaddr_storage address = address_of(ip, port, length);
  int fd = socket(address.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  if (connect(fd, reinterpret_cast<sockaddr*>(&address), length) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

std::vector<uint8_t> hello_for(const std::string& sni) {
  return egressd::testing::frame_records(
      egressd::testing::build_handshake(egressd::testing::hello_with_sni(sni)));
}

void serve_connection(int fd, int port, size_t bulk) {
  char buffer[16384];
  if (read(fd, buffer, sizeof(buffer)) <= 0) {
    close(fd);
    return;
  }
  if (port == 9002) {
    write(fd, buffer, 1);
    for (ssize_t n; (n = read(fd, buffer, sizeof(buffer))) > 0;)
      write(fd, buffer, static_cast<size_t>(n));
  } else {
    size_t total = bulk;
    static const std::vector<char> chunk(1 << 20, 'x');  // shared: no per-connection fill
    for (size_t sent = 0; sent < total;) {
      ssize_t n = write(fd, chunk.data(), std::min(chunk.size(), total - sent));
      if (n <= 0) break;
      sent += static_cast<size_t>(n);
    }
    shutdown(fd, SHUT_WR);
    while (read(fd, buffer, sizeof(buffer)) > 0) {
    }
  }
  close(fd);
}

int listen_on(const std::string& ip, int port, int flags) {
  socklen_t length;
  sockaddr_storage address = address_of(ip, port, length);
  int fd = socket(address.ss_family, SOCK_STREAM | SOCK_CLOEXEC | flags, 0);
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  if (bind(fd, reinterpret_cast<sockaddr*>(&address), length) != 0 || listen(fd, 4096) != 0) {
    perror("bind/listen");
    std::exit(1);
  }
  return fd;
}

// Short-answer ports (new-connection rate) on one epoll thread: read the hello, send 128 bytes,
// half-close, close at the client's EOF. No thread per connection, so the origin is not what
// limits the rate (with a thread per connection the direct path at concurrency 32 was half
// as fast as at concurrency 1).
void serve_short(int listener) {
  int epoll = epoll_create1(EPOLL_CLOEXEC);
  epoll_event event{EPOLLIN, {.fd = listener}};
  epoll_ctl(epoll, EPOLL_CTL_ADD, listener, &event);
  static const char answer[128] = {'x'};
  std::vector<char> answered(65536, 0);
  char buffer[16384];
  epoll_event events[256];
  for (;;) {
    int n = epoll_wait(epoll, events, 256, -1);
    for (int e = 0; e < n; ++e) {
      int fd = events[e].data.fd;
      if (fd == listener) {
        for (int client;
             (client = accept4(listener, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0;) {
          epoll_event in{EPOLLIN, {.fd = client}};
          answered[static_cast<size_t>(client)] = 0;
          epoll_ctl(epoll, EPOLL_CTL_ADD, client, &in);
        }
        continue;
      }
      ssize_t r = read(fd, buffer, sizeof(buffer));
      if (r < 0 && errno == EAGAIN) continue;
      if (r > 0 && !answered[static_cast<size_t>(fd)]) {
        answered[static_cast<size_t>(fd)] = 1;
        write(fd, answer, sizeof(answer));
        shutdown(fd, SHUT_WR);
        continue;
      }
      if (r > 0) continue;
      close(fd);  // EOF or error: also leaves the epoll set
    }
  }
}

int serve(const std::string& ip, size_t bulk) {
  std::vector<std::thread> listeners;
  for (int port : {4443, 9001}) {
    listeners.emplace_back(serve_short, listen_on(ip, port, SOCK_NONBLOCK));
  }
  for (int port : {443, 9000, 9002}) {
    listeners.emplace_back([ip, port, bulk] {
      int fd = listen_on(ip, port, 0);
      for (;;) {
        int client = accept4(fd, nullptr, nullptr, SOCK_CLOEXEC);
        if (client < 0) continue;
        std::thread(serve_connection, client, port, bulk).detach();
      }
    });
  }
  std::printf("ready\n");
  std::fflush(stdout);
  for (auto& t : listeners) t.join();
  return 0;
}

// The rate test in one thread with CONC connections in flight (epoll), so the load generator
// does not outnumber a single-threaded proxy for the CPU on a small machine.
struct RateResult {
  std::vector<long> latencies_us;
  long failures = 0;
  double elapsed = 0;
};

RateResult rate_event_loop(const std::string& ip, int port, const std::vector<uint8_t>& hello,
                           int concurrency, double seconds) {
  struct Slot {
    int fd = -1;
    Clock::time_point start;
    bool connected = false;
    size_t got = 0;
  };
  RateResult result;
  std::vector<Slot> slots(static_cast<size_t>(concurrency));
  int epoll = epoll_create1(EPOLL_CLOEXEC);
  socklen_t length;
  sockaddr_storage address = address_of(ip, port, length);
  auto open_slot = [&](size_t i) {
    Slot& slot = slots[i];
    slot = Slot{};
    slot.fd = socket(address.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(slot.fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    slot.start = Clock::now();
    connect(slot.fd, reinterpret_cast<sockaddr*>(&address), length);
    epoll_event event{EPOLLOUT | EPOLLIN, {.u64 = i}};
    epoll_ctl(epoll, EPOLL_CTL_ADD, slot.fd, &event);
  };
  auto close_slot = [&](size_t i, bool ok) {
    Slot& slot = slots[i];
    epoll_ctl(epoll, EPOLL_CTL_DEL, slot.fd, nullptr);
    close(slot.fd);
    if (ok) {
      result.latencies_us.push_back(
          std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - slot.start).count());
    } else {
      ++result.failures;
    }
  };
  auto begin = Clock::now();
  auto deadline =
      begin + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(seconds));
  for (size_t i = 0; i < slots.size(); ++i) open_slot(i);
  std::vector<char> buffer(1 << 16);
  epoll_event events[256];
  while (Clock::now() < deadline) {
    int n = epoll_wait(epoll, events, 256, 100);
    for (int e = 0; e < n; ++e) {
      size_t i = events[e].data.u64;
      Slot& slot = slots[i];
      if (!slot.connected) {
        int error = 0;
        socklen_t size = sizeof(error);
        getsockopt(slot.fd, SOL_SOCKET, SO_ERROR, &error, &size);
        if (error != 0 || !(events[e].events & (EPOLLOUT | EPOLLIN))) {
          close_slot(i, false);
          open_slot(i);
          continue;
        }
        slot.connected = true;
        write(slot.fd, hello.data(), hello.size());
        epoll_event event{EPOLLIN, {.u64 = i}};
        epoll_ctl(epoll, EPOLL_CTL_MOD, slot.fd, &event);
        continue;
      }
      for (;;) {
        ssize_t r = read(slot.fd, buffer.data(), buffer.size());
        if (r > 0) {
          slot.got += static_cast<size_t>(r);
          continue;
        }
        if (r < 0 && errno == EAGAIN) break;
        close_slot(i, r == 0 && slot.got > 0);
        open_slot(i);
        break;
      }
    }
  }
  result.elapsed = std::chrono::duration<double>(Clock::now() - begin).count();
  for (Slot& slot : slots) close(slot.fd);
  close(epoll);
  return result;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) return 2;
  std::string mode = argv[1];
  signal(SIGPIPE, SIG_IGN);
  if (mode == "serve" && argc == 4) return serve(argv[2], std::stoull(argv[3]));
  if (argc < 5) return 2;
  std::string ip = argv[2];
  int port = std::stoi(argv[3]);
  auto hello = hello_for(argv[4]);
  if (mode == "bulk") {
    auto start = Clock::now();
    int fd = connect_to(ip, port);
    if (fd < 0) return 1;
    write(fd, hello.data(), hello.size());
    std::vector<char> buffer(1 << 20);
    size_t got = 0;
    for (ssize_t n; (n = read(fd, buffer.data(), buffer.size())) > 0;)
      got += static_cast<size_t>(n);
    double seconds = std::chrono::duration<double>(Clock::now() - start).count();
    close(fd);
    std::printf("{\"bytes\": %zu, \"seconds\": %.4f}\n", got, seconds);
    return 0;
  }
  if (mode == "rate" && argc == 7) {
    RateResult r = rate_event_loop(ip, port, hello, std::stoi(argv[5]), std::stod(argv[6]));
    std::vector<long>& all = r.latencies_us;
    std::sort(all.begin(), all.end());
    auto pct = [&](double p) {
      return all.empty() ? 0L : all[std::min(all.size() - 1, size_t(p * all.size()))];
    };
    std::printf(
        "{\"connections\": %zu, \"per_second\": %.1f, \"p50_us\": %ld, \"p99_us\": %ld, "
        "\"failures\": %ld}\n",
        all.size(), all.size() / r.elapsed, pct(0.5), pct(0.99), r.failures);
    return 0;
  }
  if (mode == "idle" && argc == 7) {
    int count = std::stoi(argv[5]);
    double seconds = std::stod(argv[6]);
    std::vector<int> fds;
    int ok = 0;
    char byte;
    for (int i = 0; i < count; ++i) {
      int fd = connect_to(ip, port);
      if (fd < 0) continue;
      write(fd, hello.data(), hello.size());
      if (read(fd, &byte, 1) == 1) ++ok;
      fds.push_back(fd);
    }
    std::printf("{\"open\": %d}\n", ok);
    std::fflush(stdout);
    std::this_thread::sleep_for(std::chrono::duration<double>(seconds));
    for (int fd : fds) close(fd);
    return 0;
  }
  return 2;
}
