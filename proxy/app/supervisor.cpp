#include "app/supervisor.hpp"

#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

#include <cstddef>
#include <string>

#include "core/log.hpp"

namespace egressd {

namespace {

constexpr int kRelayed[] = {SIGTERM, SIGINT, SIGHUP, SIGUSR1, SIGUSR2, SIGCHLD};

int exit_code_of(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  return 128 + (WIFSIGNALED(status) ? WTERMSIG(status) : 0);
}

// The child's notifications come here (an abstract unix socket named for this process) and
// go on to systemd from the main process, so the unit keeps NotifyAccess=main and an old
// egressd left draining after a restart can never speak for it. -1 outside systemd.
int notify_relay(std::string& name) {
  if (!std::getenv("NOTIFY_SOCKET")) return -1;
  int fd = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) return -1;
  name = "egressd-supervisor-" + std::to_string(::getpid());
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  std::memcpy(address.sun_path + 1, name.data(), name.size());
  int on = 1;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&address),
             offsetof(sockaddr_un, sun_path) + 1 + name.size()) != 0 ||
      ::setsockopt(fd, SOL_SOCKET, SO_PASSCRED, &on, sizeof on) != 0) {
    ::close(fd);
    return -1;
  }
  name = "@" + name;
  return fd;
}

// Passes on what the child sent; anything from another process is dropped.
void relay_notifications(int fd, pid_t child) {
  for (;;) {
    char payload[4096];
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(ucred))];
    iovec io{payload, sizeof payload - 1};
    msghdr message{};
    message.msg_iov = &io;
    message.msg_iovlen = 1;
    message.msg_control = control;
    message.msg_controllen = sizeof control;
    ssize_t n = ::recvmsg(fd, &message, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
    if (n < 0) return;
    const cmsghdr* header = CMSG_FIRSTHDR(&message);
    ucred sender{};
    if (header && header->cmsg_level == SOL_SOCKET && header->cmsg_type == SCM_CREDENTIALS)
      std::memcpy(&sender, CMSG_DATA(header), sizeof sender);
    if (sender.pid != child || (message.msg_flags & MSG_TRUNC)) continue;
    payload[n] = '\0';
    sd_notify(0, payload);
  }
}

}  // namespace

int run_supervisor(const std::vector<std::string>& arguments) {
  sigset_t relayed;
  sigemptyset(&relayed);
  for (int s : kRelayed) sigaddset(&relayed, s);
  sigset_t previous;
  sigprocmask(SIG_BLOCK, &relayed, &previous);
  std::string relay_name;
  const int relay = notify_relay(relay_name);
  const int signals = ::signalfd(-1, &relayed, SFD_CLOEXEC);
  if (signals < 0) {
    log_line(std::string("--supervise: signalfd: ") + std::strerror(errno));
    return 1;
  }
  const pid_t supervisor = ::getpid();
  const pid_t child = ::fork();
  if (child < 0) {
    log_line(std::string("--supervise: cannot start egressd: ") + std::strerror(errno));
    return 1;
  }
  if (child == 0) {
    // The supervisor gone (killed, or left for a restart) is SIGUSR2: serve until taken over.
    ::prctl(PR_SET_PDEATHSIG, SIGUSR2);
    if (::getppid() != supervisor) ::raise(SIGUSR2);  // it died before the line above
    sigprocmask(SIG_SETMASK, &previous, nullptr);
    if (relay >= 0) ::setenv("NOTIFY_SOCKET", relay_name.c_str(), 1);
    std::vector<std::string> child_arguments = {"egressd"};
    child_arguments.insert(child_arguments.end(), arguments.begin(), arguments.end());
    child_arguments.push_back("--takeover-if-running");
    std::vector<char*> argv;
    for (auto& argument : child_arguments) argv.push_back(argument.data());
    argv.push_back(nullptr);
    ::execv("/proc/self/exe", argv.data());
    log_line(std::string("--supervise: cannot run /proc/self/exe: ") + std::strerror(errno));
    ::_exit(127);
  }
  log_line("supervising egressd pid " + std::to_string(child));
  for (;;) {
    pollfd ready[2] = {{signals, POLLIN, 0}, {relay, POLLIN, 0}};
    if (::poll(ready, relay >= 0 ? 2 : 1, -1) < 0) continue;  // EINTR
    if (relay >= 0 && (ready[1].revents & POLLIN)) relay_notifications(relay, child);
    if (!(ready[0].revents & POLLIN)) continue;
    signalfd_siginfo info{};
    if (::read(signals, &info, sizeof info) != sizeof info) continue;
    int signal_number = static_cast<int>(info.ssi_signo);
    switch (signal_number) {
      case SIGCHLD: {
        int status = 0;
        if (::waitpid(child, &status, WNOHANG) == child) return exit_code_of(status);
        break;
      }
      case SIGHUP:
      case SIGUSR1:
        ::kill(child, signal_number);
        break;
      case SIGUSR2:
        log_line("restarting: egressd pid " + std::to_string(child) +
                 " serves until the next one takes over, then drains");
        ::kill(child, SIGUSR2);
        return 0;
      default:  // SIGTERM, SIGINT: a stop; the child's STOPPING=1 still goes on
        ::kill(child, SIGTERM);
        for (;;) {
          int status = 0;
          if (::waitpid(child, &status, WNOHANG) == child) return exit_code_of(status);
          pollfd waiting[2] = {{signals, POLLIN, 0}, {relay, POLLIN, 0}};
          ::poll(waiting, relay >= 0 ? 2 : 1, 1000);
          if (relay >= 0) relay_notifications(relay, child);
          signalfd_siginfo ignored{};
          if (waiting[0].revents & POLLIN) (void)!::read(signals, &ignored, sizeof ignored);
        }
    }
  }
}

}  // namespace egressd
