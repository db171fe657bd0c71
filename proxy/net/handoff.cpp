#include "net/handoff.hpp"

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace egressd {
namespace {

constexpr size_t kMaxFds = 250;  // SCM_MAX_FD is 253

bool wait_readable(int socket, std::chrono::milliseconds timeout) {
  pollfd p{socket, POLLIN, 0};
  int n;
  do {
    n = ::poll(&p, 1, static_cast<int>(timeout.count()));
  } while (n < 0 && errno == EINTR);
  return n == 1;
}

}  // namespace

bool write_all(int socket, const std::string& text) {
  for (size_t sent = 0; sent < text.size();) {
    ssize_t n = ::send(socket, text.data() + sent, text.size() - sent, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    sent += static_cast<size_t>(n);
  }
  return true;
}

std::string read_line(int socket, std::chrono::milliseconds timeout) {
  std::string line;
  auto deadline = std::chrono::steady_clock::now() + timeout;
  char c = 0;
  while (line.size() < 4096) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0 || !wait_readable(socket, left)) return {};
    ssize_t n = ::recv(socket, &c, 1, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return {};
    if (c == '\n') return line;
    line += c;
  }
  return {};
}

std::string send_with_fds(int socket, const std::string& text, const std::vector<int>& fds) {
  if (fds.size() > kMaxFds) return "too many descriptors to hand over";
  std::vector<char> control(CMSG_SPACE(sizeof(int) * fds.size()));
  iovec io{const_cast<char*>(text.data()), text.size()};
  msghdr message{};
  message.msg_iov = &io;
  message.msg_iovlen = 1;
  if (!fds.empty()) {
    message.msg_control = control.data();
    message.msg_controllen = control.size();
    cmsghdr* header = CMSG_FIRSTHDR(&message);
    header->cmsg_level = SOL_SOCKET;
    header->cmsg_type = SCM_RIGHTS;
    header->cmsg_len = CMSG_LEN(sizeof(int) * fds.size());
    std::memcpy(CMSG_DATA(header), fds.data(), sizeof(int) * fds.size());
  }
  ssize_t n;
  do {
    n = ::sendmsg(socket, &message, MSG_NOSIGNAL);
  } while (n < 0 && errno == EINTR);
  if (n < 0) return std::string("sendmsg: ") + std::strerror(errno);
  // The descriptors went with the first byte; the rest of the text, if any, follows.
  if (static_cast<size_t>(n) < text.size() && !write_all(socket, text.substr(n)))
    return "send: connection lost";
  return {};
}

std::string receive_with_fds(int socket, std::string& text, std::vector<int>& fds,
                             std::chrono::milliseconds timeout) {
  text.clear();
  fds.clear();
  std::vector<char> control(CMSG_SPACE(sizeof(int) * kMaxFds));
  char buffer[65536];
  iovec io{buffer, sizeof(buffer)};
  msghdr message{};
  message.msg_iov = &io;
  message.msg_iovlen = 1;
  message.msg_control = control.data();
  message.msg_controllen = control.size();
  if (!wait_readable(socket, timeout)) return "no answer from the running egressd";
  ssize_t n;
  do {
    n = ::recvmsg(socket, &message, MSG_CMSG_CLOEXEC);
  } while (n < 0 && errno == EINTR);
  if (n <= 0) return "the running egressd closed the handoff";
  for (cmsghdr* header = CMSG_FIRSTHDR(&message); header; header = CMSG_NXTHDR(&message, header)) {
    if (header->cmsg_level != SOL_SOCKET || header->cmsg_type != SCM_RIGHTS) continue;
    size_t count = (header->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    const int* received = reinterpret_cast<const int*>(CMSG_DATA(header));
    fds.assign(received, received + count);
  }
  if (message.msg_flags & MSG_CTRUNC) {
    for (int fd : fds) ::close(fd);
    fds.clear();
    return "descriptors truncated";
  }
  text.assign(buffer, static_cast<size_t>(n));
  // The text is one line; whatever did not come with the descriptors follows on the stream.
  while (text.empty() || text.back() != '\n') {
    std::string rest = read_line(socket, timeout);
    if (rest.empty()) break;
    text += rest + "\n";
  }
  return {};
}

int connect_unix(const std::string& path) {
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  if (path.size() >= sizeof(address.sun_path)) {
    errno = ENAMETOOLONG;
    return -1;
  }
  std::strcpy(address.sun_path, path.c_str());
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  if (::connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0) {
    int saved = errno;
    ::close(fd);
    errno = saved;
    return -1;
  }
  return fd;
}

}  // namespace egressd
