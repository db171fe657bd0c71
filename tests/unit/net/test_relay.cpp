#include <doctest/doctest.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <asio/io_context.hpp>
#include <asio/ip/tcp.hpp>
#include <atomic>
#include <chrono>
#include <future>
#include <thread>
#include <vector>

#include "net/relay.hpp"

using namespace egressd;
using asio::ip::tcp;

namespace {

// Two connected TCP pairs on loopback: peer_in -> relay_in ... relay_out -> peer_out. The relay
// moves relay_in to relay_out; the test writes to peer_in and reads peer_out with blocking calls.
struct Pairs {
  asio::io_context io;
  tcp::socket relay_in{io}, relay_out{io};
  int peer_in = -1, peer_out = -1;

  Pairs() {
    tcp::acceptor acceptor(io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
    peer_in = connect_to(acceptor.local_endpoint());
    relay_in = acceptor.accept();
    peer_out = connect_to(acceptor.local_endpoint());
    relay_out = acceptor.accept();
  }
  ~Pairs() {
    ::close(peer_in);
    ::close(peer_out);
  }
  static int connect_to(const tcp::endpoint& endpoint) {
    int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    REQUIRE(::connect(fd, endpoint.data(), static_cast<socklen_t>(endpoint.size())) == 0);
    return fd;
  }
};

void set_buffer(int fd, int option, int bytes) {
  ::setsockopt(fd, SOL_SOCKET, option, &bytes, sizeof(bytes));
}

uint8_t pattern(size_t i) {
  return static_cast<uint8_t>((i * 7) % 251);
}

// Reads peer_out to EOF; returns the byte count, or SIZE_MAX at the first wrong byte.
size_t read_checked(int fd) {
  std::vector<uint8_t> buffer(65536);
  size_t total = 0;
  for (ssize_t n; (n = ::read(fd, buffer.data(), buffer.size())) > 0; total += size_t(n)) {
    for (ssize_t i = 0; i < n; ++i)
      if (buffer[size_t(i)] != pattern(total + size_t(i))) return SIZE_MAX;
  }
  return total;
}

struct Outcome {
  size_t received;  // read_checked() of peer_out
  DirectionEnd how;
};

// Starts `direction` on an io thread, writes `total` pattern bytes to peer_in in writes of
// `piece` bytes and then FIN, and reads peer_out to EOF, starting after `reader_delay`.
Outcome relay_pattern(Pairs& p, SpliceDirection& direction, size_t total, size_t piece,
                      std::chrono::milliseconds reader_delay) {
  std::promise<DirectionEnd> ended;
  direction.start(nullptr, [&](DirectionEnd how) { ended.set_value(how); });
  std::thread loop([&] { p.io.run(); });
  std::thread writer([&] {
    std::vector<uint8_t> chunk(piece);
    for (size_t sent = 0; sent < total;) {
      size_t n = std::min(chunk.size(), total - sent);
      for (size_t i = 0; i < n; ++i) chunk[i] = pattern(sent + i);
      ssize_t w = ::write(p.peer_in, chunk.data(), n);
      if (w <= 0) break;
      sent += size_t(w);
    }
    ::shutdown(p.peer_in, SHUT_WR);
  });
  std::this_thread::sleep_for(reader_delay);
  timeval stall{30, 0};  // a relay that stops moving fails the test instead of hanging it
  ::setsockopt(p.peer_out, SOL_SOCKET, SO_RCVTIMEO, &stall, sizeof(stall));
  size_t received = read_checked(p.peer_out);
  writer.join();
  auto future = ended.get_future();
  REQUIRE(future.wait_for(std::chrono::seconds(10)) == std::future_status::ready);
  DirectionEnd how = future.get();
  p.io.stop();
  loop.join();
  return {received, how};
}

}  // namespace

TEST_CASE("relay: small reads into a full destination are parked in a pipe and arrive in order") {
  Pairs p;
  PipePool pool;
  // Writes of 1000 bytes keep the first reads under the copy chunk (copy mode); a small send
  // buffer and a reader that starts late make the destination refuse whole chunks (parking).
  // (No small SO_RCVBUF on either receiver: shrunk after the handshake, on loopback's 64 KiB
  // MSS it leaves the sender to window probes every 200 ms, and the test crawls for minutes.)
  set_buffer(p.relay_out.native_handle(), SO_SNDBUF, 4096);
  p.relay_in.non_blocking(true);
  p.relay_out.non_blocking(true);
  constexpr size_t kTotal = 2 << 20;
  std::atomic<size_t> counted{0};
  SpliceDirection direction(p.relay_in, p.relay_out, pool, [&](size_t n) { counted += n; });
  Outcome outcome = relay_pattern(p, direction, kTotal, 1000, std::chrono::milliseconds(200));
  CHECK(outcome.how == DirectionEnd::eof);
  CHECK(outcome.received == kTotal);
  CHECK(counted == kTotal);
}

TEST_CASE("relay: a short answer followed by FIN arrives whole, then EOF") {
  Pairs p;
  PipePool pool;
  p.relay_in.non_blocking(true);
  p.relay_out.non_blocking(true);
  std::vector<uint8_t> answer(128);
  for (size_t i = 0; i < answer.size(); ++i) answer[i] = pattern(i);
  REQUIRE(::write(p.peer_in, answer.data(), answer.size()) == 128);
  ::shutdown(p.peer_in, SHUT_WR);
  DirectionEnd how = DirectionEnd::aborted;
  size_t counted = 0;
  SpliceDirection direction(p.relay_in, p.relay_out, pool, [&](size_t n) { counted += n; });
  direction.start(nullptr, [&](DirectionEnd end) { how = end; });
  p.io.run_for(std::chrono::seconds(5));
  CHECK(how == DirectionEnd::eof);
  CHECK(counted == 128);
  CHECK(read_checked(p.peer_out) == 128);
}

TEST_CASE("relay: bulk turns to splicing and still arrives whole") {
  Pairs p;
  PipePool pool;
  p.relay_in.non_blocking(true);
  p.relay_out.non_blocking(true);
  constexpr size_t kTotal = 32 << 20;
  SpliceDirection direction(p.relay_in, p.relay_out, pool, [](size_t) {});
  Outcome outcome = relay_pattern(p, direction, kTotal, 1 << 16, std::chrono::milliseconds(0));
  CHECK(outcome.how == DirectionEnd::eof);
  CHECK(outcome.received == kTotal);
}
