#include "dns/resolver.hpp"

#include <arpa/inet.h>
#include <netdb.h>

#include <climits>
#include <mutex>

namespace egressd {
namespace {

void init_library_once() {
  static std::once_flag once;
  std::call_once(once, [] { ares_library_init(ARES_LIB_INIT_ALL); });
}

DnsStatus status_of(int code) {
  switch (code) {
    case ARES_SUCCESS:
      return DnsStatus::ok;
    case ARES_ENOTFOUND:
    case ARES_ENODATA:
      return DnsStatus::nxdomain;
    case ARES_ETIMEOUT:
      return DnsStatus::timeout;
    default:
      return DnsStatus::error;
  }
}

}  // namespace

struct AresChannel::Watcher {
  Watcher(asio::io_context& io, ares_socket_t fd) : descriptor(io, fd), fd(fd) {}
  ~Watcher() { descriptor.release(); }  // c-ares owns and closes the socket
  asio::posix::stream_descriptor descriptor;
  ares_socket_t fd;
  bool want_read = false, want_write = false;
  bool reading = false, writing = false;
};

AresChannel::AresChannel(asio::io_context& io, const ResolverOptions& options)
    : io_(io), timer_(io) {
  init_library_once();
  ares_options opts{};
  opts.sock_state_cb = &AresChannel::on_socket_state;
  opts.sock_state_cb_data = this;
  opts.timeout = static_cast<int>(options.timeout_ms);
  opts.tries = static_cast<int>(options.tries);
  char dns_only[] = "b";  // never /etc/hosts of the proxy host: only the configured resolvers
  opts.lookups = dns_only;
  // Names are looked up exactly as the policy matched them: never completed with the host's
  // resolv.conf search list (a bare "db" must not become "db.internal.corp").
  opts.flags = ARES_FLAG_NOSEARCH;
  opts.ndots = 0;
  int mask = ARES_OPT_SOCK_STATE_CB | ARES_OPT_TIMEOUTMS | ARES_OPT_TRIES | ARES_OPT_LOOKUPS |
             ARES_OPT_FLAGS | ARES_OPT_NDOTS;
  if (int code = ares_init_options(&channel_, &opts, mask); code != ARES_SUCCESS) {
    error_ = std::string("c-ares init: ") + ares_strerror(code);
    channel_ = nullptr;
    return;
  }
  if (!options.servers.empty()) {
    std::string csv;
    for (const auto& server : options.servers) csv += (csv.empty() ? "" : ",") + server;
    if (int code = ares_set_servers_ports_csv(channel_, csv.c_str()); code != ARES_SUCCESS) {
      error_ = std::string("c-ares servers \"") + csv + "\": " + ares_strerror(code);
    }
  }
}

AresChannel::~AresChannel() {
  if (channel_) ares_destroy(channel_);  // calls back on_socket_state for every socket
  watchers_.clear();
}

void AresChannel::on_socket_state(void* data, ares_socket_t fd, int readable, int writable) {
  auto* self = static_cast<AresChannel*>(data);
  if (!readable && !writable) {
    self->watchers_.erase(fd);
    return;
  }
  auto& watcher = self->watchers_[fd];
  if (!watcher) watcher = std::make_shared<Watcher>(self->io_, fd);
  watcher->want_read = readable;
  watcher->want_write = writable;
  self->arm(watcher);
}

void AresChannel::arm(const std::shared_ptr<Watcher>& watcher) {
  for (bool write : {false, true}) {
    bool wanted = write ? watcher->want_write : watcher->want_read;
    bool& waiting = write ? watcher->writing : watcher->reading;
    if (!wanted || waiting) continue;
    waiting = true;
    std::weak_ptr<Watcher> weak = watcher;
    watcher->descriptor.async_wait(write ? asio::posix::stream_descriptor::wait_write
                                         : asio::posix::stream_descriptor::wait_read,
                                   [this, weak, write](const asio::error_code& e) {
                                     auto w = weak.lock();
                                     if (!w) return;
                                     (write ? w->writing : w->reading) = false;
                                     if (e) return;
                                     ares_process_fd(channel_, write ? ARES_SOCKET_BAD : w->fd,
                                                     write ? w->fd : ARES_SOCKET_BAD);
                                     if (auto again = weak.lock()) arm(again);
                                     reset_timer();
                                   });
  }
}

void AresChannel::reset_timer() {
  timeval tv{};
  if (!ares_timeout(channel_, nullptr, &tv)) {
    timer_.cancel();
    return;
  }
  timer_.expires_after(std::chrono::seconds(tv.tv_sec) + std::chrono::microseconds(tv.tv_usec));
  timer_.async_wait([this](const asio::error_code& e) {
    if (e) return;
    ares_process_fd(channel_, ARES_SOCKET_BAD, ARES_SOCKET_BAD);
    reset_timer();
  });
}

void AresChannel::resolve(const std::string& name, Callback done) {
  if (!channel_) {
    done(DnsAnswer{DnsStatus::error, {}, 0});
    return;
  }
  ares_addrinfo_hints hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_flags = ARES_AI_NOSORT;
  auto callback = std::make_unique<Callback>(std::move(done));  // c-ares owns it until the callback
  // An absolute name ("name."): the trailing dot tells c-ares not to apply any search rules.
  std::string absolute = name.ends_with('.') ? name : name + ".";
  ares_getaddrinfo(
      channel_, absolute.c_str(), nullptr, &hints,
      [](void* arg, int status, int, ares_addrinfo* result) {
        std::unique_ptr<Callback> done(static_cast<Callback*>(arg));
        DnsAnswer answer{status_of(status), {}, 0};
        if (result) {
          unsigned ttl = UINT_MAX;
          for (ares_addrinfo_node* node = result->nodes; node; node = node->ai_next) {
            if (auto address = IpAddress::from_sockaddr(node->ai_addr)) {
              if (std::find(answer.addresses.begin(), answer.addresses.end(), *address) ==
                  answer.addresses.end()) {
                answer.addresses.push_back(*address);
              }
              ttl = std::min(ttl, static_cast<unsigned>(std::max(node->ai_ttl, 0)));
            }
          }
          answer.ttl_seconds = answer.addresses.empty() ? 0 : ttl;
          ares_freeaddrinfo(result);
        }
        if (answer.status == DnsStatus::ok && answer.addresses.empty())
          answer.status = DnsStatus::nxdomain;
        (*done)(std::move(answer));
      },
      callback.release());
  reset_timer();
}

void AresChannel::send(std::span<const uint8_t> query, MessageCallback done) {
  if (!channel_ || query.empty()) {
    done(ARES_ECONNREFUSED, {});
    return;
  }
  auto callback = std::make_unique<MessageCallback>(std::move(done));
  ares_send(
      channel_, query.data(), static_cast<int>(query.size()),
      [](void* arg, int status, int, unsigned char* answer, int length) {
        std::unique_ptr<MessageCallback> done(static_cast<MessageCallback*>(arg));
        std::vector<uint8_t> message;
        if (status == ARES_SUCCESS && answer && length > 0) message.assign(answer, answer + length);
        (*done)(status, std::move(message));
      },
      callback.release());
  reset_timer();
}

}  // namespace egressd
