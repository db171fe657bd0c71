// The control server against hostile clients, over a real unix socket.
#include <doctest/doctest.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <filesystem>
#include <string>

#include "api_fixture.hpp"
#include "control/control_server.hpp"

using namespace egressd;

namespace {

struct Server : testing::ApiFixture {
  std::string path;
  std::unique_ptr<ControlServer> server;

  Server() : ApiFixture("state"), path(dir + "/control.sock") {
    server = std::make_unique<ControlServer>(*api, path);
    REQUIRE(server->start().empty());
  }
  ~Server() { server.reset(); }  // before the fixture removes the directory

  int connect_client() const {
    int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
    sockaddr_un address{};
    address.sun_family = AF_UNIX;
    std::snprintf(address.sun_path, sizeof(address.sun_path), "%s", path.c_str());
    timeval timeout{5, 0};
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
    REQUIRE(::connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) == 0);
    return fd;
  }
  // Sends `request` on a new connection, returns the status code of the answer (0: none).
  int status_of(const std::string& request) const {
    int fd = connect_client();
    size_t sent = 0;
    while (sent < request.size()) {
      ssize_t n = ::send(fd, request.data() + sent, request.size() - sent, MSG_NOSIGNAL);
      if (n <= 0) break;  // the server may answer and close before reading everything
      sent += static_cast<size_t>(n);
    }
    char buffer[512];
    ssize_t n = ::recv(fd, buffer, sizeof(buffer), 0);
    ::close(fd);
    std::string answer(buffer, n > 0 ? static_cast<size_t>(n) : 0);
    return answer.starts_with("HTTP/1.1 ") ? std::stoi(answer.substr(9, 3)) : 0;
  }
};

std::string get(const std::string& target) {
  return "GET " + target + " HTTP/1.1\r\nHost: egressd\r\nConnection: close\r\n\r\n";
}

std::string put(const std::string& target, const std::string& body) {
  return "PUT " + target + " HTTP/1.1\r\nHost: egressd\r\nConnection: close\r\nContent-Length: " +
         std::to_string(body.size()) + "\r\n\r\n" + body;
}

}  // namespace

TEST_CASE("Control server: hundreds of hostile requests, and the next one is still answered") {
  Server s;
  REQUIRE(s.status_of(put("/v1/sandboxes/a",
                          R"({"sources":["10.200.1.2"],"egress":{"default":"deny"}})")) == 200);
  for (int i = 0; i < 300; ++i) {
    CAPTURE(i);
    CHECK(s.status_of(get("/v1/sandboxes/%ff")) == 400);              // not UTF-8
    CHECK(s.status_of(get("/v1/sandboxes/%c0%af")) == 400);           // overlong
    CHECK(s.status_of(get("/v1/denials?sandbox=%ed%a0%80")) == 400);  // a surrogate
    CHECK(s.status_of(put("/v0/sandboxes/a", R"({"metadata":"x"})")) == 400);
    CHECK(s.status_of(put("/v0/sandboxes/a", R"({"spec":{"network":7}})")) == 400);
  }
  CHECK(s.status_of(get("/v1/health")) == 200);
  CHECK(s.shared->store.snapshot()->size() == 1);  // nothing changed
}

TEST_CASE("Control server: request heads over 64 KiB or 100 headers get 431") {
  Server s;
  std::string many = "GET /v1/health HTTP/1.1\r\nHost: egressd\r\n";
  for (int i = 0; i < 101; ++i) many += "X-" + std::to_string(i) + ": y\r\n";
  CHECK(s.status_of(many + "\r\n") == 431);
  std::string long_header =
      "GET /v1/health HTTP/1.1\r\nHost: egressd\r\nX-Big: " + std::string(70000, 'a') + "\r\n\r\n";
  CHECK(s.status_of(long_header) == 431);
  // Many small headers that add up past the cap (each well under it).
  std::string wide = "GET /v1/health HTTP/1.1\r\nHost: egressd\r\n";
  for (int i = 0; i < 90; ++i)
    wide += "X-" + std::to_string(i) + ": " + std::string(1000, 'b') + "\r\n";
  CHECK(s.status_of(wide + "\r\n") == 431);
  std::string ninety_nine = "GET /v1/health HTTP/1.1\r\nHost: egressd\r\n";
  for (int i = 0; i < 98; ++i) ninety_nine += "X-" + std::to_string(i) + ": y\r\n";
  CHECK(s.status_of(ninety_nine + "Connection: close\r\n\r\n") == 200);
}

TEST_CASE("Control server: clients that never finish do not use up the server") {
  Server s;
  std::vector<int> stuck;
  for (size_t i = 0; i < ControlServer::kMaxClients + 20; ++i) {
    int fd = s.connect_client();
    ::send(fd, "GET /v1/health HTTP/1.1\r\n", 25, MSG_NOSIGNAL);  // and never the rest
    stuck.push_back(fd);
  }
  // Over the limit: told so (503), not silently dropped.
  CHECK(s.status_of(get("/v1/health")) == 503);
  for (int fd : stuck) ::close(fd);  // slots come back as the server sees them go
  bool answered = false;
  for (int attempt = 0; attempt < 200 && !answered; ++attempt) {
    answered = s.status_of(get("/v1/health")) == 200;
    if (!answered) ::usleep(10000);
  }
  CHECK(answered);
}
