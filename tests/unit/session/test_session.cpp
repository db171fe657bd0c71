// Sessions over loopback TCP, one protocol at a time, without TPROXY: the test's listener is
// the "original destination" (the session reads it from the accepted socket), so a session's
// upstream connection comes back to the same listener, where the test plays the origin.
#include <doctest/doctest.h>
#include <sys/socket.h>

#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/use_awaitable.hpp>
#include <asio/write.hpp>
#include <atomic>
#include <chrono>
#include <functional>
#include <string>
#include <thread>

#include "../../support/tls_builder.hpp"
#include "app/daemon.hpp"
#include "session/session.hpp"
#include "util/asio_tokens.hpp"

using namespace egressd;
using asio::ip::tcp;

namespace {

enum class Port { tls, http, plain };

// What the origin does with the one connection it gets.
using Origin = std::function<asio::awaitable<void>(std::shared_ptr<tcp::socket>)>;

asio::awaitable<void> echo(std::shared_ptr<tcp::socket> socket) {
  char buffer[4096];
  for (;;) {
    auto [error, n] = co_await socket->async_read_some(asio::buffer(buffer), use_nothrow);
    if (error) co_return;
    co_await asio::async_write(*socket, asio::buffer(buffer, n), use_nothrow);
  }
}

asio::awaitable<void> http_ok(std::shared_ptr<tcp::socket> socket) {
  char buffer[4096];
  std::string head;
  while (head.find("\r\n\r\n") == std::string::npos) {
    auto [error, n] = co_await socket->async_read_some(asio::buffer(buffer), use_nothrow);
    if (error) co_return;
    head.append(buffer, n);
  }
  std::string answer = "HTTP/1.1 200 OK\r\nContent-Length: 6\r\nConnection: close\r\n\r\norigin";
  co_await asio::async_write(*socket, asio::buffer(answer), use_nothrow);
  socket->shutdown(tcp::socket::shutdown_send);
  co_await socket->async_read_some(asio::buffer(buffer), use_nothrow);
}

struct Rig {
  std::unique_ptr<Shared> shared;
  std::unique_ptr<Worker> worker;
  std::unique_ptr<tcp::acceptor> acceptor;
  uint16_t port = 0;
  std::atomic<int> origin_connections{0};

  Rig(Port inspected, std::vector<std::string> allow) {
    // The port is known once bound; the settings that name it come after.
    asio::io_context probe;
    tcp::acceptor bound(probe, tcp::endpoint(asio::ip::address_v4::loopback(), 0));
    port = bound.local_endpoint().port();
    Config config;
    if (inspected == Port::tls) config.inspect.tls = {port};
    if (inspected == Port::http) config.inspect.http = {port};
    if (inspected != Port::tls) config.inspect.tls = {};
    if (inspected != Port::http) config.inspect.http = {};
    config.guard_allow = {"127.0.0.0/8"};  // the test's origin is on loopback
    config.dns.verify = DnsVerify::off;    // no resolver here: names are not looked up
    shared = std::make_unique<Shared>(Settings::from(config));
    SandboxSpec spec;
    spec.id = "t";
    spec.sources = {"127.0.0.1"};
    spec.allow = std::move(allow);
    REQUIRE(std::holds_alternative<std::shared_ptr<const Sandbox>>(shared->store.put(spec)));
    worker = std::make_unique<Worker>(*shared);
    acceptor = std::make_unique<tcp::acceptor>(worker->io);
    acceptor->assign(tcp::v4(), bound.release());
  }

  // The first connection is the sandbox's (a session); later ones are the session's upstream
  // (the origin). The client runs here, blocking with a 5 s receive timeout; the listener,
  // the session and the origin on the worker's thread. Returns what the client read, up to
  // the end of the connection or `enough` bytes.
  std::string exchange(const std::string& sent, Origin origin, size_t enough = 0) {
    asio::co_spawn(
        worker->io,
        [this, origin]() -> asio::awaitable<void> {
          auto [error, client] = co_await acceptor->async_accept(use_nothrow);
          if (error) co_return;
          auto peer = client.remote_endpoint();
          asio::co_spawn(worker->io, run_session(worker->context, std::move(client), peer),
                         asio::detached);
          for (;;) {
            auto [e, upstream] = co_await acceptor->async_accept(use_nothrow);
            if (e) co_return;
            ++origin_connections;
            asio::co_spawn(worker->io, origin(std::make_shared<tcp::socket>(std::move(upstream))),
                           asio::detached);
          }
        },
        asio::detached);
    std::thread serving([this] { worker->io.run_for(std::chrono::seconds(10)); });
    std::string received;
    {
      asio::io_context client_io;
      tcp::socket s(client_io);
      s.connect(tcp::endpoint(asio::ip::address_v4::loopback(), port));
      timeval timeout{5, 0};
      ::setsockopt(s.native_handle(), SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
      asio::write(s, asio::buffer(sent));
      asio::error_code error;
      char buffer[4096];
      while (!error) {
        size_t n = s.read_some(asio::buffer(buffer), error);
        received.append(buffer, n);
        if (enough && received.size() >= enough) break;
      }
    }
    // The session ends by itself once the client is gone (its relay sees the close): waited
    // for with a deadline, then checked, so a session that never ends fails the test.
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    while (worker->active.load() > 0 && std::chrono::steady_clock::now() < deadline)
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    CHECK(worker->active.load() == 0);
    worker->io.stop();
    serving.join();
    return received;
  }
};

}  // namespace

TEST_CASE("Session, plain port: an allowed address is relayed both ways") {
  Rig rig(Port::plain, {"127.0.0.1"});
  CHECK(rig.exchange("ping-pong", echo, 9) == "ping-pong");
  CHECK(rig.origin_connections == 1);
}

TEST_CASE("Session, plain port: a denied address never reaches the origin") {
  Rig rig(Port::plain, {"198.18.0.11"});
  CHECK(rig.exchange("ping-pong", echo).empty());
  CHECK(rig.origin_connections == 0);
}

TEST_CASE("Session, HTTP port: a denied Host gets a 403 and the origin sees nothing") {
  Rig rig(Port::http, {"ok.example"});
  std::string answer = rig.exchange("GET / HTTP/1.1\r\nHost: evil.example\r\n\r\n", http_ok);
  CHECK(answer.starts_with("HTTP/1.1 403 Forbidden"));
  CHECK(answer.find("X-Egress-Denied: default_deny") != std::string::npos);
  CHECK(rig.origin_connections == 0);
}

TEST_CASE("Session, HTTP port: an allowed Host reaches the origin and its answer comes back") {
  Rig rig(Port::http, {"ok.example"});
  std::string answer =
      rig.exchange("GET / HTTP/1.1\r\nHost: ok.example\r\nConnection: close\r\n\r\n", http_ok);
  CHECK(answer.starts_with("HTTP/1.1 200 OK"));
  CHECK(answer.ends_with("origin"));
  CHECK(rig.origin_connections == 1);
}

TEST_CASE("Session, TLS port: a denied SNI gets an access_denied alert, nothing upstream") {
  Rig rig(Port::tls, {"ok.example"});
  auto hello =
      testing::frame_records(testing::build_handshake(testing::hello_with_sni("evil.example")));
  std::string answer = rig.exchange(std::string(hello.begin(), hello.end()), echo);
  // A TLS alert record: type 21, then level 2 (fatal), description 49 (access_denied).
  REQUIRE(answer.size() >= 7);
  CHECK(static_cast<uint8_t>(answer[0]) == 21);
  CHECK(static_cast<uint8_t>(answer[6]) == 49);
  CHECK(rig.origin_connections == 0);
}

TEST_CASE("Session, TLS port: an allowed SNI's hello is replayed to the origin unchanged") {
  Rig rig(Port::tls, {"ok.example"});
  auto hello =
      testing::frame_records(testing::build_handshake(testing::hello_with_sni("ok.example")));
  std::string sent(hello.begin(), hello.end());
  // The echo origin sends the hello back: what the session forwarded, byte for byte.
  std::string answer = rig.exchange(sent, echo, sent.size());
  CHECK(answer == sent);
  CHECK(rig.origin_connections == 1);
}
