#include "app/server.hpp"

#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <sys/resource.h>
#include <systemd/sd-daemon.h>

#include <poll.h>
#include <sys/un.h>
#include <unistd.h>

#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/experimental/as_tuple.hpp>
#include <asio/signal_set.hpp>
#include <asio/steady_timer.hpp>
#include <asio/use_awaitable.hpp>
#include <chrono>
#include <future>
#include <iostream>
#include <list>
#include <map>
#include <set>
#include <thread>

#include "app/daemon.hpp"
#include "app/kernel_path.hpp"
#include "control/api.hpp"
#include "control/control_server.hpp"
#include "control/state_dir.hpp"
#include "core/log.hpp"
#include "net/handoff.hpp"
#include "net/listener.hpp"
#include "session/dns_server.hpp"
#include "session/session.hpp"
#include "util/asio_tokens.hpp"

namespace egressd {
namespace {

using asio::ip::tcp;

// The sockets a --takeover received, by what they listen on; each is taken once.
struct Inherited {
  std::multimap<std::string, int> tproxy;          // listen.tproxy entry -> fd
  std::map<std::string, std::pair<int, int>> dns;  // "host:port" -> (UDP, TCP)
  int control = -1;

  int take_control() { return std::exchange(control, -1); }
  int take_tproxy(const std::string& address) {
    auto found = tproxy.find(address);
    if (found == tproxy.end()) return -1;
    int fd = found->second;
    tproxy.erase(found);
    return fd;
  }
  std::pair<std::string, int> take_any_tproxy() {
    if (tproxy.empty()) return {"", -1};
    auto first = *tproxy.begin();
    tproxy.erase(tproxy.begin());
    return first;
  }
  std::pair<int, int> take_dns(const std::string& address) {
    auto host_port = parse_host_port(address);
    if (!host_port) return {-1, -1};
    std::string label = host_port->host.find(':') != std::string::npos
                            ? "[" + host_port->host + "]:" + std::to_string(host_port->port)
                            : host_port->host + ":" + std::to_string(host_port->port);
    auto found = dns.find(label);
    if (found == dns.end()) return {-1, -1};
    auto fds = found->second;
    dns.erase(found);
    return fds;
  }
  void close_rest() {
    for (auto& [address, fds] : dns) {
      ::close(fds.first);
      ::close(fds.second);
    }
    dns.clear();
    for (auto& [address, fd] : tproxy) ::close(fd);
    tproxy.clear();
    if (control >= 0) ::close(std::exchange(control, -1));
  }
};

// The new process's side of the handoff (net/handoff.hpp): asks, receives, keeps the socket
// to say "ready" on later. An error message, or empty.
// With `if_running`, nobody listening on `path` is not an error: handoff stays -1.
std::string take_over(const std::string& path, Takeover mode, int& handoff, Inherited& inherited) {
  handoff = connect_unix(path);
  if (handoff < 0 && mode == Takeover::if_running && (errno == ENOENT || errno == ECONNREFUSED)) {
    log_line("no egressd is running on " + path + " to take over from; starting fresh");
    return {};
  }
  if (handoff < 0)
    return "cannot reach the running egressd at " + path + ": " + std::strerror(errno) +
           " (--takeover replaces a running egressd; start without it otherwise)";
  if (!write_all(handoff, "takeover\n")) return "the running egressd closed the handoff";
  std::string text;
  std::vector<int> fds;
  if (auto problem = receive_with_fds(handoff, text, fds, std::chrono::seconds(15));
      !problem.empty())
    return problem;
  auto description = nlohmann::json::parse(text, nullptr, false);
  auto fd_at = [&](const nlohmann::json& index) {
    return index.is_number_unsigned() && index.get<size_t>() < fds.size() ? fds[index.get<size_t>()]
                                                                          : -1;
  };
  if (!description.is_object()) {
    for (int fd : fds) ::close(fd);
    return "the running egressd's handoff is not understood";
  }
  for (const auto& entry : description.value("tproxy", nlohmann::json::array()))
    if (int fd = fd_at(entry.value("fd", nlohmann::json())); fd >= 0)
      inherited.tproxy.emplace(entry.value("address", ""), fd);
  for (const auto& entry : description.value("dns", nlohmann::json::array())) {
    int udp = fd_at(entry.value("udp", nlohmann::json()));
    int tcp = fd_at(entry.value("tcp", nlohmann::json()));
    if (udp >= 0 && tcp >= 0) inherited.dns[entry.value("address", "")] = {udp, tcp};
  }
  inherited.control = fd_at(description.value("control", nlohmann::json()));
  log_line("taking over from egressd pid " + description.value("pid", nlohmann::json()).dump() +
           ": " + std::to_string(fds.size()) + " listening sockets");
  return {};
}

// The running process's side: a unix socket beside the control socket (0600); each client
// is handed to `handle`, which returns true once the sockets are handed over (then it stops).
class TakeoverListener {
 public:
  TakeoverListener(std::string path, std::function<bool(int)> handle)
      : path_(std::move(path)), handle_(std::move(handle)) {}
  ~TakeoverListener() { stop(false); }

  std::string start() {
    sockaddr_un address{};
    address.sun_family = AF_UNIX;
    if (path_.size() >= sizeof(address.sun_path)) return "path too long";
    std::strcpy(address.sun_path, path_.c_str());
    fd_ = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ::unlink(path_.c_str());  // an old process's, or stale: its handoff is over
    mode_t previous = ::umask(0177);
    bool ok = ::bind(fd_, reinterpret_cast<sockaddr*>(&address), sizeof(address)) == 0 &&
              ::listen(fd_, 4) == 0;
    ::umask(previous);
    if (!ok) {
      std::string problem = std::strerror(errno);
      ::close(std::exchange(fd_, -1));
      return problem;
    }
    thread_ = std::thread([this] {
      while (!done_) {
        pollfd p{fd_, POLLIN, 0};
        if (::poll(&p, 1, 200) != 1) continue;
        int client = ::accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
        if (client < 0) continue;
        std::string request = read_line(client, std::chrono::seconds(5));
        bool handed = request == "takeover" && handle_(client);
        ::close(client);
        if (handed) break;
      }
    });
    return {};
  }
  void stop(bool unlink_path) {
    done_ = true;
    if (thread_.joinable()) thread_.join();
    if (fd_ >= 0) ::close(std::exchange(fd_, -1));
    if (unlink_path) ::unlink(path_.c_str());
  }

 private:
  std::string path_;
  std::function<bool(int)> handle_;
  int fd_ = -1;
  std::atomic<bool> done_{false};
  std::thread thread_;
};

// Accepts until the acceptor is closed. EMFILE/ENFILE back off (counted) instead of spinning.
asio::awaitable<void> accept_loop(Worker& worker, tcp::acceptor& acceptor) {
  auto backoff = std::chrono::milliseconds(10);
  for (;;) {
    tcp::socket socket(worker.io);
    tcp::endpoint peer;  // from accept itself: no getpeername per connection
    auto [error] = co_await acceptor.async_accept(socket, peer, use_nothrow);
    if (!error) {
      backoff = std::chrono::milliseconds(10);
      asio::co_spawn(worker.io, run_session(worker.context, std::move(socket), peer),
                     asio::detached);
      continue;
    }
    if (error == asio::error::operation_aborted || !acceptor.is_open()) co_return;
    worker.shared.metrics.accept_error(error.value());
    if (error.value() == EMFILE || error.value() == ENFILE || error.value() == ENOBUFS ||
        error.value() == ENOMEM) {
      asio::steady_timer pause(worker.io, backoff);
      co_await pause.async_wait(use_nothrow);
      backoff = std::min(backoff * 2, std::chrono::milliseconds(1000));
    }
  }
}

// systemd notifications, until this process stops speaking for the unit (after its supervisor
// left for a restart, the next egressd does).
std::atomic<bool> notify_systemd{true};
void notify(const std::string& state) {
  if (notify_systemd.load()) sd_notify(0, state.c_str());
}

void raise_fd_limit() {
  rlimit limit{};
  if (getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur < limit.rlim_max) {
    limit.rlim_cur = limit.rlim_max;
    setrlimit(RLIMIT_NOFILE, &limit);
  }
}

}  // namespace

int run_server(Config config, Takeover takeover) {
  const auto drain = std::chrono::seconds(config.drain_s);
  raise_fd_limit();
  signal(SIGPIPE, SIG_IGN);
  // --takeover: the running egressd's listening sockets, asked for before the state is read
  // (it pauses its control API first, so every write it acknowledged is on disk by then).
  Inherited inherited;
  int handoff = -1;
  std::string takeover_path = config.listen.control + ".takeover";
  if (takeover != Takeover::none) {
    std::string problem = take_over(takeover_path, takeover, handoff, inherited);
    if (!problem.empty()) {
      log_line("--takeover: " + problem);
      return 1;
    }
  }
  ResolverOptions resolver{config.dns.servers, config.dns.timeout_ms, 2};
  DnsCacheLimits cache_limits{config.dns.min_ttl_s, config.dns.max_ttl_s, config.dns.negative_ttl_s,
                              config.dns.cache_size};
  Shared shared(Settings::from(config), cache_limits, resolver);
  for (const std::string& entry : shared.settings.load()->guard.lifted()) {
    log_line("guard.allow lifts the built-in guard entry " + entry +
             ": sandboxes may reach it where their policy allows");
  }
  if (!shared.access_log.open(config.access_log)) {
    log_line("cannot open access log " + config.access_log + ": " + std::strerror(errno));
    return 1;
  }
  StateDir state(config.state_dir);
  if (std::string problem = state.prepare(); !problem.empty()) {
    log_line("state_dir: " + problem);
    return 1;
  }
  // Request transforms: the interception CA and the secrets key live in intercept.ca_dir
  // (default state_dir/ca), apart from the state files; without either directory, in memory.
  std::string ca_dir = !config.intercept.ca_dir.empty() ? config.intercept.ca_dir
                       : !config.state_dir.empty()      ? config.state_dir + "/ca"
                                                        : std::string();
  auto authority = CertificateAuthority::open(ca_dir);
  if (auto* error = std::get_if<std::string>(&authority)) {
    log_line("intercept.ca_dir: " + *error);
    return 1;
  }
  shared.intercept.ca = std::get<std::shared_ptr<CertificateAuthority>>(authority);
  auto upstream = UpstreamTls::open(config.intercept.upstream_ca);
  if (auto* error = std::get_if<std::string>(&upstream)) {
    log_line(*error);
    return 1;
  }
  shared.intercept.upstream = std::get<std::shared_ptr<UpstreamTls>>(upstream);
  std::optional<SecretBox> box;
  if (ca_dir.empty()) {
    box = SecretBox::ephemeral();
    log_line("no state_dir and no intercept.ca_dir: the interception CA lives in memory only");
  } else {
    auto opened = SecretBox::open(ca_dir + "/secrets.key");
    if (auto* error = std::get_if<std::string>(&opened)) {
      log_line("secrets key: " + *error);
      return 1;
    }
    box = std::get<SecretBox>(opened);
  }
  state.set_box(&*box);
  // The file's sandboxes and state_dir's, merged by id (the API's state wins) and validated
  // as one set with their generations, so a restart reproduces the set that was live.
  std::vector<std::string> problems;
  std::vector<StoredSandbox> stored = state.load(problems);
  std::set<std::string> owned;
  for (const StoredSandbox& s : stored) owned.insert(s.spec.id);
  std::vector<SandboxSpec> merged;
  std::vector<std::optional<uint64_t>> generations;
  std::vector<std::string> origins;  // where each merged sandbox came from, for errors
  for (const SandboxSpec& spec : config.sandboxes) {
    if (owned.count(spec.id)) {
      log_line("sandbox \"" + spec.id + "\": the policy in state_dir replaces the config file's");
      continue;
    }
    merged.push_back(spec);
    generations.push_back(std::nullopt);
    origins.push_back(config.path + " (sandbox \"" + spec.id + "\")");
  }
  for (const StoredSandbox& s : stored) {
    merged.push_back(s.spec);
    generations.push_back(s.generation);
    origins.push_back(config.state_dir + "/sandboxes/" + s.spec.id + ".json");
  }
  shared.store.set_gateways(gateway_names(config));
  for (const auto& [name, gateway] : config.gateways) {
    shared.metrics.declare_gateway(name);
    log_line("gateway " + name + ":" + (gateway.v4 ? " source " + gateway.v4->to_string() : "") +
             (gateway.v6 ? " source " + gateway.v6->to_string() : "") +
             (gateway.mark ? " mark " + std::to_string(*gateway.mark) : ""));
  }
  if (auto error = shared.store.replace_all(merged, generations)) {
    const std::string& field = error->error.field;  // "sandboxes[3].sources[0]"
    size_t index = std::stoul(field.substr(field.find('[') + 1));
    auto inner = field.find("].");
    log_line("the policy set is invalid, not starting: " + origins[index] + ": " +
             (inner == std::string::npos ? std::string() : field.substr(inner + 2) + ": ") +
             error->error.message);
    return 2;
  }
  for (const auto& problem : problems) log_line("state_dir: " + problem);
  shared.metrics.sandboxes(shared.store.snapshot()->size());
  // The parsed file's copies of every rule are not needed once compiled (a reload re-reads
  // the file); give the parser's and the validation pass's memory back to the system.
  config.sandboxes.clear();
  config.sandboxes.shrink_to_fit();
  malloc_trim(0);
  // fast_path: kernel: the table filled before anything is served; every later change of the
  // policies or settings brings it up to date before the API answers.
  std::optional<KernelPath> kernel;
  if (config.fast_path == FastPath::kernel) {
    kernel.emplace(shared);
    kernel->sync();
    shared.published = [&kernel] { kernel->sync(); };
    shared.kernel_flows = [&kernel] { return kernel->live(); };
  }
  ControlApi api(shared.control(), state);
  ControlServer control(api, config.listen.control);
  if (std::string problem = control.start(inherited.take_control()); !problem.empty()) {
    log_line("control socket: " + problem);
    return 1;
  }
  // The metrics listener (prometheus-cpp's own) cannot be handed over: after a takeover it is
  // bound once the old process has let it go.
  if (config.listen.metrics && handoff < 0) {
    try {
      shared.metrics.expose(*config.listen.metrics);
    } catch (const std::exception& e) {
      log_line("cannot serve metrics on " + *config.listen.metrics + ": " + e.what());
      return 1;
    }
  }

  unsigned workers =
      config.workers ? config.workers : std::max(1u, std::thread::hardware_concurrency());
  std::list<Worker> pool;  // stable addresses
  std::vector<std::vector<tcp::acceptor>> acceptors(workers);
  std::vector<std::vector<std::string>> acceptor_labels(workers);  // listen.tproxy entry of each
  for (unsigned i = 0; i < workers; ++i) {
    Worker& worker = pool.emplace_back(shared);
    if (!worker.dns.channel().ok() || !worker.dns.channel().error().empty()) {
      log_line("dns: " + worker.dns.channel().error());
      return 1;
    }
    for (const std::string& address : config.listen.tproxy) {
      auto host_port = *parse_host_port(address);
      std::error_code error;
      std::string step;
      if (int fd = inherited.take_tproxy(address); fd >= 0) {
        // The running egressd's socket: the same kernel socket, its queue included.
        tcp::acceptor adopted(worker.io);
        asio::error_code assign_error;
        adopted.assign(host_port.host.find(':') == std::string::npos ? tcp::v4() : tcp::v6(), fd,
                       assign_error);
        if (!assign_error) {
          acceptors[i].push_back(std::move(adopted));
          acceptor_labels[i].push_back(address);
          continue;
        }
        ::close(fd);
      }
      auto acceptor = open_tproxy_listener(worker.io, host_port.host, host_port.port, error, step);
      if (error) {
        log_line("cannot listen on " + address + " (" + step + "): " + error.message() +
                 (step.find("TRANSPARENT") != std::string::npos ? " (needs CAP_NET_ADMIN)" : ""));
        return 1;
      }
      acceptors[i].push_back(std::move(acceptor));
      acceptor_labels[i].push_back(address);
    }
  }
  // More inherited sockets than workers (the old process had more): served all the same, or
  // the connections the kernel queues on them would wait for nobody.
  for (size_t k = 0;; ++k) {
    auto [address, fd] = inherited.take_any_tproxy();
    if (fd < 0) break;
    unsigned i = static_cast<unsigned>(k % workers);
    tcp::acceptor adopted(*&std::next(pool.begin(), i)->io);
    asio::error_code assign_error;
    auto host_port = parse_host_port(address);
    bool v6 = host_port && host_port->host.find(':') != std::string::npos;
    adopted.assign(v6 ? tcp::v6() : tcp::v4(), fd, assign_error);
    if (assign_error) {
      ::close(fd);
      continue;
    }
    if (std::find(config.listen.tproxy.begin(), config.listen.tproxy.end(), address) ==
        config.listen.tproxy.end()) {
      log_line("inherited listener " + address + " is not in listen.tproxy any more: closed");
      continue;  // closing it ends what was queued on it: the configuration said so
    }
    acceptors[i].push_back(std::move(adopted));
    acceptor_labels[i].push_back(address);
  }
  // The DNS filter: each listen address (UDP + TCP) served by one worker, round robin.
  std::list<DnsServer> dns_servers;
  std::vector<DnsServer*> dns_of_worker(workers, nullptr);
  for (size_t n = 0; n < config.dns_filter.listen.size(); ++n) {
    unsigned i = static_cast<unsigned>(n % workers);
    Worker& worker = *std::next(pool.begin(), i);
    if (!dns_of_worker[i]) dns_of_worker[i] = &dns_servers.emplace_back(worker.io, worker.context);
    auto host_port = *parse_host_port(config.dns_filter.listen[n]);
    std::string step;
    if (auto error = dns_of_worker[i]->listen(host_port.host, host_port.port, step,
                                              inherited.take_dns(config.dns_filter.listen[n]))) {
      log_line("cannot serve DNS on " + config.dns_filter.listen[n] + " (" + step +
               "): " + error.message());
      return 1;
    }
  }
  for (unsigned i = 0; i < workers; ++i) {
    Worker& worker = *std::next(pool.begin(), i);
    if (dns_of_worker[i]) dns_of_worker[i]->start();
    for (auto& acceptor : acceptors[i])
      asio::co_spawn(worker.io, accept_loop(worker, acceptor), asio::detached);
  }

  // Signals are handled on the main thread's io_context only.
  sigset_t blocked;
  sigemptyset(&blocked);
  for (int s : {SIGTERM, SIGINT, SIGHUP, SIGUSR1, SIGUSR2}) sigaddset(&blocked, s);
  pthread_sigmask(SIG_BLOCK, &blocked, nullptr);
  std::vector<std::thread> threads;
  for (Worker& worker : pool) {
    threads.emplace_back([&worker] {
      auto guard = asio::make_work_guard(worker.io);
      worker.io.run();
    });
  }
  pthread_sigmask(SIG_UNBLOCK, &blocked, nullptr);
  // systemd Type=notify: ready once the policy is loaded and every listener (TPROXY, DNS,
  // control, metrics) is up and served. Outside systemd (no NOTIFY_SOCKET) this does nothing.
  notify("READY=1\nSTATUS=serving " + std::to_string(shared.store.snapshot()->size()) +
         " sandboxes");
  shared.metrics.set_ready(true);
  inherited.close_rest();  // the DNS listeners the configuration no longer names
  if (handoff >= 0) {
    // Serving: the old process may stop accepting and drain.
    write_all(handoff, "ready\n");
    read_line(handoff, std::chrono::seconds(5));  // its "stopping", so the metrics port is free
    ::close(handoff);
    if (config.listen.metrics) {
      std::string problem;
      for (int attempt = 0; attempt < 100; ++attempt) {
        try {
          shared.metrics.expose(*config.listen.metrics);
          problem.clear();
          break;
        } catch (const std::exception& e) {
          problem = e.what();
          std::this_thread::sleep_for(std::chrono::milliseconds(50));
        }
      }
      if (!problem.empty())
        log_line("cannot serve metrics on " + *config.listen.metrics +
                 " after the takeover: " + problem);
    }
    log_line("took over from the running egressd; it drains its connections");
  }

  asio::io_context main_io(1);
  // Stop signals have a set of their own: asio counts every signal raised while its handler
  // runs, so a burst of SIGHUPs is a queue of reloads, and a SIGTERM in the same set would wait
  // behind all of them (seconds each under load). Apart, it is handled next.
  asio::signal_set stop_signals(main_io, SIGTERM, SIGINT);
  asio::signal_set signals(main_io, SIGHUP, SIGUSR1, SIGUSR2);
  asio::steady_timer flush_timer(main_io);
  asio::steady_timer successor_timer(main_io);
  bool stopping = false;
  std::function<void()> flush_every;
  flush_every = [&] {
    shared.access_log.flush();
    if (stopping) return;
    flush_timer.expires_after(std::chrono::milliseconds(200));
    flush_timer.async_wait([&](const asio::error_code& e) {
      if (!e) flush_every();
    });
  };
  flush_every();
  // fast_path: kernel: a table a firewall reload emptied (or that was not there yet) is
  // noticed within a tick and filled again; meanwhile the proxy decides.
  asio::steady_timer kernel_timer(main_io);
  std::function<void()> kernel_every;
  kernel_every = [&] {
    if (!kernel || stopping) return;
    kernel_timer.expires_after(std::chrono::seconds(2));
    kernel_timer.async_wait([&](const asio::error_code& e) {
      if (e || stopping) return;
      kernel->check();
      kernel_every();
    });
  };
  kernel_every();
  std::function<void(bool)> begin_stop;
  std::function<void()> wait_signal;
  wait_signal = [&] {
    signals.async_wait([&](const asio::error_code& error, int signal_number) {
      if (error || stopping) return;
      if (signal_number == SIGHUP) {
        notify("RELOADING=1");
        bool reloaded = false;
        auto loaded = load_config(config.path);
        if (auto* errors = std::get_if<std::vector<std::string>>(&loaded)) {
          log_line("reload refused, keeping the running configuration:");
          for (const auto& line : *errors) log_line("  " + line);
          shared.metrics.policy_update(false);
          shared.metrics.config_reload(false);
        } else {
          Config& fresh = std::get<Config>(loaded);
          // The file's sandboxes, except those the API owns (they stay as the API set them).
          if (auto problem = api.reload(fresh)) {
            log_line("reload refused: " + problem->error.field + ": " + problem->error.message);
            shared.metrics.config_reload(false);
          } else {
            shared.metrics.config_reload(true);
            reloaded = true;
            malloc_trim(0);
            if (fresh.listen.tproxy != config.listen.tproxy || fresh.workers != config.workers ||
                fresh.listen.metrics != config.listen.metrics ||
                fresh.dns_filter.listen != config.dns_filter.listen ||
                fresh.access_log != config.access_log) {
              log_line(
                  "reloaded; listen, workers, metrics, dns_filter.listen and access_log changes "
                  "need a restart");
            } else {
              log_line("reloaded " + config.path);
            }
          }
        }
        notify("READY=1\nSTATUS=serving " + std::to_string(shared.store.snapshot()->size()) +
               " sandboxes" + (reloaded ? "" : "; the last reload was refused"));
        wait_signal();
        return;
      }
      if (signal_number == SIGUSR2) {
        // The supervisor left for a restart (or died): serve on until the next egressd takes
        // the sockets, without speaking for the unit any more (the next one does).
        if (notify_systemd.exchange(false)) {
          log_line(
              "the supervisor left for a restart; serving until the next egressd takes "
              "over (stopping in " +
              std::to_string(drain.count()) + " s if none does)");
          successor_timer.expires_after(drain);
          successor_timer.async_wait([&](const asio::error_code& e) {
            if (e) return;
            log_line("no egressd took over");
            begin_stop(false);
          });
        }
        wait_signal();
        return;
      }
      if (signal_number == SIGUSR1) {
        if (!shared.access_log.reopen()) log_line("cannot reopen the access log");
        wait_signal();
        return;
      }
      begin_stop(false);
    });
  };
  // Stops accepting (closing this process's copies of the listeners: after a takeover the new
  // process holds the same sockets, so nothing queued on them is lost), then drains.
  bool handed_over = false;
  begin_stop = [&](bool takeover_done) {
    if (stopping) return;
    handed_over = takeover_done;
    notify("STOPPING=1");
    shared.metrics.set_ready(false);  // Kubernetes stops sending new work here
    log_line(std::string(takeover_done ? "handed over to the new egressd; " : "stopping: ") +
             "no new connections, draining for up to " + std::to_string(drain.count()) + " s");
    shared.draining = true;
    successor_timer.cancel();
    kernel_timer.cancel();
    if (kernel) kernel->stop(takeover_done);
    if (takeover_done) shared.metrics.unexpose();  // the new process binds it next
    for (unsigned i = 0; i < workers; ++i) {
      Worker& worker = *std::next(pool.begin(), i);
      asio::post(worker.io, [&acceptors, &dns_of_worker, i] {
        for (auto& acceptor : acceptors[i]) {
          asio::error_code ignored;
          acceptor.close(ignored);
        }
        if (dns_of_worker[i]) dns_of_worker[i]->stop();
      });
    }
    stopping = true;
    asio::error_code ignored;
    signals.cancel(ignored);
    stop_signals.cancel(ignored);
  };
  // The takeover listener: a new egressd started with --takeover asks for the sockets here.
  TakeoverListener takeover_listener(takeover_path, [&](int client) {
    control.pause();  // every acknowledged write is on disk before the new process reads it
    std::vector<int> fds;
    nlohmann::json description = {{"pid", ::getpid()}};
    description["tproxy"] = nlohmann::json::array();
    for (unsigned i = 0; i < workers; ++i) {
      for (size_t j = 0; j < acceptors[i].size(); ++j) {
        description["tproxy"].push_back({{"address", acceptor_labels[i][j]}, {"fd", fds.size()}});
        fds.push_back(acceptors[i][j].native_handle());
      }
    }
    description["dns"] = nlohmann::json::array();
    for (DnsServer& server : dns_servers) {
      for (const auto& l : server.listening()) {
        description["dns"].push_back(
            {{"address", l.address}, {"udp", fds.size()}, {"tcp", fds.size() + 1}});
        fds.push_back(l.udp_fd);
        fds.push_back(l.tcp_fd);
      }
    }
    description["control"] = fds.size();
    fds.push_back(control.native_handle());
    std::string problem = send_with_fds(client, description.dump() + "\n", fds);
    if (problem.empty() && read_line(client, std::chrono::seconds(60)) == "ready") {
      std::promise<void> stopped;
      asio::post(main_io, [&] {
        begin_stop(true);
        stopped.set_value();
      });
      stopped.get_future().wait();
      write_all(client, "stopping\n");
      return true;
    }
    log_line("a takeover did not complete (" + (problem.empty() ? "no ready" : problem) +
             "); still serving");
    control.resume();
    return false;
  });
  if (std::string problem = takeover_listener.start(); !problem.empty())
    log_line("takeover socket " + takeover_path + ": " + problem +
             " (upgrades will need a restart)");
  wait_signal();
  stop_signals.async_wait([&](const asio::error_code& error, int) {
    if (!error) begin_stop(false);
  });
  main_io.run();  // returns once a stop signal arrived and the flush timer stopped
  takeover_listener.stop(!handed_over);
  auto deadline = std::chrono::steady_clock::now() + drain;
  auto active = [&] {
    size_t total = 0;
    for (Worker& worker : pool) total += worker.active.load();
    return total;
  };
  while (active() > 0 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  if (active() > 0)
    log_line(std::to_string(active()) + " connections still open after the drain time; closing");
  control.stop(!handed_over);  // after a takeover the socket file is the new process's
  for (Worker& worker : pool) worker.io.stop();
  for (auto& thread : threads) thread.join();
  shared.access_log.flush();
  log_line("stopped");
  return 0;
}

}  // namespace egressd
