#include "app/server.hpp"

#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <sys/resource.h>
#include <systemd/sd-daemon.h>

#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/experimental/as_tuple.hpp>
#include <asio/signal_set.hpp>
#include <asio/steady_timer.hpp>
#include <asio/use_awaitable.hpp>
#include <chrono>
#include <iostream>
#include <list>
#include <set>
#include <thread>

#include "app/daemon.hpp"
#include "control/api.hpp"
#include "control/control_server.hpp"
#include "control/state_dir.hpp"
#include "core/log.hpp"
#include "net/listener.hpp"
#include "session/dns_server.hpp"
#include "session/session.hpp"
#include "util/asio_tokens.hpp"

namespace egressd {
namespace {

using asio::ip::tcp;
constexpr auto kDrainTime = std::chrono::seconds(10);

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

void raise_fd_limit() {
  rlimit limit{};
  if (getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur < limit.rlim_max) {
    limit.rlim_cur = limit.rlim_max;
    setrlimit(RLIMIT_NOFILE, &limit);
  }
}

}  // namespace

int run_server(Config config) {
  raise_fd_limit();
  signal(SIGPIPE, SIG_IGN);
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
  ControlApi api(shared.control(), state);
  ControlServer control(api, config.listen.control);
  if (std::string problem = control.start(); !problem.empty()) {
    log_line("control socket: " + problem);
    return 1;
  }
  if (config.listen.metrics) {
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
      auto acceptor = open_tproxy_listener(worker.io, host_port.host, host_port.port, error, step);
      if (error) {
        log_line("cannot listen on " + address + " (" + step + "): " + error.message() +
                 (step.find("TRANSPARENT") != std::string::npos ? " (needs CAP_NET_ADMIN)" : ""));
        return 1;
      }
      acceptors[i].push_back(std::move(acceptor));
    }
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
    if (auto error = dns_of_worker[i]->listen(host_port.host, host_port.port, step)) {
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
  for (int s : {SIGTERM, SIGINT, SIGHUP, SIGUSR1}) sigaddset(&blocked, s);
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
  sd_notifyf(0, "READY=1\nSTATUS=serving %zu sandboxes", shared.store.snapshot()->size());

  asio::io_context main_io(1);
  asio::signal_set signals(main_io, SIGTERM, SIGINT, SIGHUP);
  signals.add(SIGUSR1);
  asio::steady_timer flush_timer(main_io);
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
  std::function<void()> wait_signal;
  wait_signal = [&] {
    signals.async_wait([&](const asio::error_code& error, int signal_number) {
      if (error) return;
      if (signal_number == SIGHUP) {
        sd_notify(0, "RELOADING=1");
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
        sd_notifyf(0, "READY=1\nSTATUS=serving %zu sandboxes%s", shared.store.snapshot()->size(),
                   reloaded ? "" : "; the last reload was refused");
        wait_signal();
        return;
      }
      if (signal_number == SIGUSR1) {
        if (!shared.access_log.reopen()) log_line("cannot reopen the access log");
        wait_signal();
        return;
      }
      sd_notify(0, "STOPPING=1");
      log_line("stopping: no new connections, draining for up to " +
               std::to_string(kDrainTime.count()) + " s");
      shared.draining = true;
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
    });
  };
  wait_signal();
  main_io.run();  // returns once a stop signal arrived and the flush timer stopped
  auto deadline = std::chrono::steady_clock::now() + kDrainTime;
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
  control.stop();
  for (Worker& worker : pool) worker.io.stop();
  for (auto& thread : threads) thread.join();
  shared.access_log.flush();
  log_line("stopped");
  return 0;
}

}  // namespace egressd
