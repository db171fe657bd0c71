// A measured prototype for issue 8/8 of wave 2: does a kernel relay (BPF sockmap) for inspected
// connections, after the decision, beat egressd's splice relay? A transparent relay in one epoll
// thread, on the TPROXY port of bench/system's topology: it reads the client's first bytes (the
// ClientHello egressd would inspect), connects to the original destination, sends them on, and
// relays the rest in one of two ways:
//   splice   pipes and splice(2), as egressd does (proxy/net/relay.cpp), edge-triggered epoll
//   sockmap  both sockets in a BPF sockmap whose sk_skb verdict program (sockmap_relay.bpf.c)
//            redirects every received byte to the peer socket's egress; user space only waits
//            for each side's FIN to shut the other down (half-close), then closes both
// Same accept, connect and close path in both modes, so only the relay differs.
// bench/system/sockmap.py measures both against the direct path; not part of egressd.
//
// usage: sockmap_relay (splice | sockmap) BPF_OBJECT PORT
// Prints "ready" once listening; runs until killed.
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <fcntl.h>
#include <linux/sockios.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <set>
#include <string>
#include <unordered_map>
#include <vector>

namespace {

constexpr size_t kPipeBytes = 1 << 16;

struct Side {
  int fd = -1;
  int pipe[2] = {-1, -1};  // splice mode: what was read from this side, not yet sent on
  size_t pending = 0;
  bool eof = false;     // this side sent FIN
  bool passed = false;  // ... and the peer was shut down for writing
  uint64_t cookie = 0;
  int quiet_checks = 0;  // sockmap mode: looks at the peer's empty send queue since the FIN
};

struct Connection {
  Side client, upstream;
  std::vector<uint8_t> hello;
  bool connected = false;
  uint32_t slot = 0;  // sockmap mode: slots 2*slot (client) and 2*slot+1 (upstream)
};

bool use_sockmap = false;
int socks_map = -1, peer_map = -1;
int epoll_fd = -1;
std::unordered_map<int, Connection*> by_fd;
std::vector<uint32_t> free_slots;
std::set<Connection*> fin_waiting;  // sockmap mode: a FIN seen, not yet passed on

void watch(int fd, uint32_t events, int op = EPOLL_CTL_ADD) {
  epoll_event event{events, {.fd = fd}};
  epoll_ctl(epoll_fd, op, fd, &event);
}

void finish(Connection* c) {
  for (Side* side : {&c->client, &c->upstream}) {
    if (use_sockmap && side->cookie) bpf_map_delete_elem(peer_map, &side->cookie);
    for (int& p : side->pipe)
      if (p >= 0) close(p);
    if (side->fd >= 0) {
      by_fd.erase(side->fd);
      close(side->fd);  // leaves the sockmap with it
    }
  }
  if (use_sockmap) free_slots.push_back(c->slot);
  fin_waiting.erase(c);
  delete c;
}

// splice mode: moves what `from` has to `to` until one would block; false once both ended.
bool pump(Connection* c, Side& from, Side& to) {
  for (;;) {
    while (from.pending > 0) {
      ssize_t out = splice(from.pipe[0], nullptr, to.fd, nullptr, from.pending,
                           SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
      if (out > 0) {
        from.pending -= static_cast<size_t>(out);
        continue;
      }
      if (out < 0 && errno == EAGAIN) return true;
      return false;
    }
    if (from.eof) return true;
    ssize_t in = splice(from.fd, nullptr, from.pipe[1], nullptr, kPipeBytes,
                        SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
    if (in > 0) {
      from.pending = static_cast<size_t>(in);
      continue;
    }
    if (in == 0) {
      from.eof = true;
      shutdown(to.fd, SHUT_WR);
      return !(c->client.eof && c->upstream.eof);
    }
    return errno == EAGAIN;
  }
}

// sockmap mode: the kernel moves the bytes; a readable event here is a FIN (or bytes that
// arrived before the socket joined the map, passed on by hand). The FIN cannot be passed on at
// once: bytes the kernel redirected may still wait in the peer's psock queue, which user space
// cannot see, and a FIN sent before them cuts the stream (measured: a 256 MiB transfer ended
// after 52 MB). So the FIN waits until the peer's send queue has been empty for 5 checks
// 1 ms apart: a heuristic for this measurement, not a
// guarantee (see bench/RESULTS.md).
bool drain(Connection* c, Side& from, Side& to) {
  char buffer[16384];
  for (;;) {
    ssize_t in = recv(from.fd, buffer, sizeof(buffer), MSG_DONTWAIT);
    if (in > 0) {
      if (send(to.fd, buffer, static_cast<size_t>(in), MSG_NOSIGNAL) != in) return false;
      continue;
    }
    if (in == 0) {
      if (!from.eof) {
        from.eof = true;
        fin_waiting.insert(c);
      }
      return true;
    }
    return errno == EAGAIN;
  }
}

// Passes on the FINs whose peers look drained; true when the connection is over.
bool pass_fins(Connection* c) {
  for (auto [from, to] :
       {std::pair(&c->client, &c->upstream), std::pair(&c->upstream, &c->client)}) {
    if (!from->eof || from->passed) continue;
    int queued = 0;
    ioctl(to->fd, SIOCOUTQ, &queued);
    if (queued != 0) {
      from->quiet_checks = 0;
    } else if (++from->quiet_checks >= 5) {
      shutdown(to->fd, SHUT_WR);
      from->passed = true;
    }
  }
  return c->client.passed && c->upstream.passed;
}

bool join_sockmap(Connection* c) {
  uint32_t slots[2] = {2 * c->slot, 2 * c->slot + 1};
  Side* sides[2] = {&c->client, &c->upstream};
  for (int i = 0; i < 2; ++i) {
    socklen_t size = sizeof(uint64_t);
    if (getsockopt(sides[i]->fd, SOL_SOCKET, SO_COOKIE, &sides[i]->cookie, &size) != 0)
      return false;
    uint64_t fd = static_cast<uint64_t>(sides[i]->fd);
    if (bpf_map_update_elem(socks_map, &slots[i], &fd, BPF_ANY) != 0) return false;
  }
  for (int i = 0; i < 2; ++i)
    if (bpf_map_update_elem(peer_map, &sides[i]->cookie, &slots[1 - i], BPF_ANY) != 0) return false;
  return true;
}

void on_connected(Connection* c) {
  int error = 0;
  socklen_t size = sizeof(error);
  getsockopt(c->upstream.fd, SOL_SOCKET, SO_ERROR, &error, &size);
  if (error != 0) return finish(c);
  c->connected = true;
  // sockmap: both sockets join before the hello leaves, so no answer arrives outside the map.
  if (use_sockmap && !join_sockmap(c)) {
    std::perror("sockmap");
    return finish(c);
  }
  if (send(c->upstream.fd, c->hello.data(), c->hello.size(), MSG_NOSIGNAL) !=
      static_cast<ssize_t>(c->hello.size()))
    return finish(c);
  c->hello.clear();
  if (!use_sockmap)
    for (Side* side : {&c->client, &c->upstream})
      if (pipe2(side->pipe, O_NONBLOCK | O_CLOEXEC) != 0) return finish(c);
  watch(c->upstream.fd, EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET, EPOLL_CTL_MOD);
  watch(c->client.fd, EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET, EPOLL_CTL_MOD);
}

void on_hello(Connection* c) {
  uint8_t buffer[16384];
  ssize_t in = recv(c->client.fd, buffer, sizeof(buffer), MSG_DONTWAIT);
  if (in <= 0) {
    if (in < 0 && errno == EAGAIN) return;
    return finish(c);
  }
  c->hello.assign(buffer, buffer + in);
  sockaddr_storage original{};
  socklen_t length = sizeof(original);
  getsockname(c->client.fd, reinterpret_cast<sockaddr*>(&original), &length);
  c->upstream.fd = socket(original.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  int one = 1;
  setsockopt(c->upstream.fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  by_fd[c->upstream.fd] = c;
  if (connect(c->upstream.fd, reinterpret_cast<sockaddr*>(&original), length) != 0 &&
      errno != EINPROGRESS)
    return finish(c);
  watch(c->upstream.fd, EPOLLOUT | EPOLLET);
}

void on_event(int fd, uint32_t events) {
  auto found = by_fd.find(fd);
  if (found == by_fd.end()) return;
  Connection* c = found->second;
  if (c->upstream.fd < 0) return on_hello(c);
  if (!c->connected) {
    if (fd == c->upstream.fd) on_connected(c);
    return;
  }
  (void)events;
  bool go_on = use_sockmap ? drain(c, c->client, c->upstream) && drain(c, c->upstream, c->client)
                           : pump(c, c->client, c->upstream) && pump(c, c->upstream, c->client);
  if (!go_on) finish(c);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 4 || (std::string(argv[1]) != "splice" && std::string(argv[1]) != "sockmap")) {
    std::fprintf(stderr, "usage: sockmap_relay (splice | sockmap) BPF_OBJECT PORT\n");
    return 2;
  }
  use_sockmap = std::string(argv[1]) == "sockmap";
  if (use_sockmap) {
    bpf_object* object = bpf_object__open_file(argv[2], nullptr);
    if (!object || bpf_object__load(object) != 0) {
      std::fprintf(stderr, "sockmap_relay: cannot load %s\n", argv[2]);
      return 1;
    }
    socks_map = bpf_object__find_map_fd_by_name(object, "socks");
    peer_map = bpf_object__find_map_fd_by_name(object, "peer_of");
    int program = bpf_program__fd(bpf_object__find_program_by_name(object, "relay"));
    if (bpf_prog_attach(program, socks_map, BPF_SK_SKB_VERDICT, 0) != 0) {
      std::perror("sockmap_relay: attach");
      return 1;
    }
    for (uint32_t slot = 32767; slot != UINT32_MAX; --slot) free_slots.push_back(slot);
  }
  int listener = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  int one = 1;
  setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  setsockopt(listener, SOL_IP, IP_TRANSPARENT, &one, sizeof(one));
  setsockopt(listener, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(static_cast<uint16_t>(std::stoi(argv[3])));
  if (bind(listener, reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0 ||
      listen(listener, 4096) != 0) {
    std::perror("sockmap_relay: listen");
    return 1;
  }
  epoll_fd = epoll_create1(EPOLL_CLOEXEC);
  watch(listener, EPOLLIN);
  std::printf("ready\n");
  std::fflush(stdout);
  epoll_event events[256];
  for (;;) {
    int n = epoll_wait(epoll_fd, events, 256, fin_waiting.empty() ? -1 : 1);
    for (auto it = fin_waiting.begin(); it != fin_waiting.end();) {
      Connection* c = *it++;
      if (pass_fins(c)) finish(c);
    }
    for (int i = 0; i < n; ++i) {
      if (events[i].data.fd != listener) {
        on_event(events[i].data.fd, events[i].events);
        continue;
      }
      for (;;) {
        int fd = accept4(listener, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) break;
        if (use_sockmap && free_slots.empty()) {
          close(fd);
          continue;
        }
        auto* c = new Connection;
        c->client.fd = fd;
        if (use_sockmap) {
          c->slot = free_slots.back();
          free_slots.pop_back();
        }
        by_fd[fd] = c;
        watch(fd, EPOLLIN | EPOLLET);
        on_hello(c);  // the hello usually came with the handshake's last ACK
      }
    }
  }
}
