#include <doctest/doctest.h>

#include <cstring>
#include <string>

#include "inspect/http_gate.hpp"

using namespace egressd;

namespace {

void give(HttpGate& gate, const std::string& bytes) {
  auto space = gate.free_space();
  REQUIRE(space.size() >= bytes.size());
  std::memcpy(space.data(), bytes.data(), bytes.size());
  gate.received(bytes.size());
}

std::string take(HttpGate& gate) {
  REQUIRE(gate.next() == HttpGate::Step::forward);
  auto bytes = gate.forwardable();
  std::string out(reinterpret_cast<const char*>(bytes.data()), bytes.size());
  gate.forwarded();
  return out;
}

std::span<const uint8_t> bytes_of(const std::string& text) {
  return {reinterpret_cast<const uint8_t*>(text.data()), text.size()};
}

}  // namespace

TEST_CASE("HttpGate: allowed heads and their bodies go; a denied head and all after it never") {
  HttpGate gate(4096);
  std::string post = "POST / HTTP/1.1\r\nHost: ok.example\r\nContent-Length: 5\r\n\r\nhel";
  give(gate, post);
  REQUIRE(gate.next() == HttpGate::Step::decide);
  CHECK(gate.head().name == "ok.example");
  gate.allow();
  CHECK(take(gate) == post);  // the head and the body bytes so far
  CHECK(gate.next() == HttpGate::Step::read_more);
  std::string rest =
      "loGET / HTTP/1.1\r\nHost: evil.example\r\n\r\nGET / HTTP/1.1\r\nHost: ok.example\r\n\r\n";
  give(gate, rest);
  CHECK(take(gate) == "lo");  // the body's last bytes go at once, before the next head
  REQUIRE(gate.next() == HttpGate::Step::decide);
  CHECK(gate.head().name == "evil.example");
  gate.deny();
  for (int i = 0; i < 3; ++i) CHECK(gate.next() == HttpGate::Step::denied);
}

TEST_CASE("HttpGate: an upgrade request holds what follows until the origin answers") {
  std::string upgrade =
      "GET / HTTP/1.1\r\nHost: ok.example\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n";
  std::string next = "GET / HTTP/1.1\r\nHost: evil.example\r\n\r\n";
  for (bool accepted : {false, true}) {
    CAPTURE(accepted);
    HttpGate gate(4096);
    give(gate, upgrade + next);
    REQUIRE(gate.next() == HttpGate::Step::decide);
    gate.allow();
    CHECK(take(gate) == upgrade);
    CHECK(gate.next() == HttpGate::Step::await_upgrade);
    if (accepted) {
      CHECK(
          gate.observe_response(bytes_of("HTTP/1.1 101 Switching Protocols\r\nConnection: "
                                         "Upgrade\r\nUpgrade: websocket\r\n\r\n")));
      CHECK(gate.switched());
      CHECK(take(gate) == next);  // now the new protocol's bytes, not a request
      CHECK(gate.next() == HttpGate::Step::opaque);
    } else {
      CHECK(gate.observe_response(bytes_of("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")));
      REQUIRE(gate.next() == HttpGate::Step::decide);  // the next request is judged
      CHECK(gate.head().name == "evil.example");
    }
  }
  HttpGate unasked(4096);
  give(unasked, "GET / HTTP/1.1\r\nHost: ok.example\r\n\r\n");
  REQUIRE(unasked.next() == HttpGate::Step::decide);
  unasked.allow();
  take(unasked);
  CHECK_FALSE(unasked.observe_response(bytes_of("HTTP/1.1 101 Switching Protocols\r\n\r\n")));
}
