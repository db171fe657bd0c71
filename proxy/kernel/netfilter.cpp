#include "kernel/netfilter.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <libnetfilter_conntrack/libnetfilter_conntrack.h>
#include <libnetfilter_conntrack/libnetfilter_conntrack_tcp.h>
#include <libnetfilter_log/libnetfilter_log.h>
#include <netinet/in.h>
#include <nftables/libnftables.h>
#include <poll.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <iterator>
#include <utility>
#include <vector>

namespace egressd {

Nft::Nft(std::string helper) : helper_(std::move(helper)) {
  if (!helper_.empty()) return;  // the child has the context
  ctx_ = nft_ctx_new(NFT_CTX_DEFAULT);
  nft_ctx_buffer_output(ctx_);
  nft_ctx_buffer_error(ctx_);
}

Nft::~Nft() {
  if (ctx_) nft_ctx_free(ctx_);
}

std::string Nft::run(const std::string& commands, std::string* output) {
  if (!helper_.empty()) return run_in_helper(commands, output);
  int rc = nft_run_cmd_from_buffer(ctx_, commands.c_str());
  if (output) *output = nft_ctx_get_output_buffer(ctx_);
  if (rc == 0) return {};
  std::string error = nft_ctx_get_error_buffer(ctx_);
  return error.empty() ? "nft refused the transaction" : error;
}

// The child gets the commands on a pipe and answers on two; all three are served with poll,
// so a large answer (a listed table) never blocks the commands still being written.
std::string Nft::run_in_helper(const std::string& commands, std::string* output) {
  int in[2], out[2], err[2];
  if (::pipe2(in, O_CLOEXEC) != 0) return std::string("nft helper: ") + std::strerror(errno);
  if (::pipe2(out, O_CLOEXEC) != 0 || ::pipe2(err, O_CLOEXEC) != 0) {
    ::close(in[0]), ::close(in[1]);
    return std::string("nft helper: ") + std::strerror(errno);
  }
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, in[0], 0);
  posix_spawn_file_actions_adddup2(&actions, out[1], 1);
  posix_spawn_file_actions_adddup2(&actions, err[1], 2);
  char* argv[] = {helper_.data(), const_cast<char*>("--nft-run"), nullptr};
  pid_t child = -1;
  int spawned = posix_spawn(&child, helper_.c_str(), &actions, nullptr, argv, environ);
  posix_spawn_file_actions_destroy(&actions);
  ::close(in[0]), ::close(out[1]), ::close(err[1]);
  if (spawned != 0) {
    ::close(in[1]), ::close(out[0]), ::close(err[0]);
    return "nft helper " + helper_ + ": " + std::strerror(spawned);
  }
  std::string answer, errors;
  size_t written = 0;
  int to_child = in[1];
  if (commands.empty()) ::close(std::exchange(to_child, -1));
  for (bool open_out = true, open_err = true; open_out || open_err;) {
    pollfd p[3] = {{out[0], POLLIN, 0}, {err[0], POLLIN, 0}, {to_child, POLLOUT, 0}};
    if (::poll(p, to_child >= 0 ? 3 : 2, -1) < 0 && errno != EINTR) break;
    char buffer[65536];
    for (int i = 0; i < 2; ++i) {
      if (!p[i].revents || !(i ? open_err : open_out)) continue;
      ssize_t n = ::read(p[i].fd, buffer, sizeof(buffer));
      if (n > 0)
        (i ? errors : answer).append(buffer, size_t(n));
      else if (n == 0 || errno != EINTR)
        (i ? open_err : open_out) = false;
    }
    if (to_child >= 0 && p[2].revents) {
      ssize_t n = ::write(to_child, commands.data() + written, commands.size() - written);
      if (n > 0) written += size_t(n);
      if (n < 0 && errno != EINTR && errno != EAGAIN) written = commands.size();
      if (written == commands.size()) ::close(std::exchange(to_child, -1));
    }
  }
  if (to_child >= 0) ::close(to_child);
  ::close(out[0]), ::close(err[0]);
  int status = 0;
  while (::waitpid(child, &status, 0) < 0 && errno == EINTR) {
  }
  if (output) *output = std::move(answer);
  if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return {};
  return errors.empty() ? "nft helper failed" : errors;
}

int nft_run_stdio() {
  std::string commands((std::istreambuf_iterator<char>(std::cin)),
                       std::istreambuf_iterator<char>());
  Nft nft;
  std::string output;
  std::string problem = nft.run(commands, &output);
  std::fwrite(output.data(), 1, output.size(), stdout);
  std::fwrite(problem.data(), 1, problem.size(), stderr);
  return problem.empty() ? 0 : 1;
}

namespace {

std::chrono::system_clock::time_point from_ns(uint64_t ns) {
  return std::chrono::system_clock::time_point(
      std::chrono::duration_cast<std::chrono::system_clock::duration>(
          std::chrono::nanoseconds(ns)));
}

// A tracked TCP connection with `mark` as a KernelFlow; false for anything else.
// (mark 0: any)
bool read_flow(const nf_conntrack* ct, uint32_t mark, KernelFlow& flow) {
  if (nfct_get_attr_u8(ct, ATTR_ORIG_L4PROTO) != IPPROTO_TCP) return false;
  if ((nfct_get_attr_u32(ct, ATTR_MARK) & mark) != mark) return false;
  uint8_t family = nfct_get_attr_u8(ct, ATTR_ORIG_L3PROTO);
  if (family == AF_INET) {
    flow.source = IpAddress{Family::v4, ntohl(nfct_get_attr_u32(ct, ATTR_ORIG_IPV4_SRC))};
    flow.destination = IpAddress{Family::v4, ntohl(nfct_get_attr_u32(ct, ATTR_ORIG_IPV4_DST))};
  } else if (family == AF_INET6) {
    auto v6 = [](const void* bytes) {
      uint128 bits = 0;
      for (int i = 0; i < 16; ++i) bits = (bits << 8) | static_cast<const uint8_t*>(bytes)[i];
      return IpAddress{Family::v6, bits};
    };
    flow.source = v6(nfct_get_attr(ct, ATTR_ORIG_IPV6_SRC));
    flow.destination = v6(nfct_get_attr(ct, ATTR_ORIG_IPV6_DST));
  } else {
    return false;
  }
  flow.source_port = ntohs(nfct_get_attr_u16(ct, ATTR_ORIG_PORT_SRC));
  flow.port = ntohs(nfct_get_attr_u16(ct, ATTR_ORIG_PORT_DST));
  if (nfct_attr_is_set(ct, ATTR_ORIG_COUNTER_BYTES) > 0)
    flow.bytes_up = nfct_get_attr_u64(ct, ATTR_ORIG_COUNTER_BYTES);
  if (nfct_attr_is_set(ct, ATTR_REPL_COUNTER_BYTES) > 0)
    flow.bytes_down = nfct_get_attr_u64(ct, ATTR_REPL_COUNTER_BYTES);
  if (nfct_attr_is_set(ct, ATTR_TIMESTAMP_START) > 0)
    flow.start = from_ns(nfct_get_attr_u64(ct, ATTR_TIMESTAMP_START));
  if (nfct_attr_is_set(ct, ATTR_TIMESTAMP_STOP) > 0)
    flow.stop = from_ns(nfct_get_attr_u64(ct, ATTR_TIMESTAMP_STOP));
  if (nfct_attr_is_set(ct, ATTR_ID) > 0) flow.conntrack_id = nfct_get_attr_u32(ct, ATTR_ID);
  if (nfct_attr_is_set(ct, ATTR_TCP_STATE) > 0) {
    uint8_t state = nfct_get_attr_u8(ct, ATTR_TCP_STATE);
    flow.closed = state == TCP_CONNTRACK_TIME_WAIT || state == TCP_CONNTRACK_CLOSE;
  }
  return true;
}

// A query object naming only `ct`'s original tuple (what the kernel looks entries up by).
nf_conntrack* tuple_of(const nf_conntrack* ct) {
  nf_conntrack* tuple = nfct_new();
  if (tuple) nfct_copy(tuple, ct, NFCT_CP_ORIG);
  return tuple;
}

struct Handle {
  nfct_handle* h;
  explicit Handle(unsigned groups) : h(nfct_open(CONNTRACK, groups)) {}
  ~Handle() {
    if (h) nfct_close(h);
  }
};

struct DumpState {
  uint32_t mark;
  const std::function<bool(const KernelFlow&)>* revoke;
  std::vector<nf_conntrack*> picked;
};

int on_dumped(enum nf_conntrack_msg_type, struct nf_conntrack* ct, void* data) {
  auto* state = static_cast<DumpState*>(data);
  KernelFlow flow;
  if (read_flow(ct, state->mark, flow) && !flow.closed && (*state->revoke)(flow))
    state->picked.push_back(tuple_of(ct));
  return NFCT_CB_CONTINUE;
}

struct EventState {
  ConntrackEvents* events;
  uint32_t mark;
  nfct_handle* query;  // deletes what closed
};

// A flow is reported from its destroy event, which carries its counters and times. One that
// closed (TIME_WAIT, CLOSE) is deleted at once, so it is reported then, not once conntrack's
// TIME_WAIT (fp_close4/6: 1 s, then whenever its garbage collection passes) is over.
int on_event(enum nf_conntrack_msg_type type, struct nf_conntrack* ct, void* data) {
  auto* state = static_cast<EventState*>(data);
  KernelFlow flow;
  if (!read_flow(ct, state->mark, flow)) return NFCT_CB_CONTINUE;
  if (type == NFCT_T_DESTROY) {
    state->events->deliver(flow);
  } else if (flow.closed) {
    if (nf_conntrack* tuple = tuple_of(ct)) {
      nfct_query(state->query, NFCT_Q_DESTROY, tuple);
      nfct_destroy(tuple);
    }
  }
  return NFCT_CB_CONTINUE;
}

}  // namespace

std::variant<size_t, std::string> conntrack_revoke(
    uint32_t mark, const std::function<bool(const KernelFlow&)>& revoke) {
  Handle dump(0), remove(0);
  if (!dump.h || !remove.h) return std::string("conntrack: ") + std::strerror(errno);
  DumpState state{mark, &revoke, {}};
  nfct_callback_register(dump.h, NFCT_T_ALL, on_dumped, &state);
  nfct_filter_dump* filter = nfct_filter_dump_create();
  nfct_filter_dump_mark by_mark{mark, mark};
  nfct_filter_dump_set_attr(filter, NFCT_FILTER_DUMP_MARK, &by_mark);
  // No family: one walk of the table for both (each walk costs ~2 ms here however few
  // entries it holds).
  std::string problem;
  if (nfct_query(dump.h, NFCT_Q_DUMP_FILTER, filter) < 0)
    problem = std::string("conntrack dump: ") + std::strerror(errno);
  nfct_filter_dump_destroy(filter);
  size_t deleted = 0;
  for (nf_conntrack* ct : state.picked) {
    if (!ct) continue;
    // ENOENT: it ended meanwhile, which is as good.
    if (nfct_query(remove.h, NFCT_Q_DESTROY, ct) == 0 || errno == ENOENT)
      ++deleted;
    else if (problem.empty())
      problem = std::string("conntrack delete: ") + std::strerror(errno);
    nfct_destroy(ct);
  }
  if (!problem.empty()) return problem;
  return deleted;
}

std::variant<std::vector<KernelFlow>, std::string> conntrack_flows(uint32_t mark) {
  std::vector<KernelFlow> flows;
  auto listed = conntrack_revoke(mark, [&](const KernelFlow& flow) {
    flows.push_back(flow);
    return false;  // none deleted: a listing
  });
  if (auto* problem = std::get_if<std::string>(&listed)) return *problem;
  return flows;
}

namespace {

// A socket for conntrack's `groups` events of TCP connections with `mark`, filtered in the
// kernel (a BPF program), and with `closing`, only those in TIME_WAIT or CLOSE. Non-blocking.
nfct_handle* event_socket(unsigned groups, uint32_t mark, bool closing, std::string& problem) {
  nfct_handle* handle = nfct_open(CONNTRACK, groups);
  if (!handle) {
    problem = std::string("conntrack events: ") + std::strerror(errno);
    return nullptr;
  }
  nfct_filter* filter = nfct_filter_create();
  nfct_filter_add_attr_u32(filter, NFCT_FILTER_L4PROTO, IPPROTO_TCP);
  nfct_filter_dump_mark by_mark{mark, mark};
  nfct_filter_add_attr(filter, NFCT_FILTER_MARK, &by_mark);
  if (closing) {
    for (uint16_t state : {uint16_t(TCP_CONNTRACK_TIME_WAIT), uint16_t(TCP_CONNTRACK_CLOSE)}) {
      nfct_filter_proto closed{IPPROTO_TCP, state};
      nfct_filter_add_attr(filter, NFCT_FILTER_L4PROTO_STATE, &closed);
    }
  }
  int attached = nfct_filter_attach(nfct_fd(handle), filter);
  nfct_filter_destroy(filter);
  if (attached < 0) {
    problem = std::string("conntrack event filter: ") + std::strerror(errno);
    nfct_close(handle);
    return nullptr;
  }
  int fd = nfct_fd(handle);
  int buffer = 8 << 20;  // bursts of short connections ending together
  if (::setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &buffer, sizeof(buffer)) != 0)
    ::setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &buffer, sizeof(buffer));
  ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK);
  return handle;
}

}  // namespace

// Two sockets: updates, of which only the closing ones wake this thread (the kernel filters
// the five or so others of each connection), and every destroy.
std::string ConntrackEvents::start(uint32_t mark, std::function<void(const KernelFlow&)> finished) {
  done_ = false;
  mark_ = mark;
  finished_ = std::move(finished);
  std::string problem;
  handle_ = event_socket(NF_NETLINK_CONNTRACK_DESTROY, mark, false, problem);
  if (handle_) closing_ = event_socket(NF_NETLINK_CONNTRACK_UPDATE, mark, true, problem);
  if (!closing_) {
    if (handle_) nfct_close(std::exchange(handle_, nullptr));
    return problem;
  }
  thread_ = std::thread([this] {
    Handle query(0);
    EventState state{this, mark_, query.h};
    nfct_callback_register(handle_, NFCT_T_ALL, on_event, &state);
    nfct_callback_register(closing_, NFCT_T_ALL, on_event, &state);
    pollfd p[2] = {{nfct_fd(closing_), POLLIN, 0}, {nfct_fd(handle_), POLLIN, 0}};
    while (!done_.load()) {
      if (::poll(p, 2, 200) <= 0) continue;
      // Each read until its socket is empty (EAGAIN); ENOBUFS: the kernel dropped events.
      if (p[0].revents && nfct_catch(closing_) < 0 && errno == ENOBUFS) lost_.fetch_add(1);
      if (p[1].revents && nfct_catch(handle_) < 0 && errno == ENOBUFS) lost_.fetch_add(1);
    }
  });
  return {};
}

void ConntrackEvents::stop() {
  done_ = true;
  if (thread_.joinable()) thread_.join();
  if (handle_) nfct_close(std::exchange(handle_, nullptr));
  if (closing_) nfct_close(std::exchange(closing_, nullptr));
}

namespace {

int on_logged(struct nflog_g_handle*, struct nfgenmsg*, struct nflog_data* data, void* self) {
  auto* log = static_cast<RefusalLog*>(self);
  uint32_t number = 0;
  if (nflog_get_seq(data, &number) == 0) log->sequence(number);
  char* payload = nullptr;
  int size = nflog_get_payload(data, &payload);
  KernelRefusal refusal;
  if (size > 0 &&
      parse_tcp_packet(reinterpret_cast<const uint8_t*>(payload), size_t(size), refusal)) {
    const char* prefix = nflog_get_prefix(data);
    refusal.over_limit = prefix && std::strcmp(prefix, "connection_limit") == 0;
    log->deliver(refusal);
  }
  return 0;
}

}  // namespace

void RefusalLog::sequence(uint32_t number) {
  if (last_sequence_) lost_.fetch_add(uint32_t(number - *last_sequence_ - 1));  // wraps at 2^32
  last_sequence_ = number;
}

std::string RefusalLog::start(uint16_t group, std::function<void(const KernelRefusal&)> refused) {
  done_ = false;
  refused_ = std::move(refused);
  handle_ = nflog_open();
  if (!handle_) return std::string("nflog: ") + std::strerror(errno);
  nflog_bind_pf(handle_, AF_INET);  // a no-op on current kernels, needed on old ones
  nflog_bind_pf(handle_, AF_INET6);
  nflog_g_handle* bound = nflog_bind_group(handle_, group);
  if (!bound) {
    std::string problem = "nflog group " + std::to_string(group) + ": " + std::strerror(errno);
    nflog_close(std::exchange(handle_, nullptr));
    return problem;
  }
  nflog_set_mode(bound, NFULNL_COPY_PACKET, 80);  // the IP and TCP headers are enough
  nflog_set_qthresh(bound, 1);  // each at once (the kernel batches for up to 1 s otherwise)
  nflog_set_flags(bound, NFULNL_CFG_F_SEQ);  // numbered: what the socket dropped shows as gaps
  last_sequence_.reset();
  nflog_callback_register(bound, on_logged, this);
  int fd = nflog_fd(handle_);
  int buffer = 4 << 20;
  if (::setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &buffer, sizeof(buffer)) != 0)
    ::setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &buffer, sizeof(buffer));
  thread_ = std::thread([this, fd, bound] {
    std::vector<char> buffer(1 << 16);
    while (!done_.load()) {
      pollfd p{fd, POLLIN, 0};
      if (::poll(&p, 1, 200) != 1) continue;
      ssize_t n = ::recv(fd, buffer.data(), buffer.size(), MSG_DONTWAIT);
      if (n > 0) nflog_handle_packet(handle_, buffer.data(), static_cast<int>(n));
    }
    nflog_unbind_group(bound);
  });
  return {};
}

void RefusalLog::stop() {
  done_ = true;
  if (thread_.joinable()) thread_.join();
  if (handle_) nflog_close(std::exchange(handle_, nullptr));
}

}  // namespace egressd
