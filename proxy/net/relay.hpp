#pragma once
// Relay that copies small exchanges and splices bulk. Each direction starts by copying through
// the worker's scratch buffer (recv + send: two syscalls, no pipe; a short request/response
// costs less this way than splicing in and out of a pipe) and turns to splice(2) for good once
// one read fills a scratch chunk or the destination cannot take a whole read. Pipes come
// from a per-worker pool and are held only while bytes are in flight, so an idle relayed
// connection costs two sockets, not four more fds.
// Half-close is carried across (shutdown(SHUT_WR) after EOF) and so is a reset (SO_LINGER 0).
#include <asio/awaitable.hpp>
#include <asio/ip/tcp.hpp>

#include <cstdint>
#include <functional>
#include <vector>

namespace egressd {

class PipePool {
 public:
  struct Pipe {
    int read_fd = -1;
    int write_fd = -1;
  };
  PipePool() = default;
  PipePool(const PipePool&) = delete;
  PipePool& operator=(const PipePool&) = delete;
  ~PipePool();

  bool acquire(Pipe& pipe);              // false when the kernel refuses a new pipe (EMFILE)
  void release(Pipe& pipe, bool empty);  // a pipe still holding bytes is closed, not pooled

  // The worker's copy buffer (two chunks: one being sent, one read ahead), valid until the
  // next call that may run another connection.
  static constexpr size_t kScratchBytes = 32768;
  char* scratch() { return scratch_.data(); }

 private:
  std::vector<Pipe> idle_;
  std::vector<char> scratch_ = std::vector<char>(kScratchBytes);
};

enum class DirectionEnd : uint8_t {
  eof,           // the source sent FIN; the destination got shutdown(SHUT_WR)
  source_reset,  // the source reset; the destination was reset too
  sink_failed,   // writing failed (the destination reset); the source was reset
  aborted,       // cancelled from outside (revoke, drain, the other direction's reset)
};

// One direction of a spliced relay, driven by callbacks (no coroutine frame per direction, so
// an idle relayed connection costs little memory). Moves bytes from `from` to `to` until EOF or
// error; `on_bytes(n)` is called per batch. At EOF `to` is shut down for sending unless
// `*keep_open_on_eof` is true then (the HTTP path still has a 403 to write).
class SpliceDirection {
 public:
  using Done = std::function<void(DirectionEnd)>;
  SpliceDirection(asio::ip::tcp::socket& from, asio::ip::tcp::socket& to, PipePool& pool,
                  std::function<void(size_t)> on_bytes, const bool* keep_open_on_eof = nullptr)
      : from_(from),
        to_(to),
        pool_(pool),
        on_bytes_(std::move(on_bytes)),
        keep_open_on_eof_(keep_open_on_eof) {}
  SpliceDirection(const SpliceDirection&) = delete;
  SpliceDirection& operator=(const SpliceDirection&) = delete;
  ~SpliceDirection() { pool_.release(pipe_, pending_ == 0); }

  // `keep_alive` is held by pending handlers until `done` has run. `wait_first`: start by
  // waiting for the source to be readable instead of trying a read that would usually find
  // nothing yet (a connection just relayed its first bytes).
  void start(std::shared_ptr<void> keep_alive, Done done, bool wait_first = false);

  // For an owner that closes both sockets as soon as both directions have ended: the direction
  // that ends second at EOF leaves the FIN to that close (no shutdown call; nothing is left
  // unread on the socket, so close sends FIN, not RST).
  void pair_with(SpliceDirection& other) {
    peer_ = &other;
    other.peer_ = this;
  }

 private:
  void pump();
  bool copy_once();
  bool park(const char* rest, size_t rest_size, const char* more, size_t more_size);
  void eof();
  void fail(DirectionEnd how);  // resets both sockets, then ends
  void wait(bool for_write);
  void end(DirectionEnd how);
  bool shuts_down_on_eof() const { return !keep_open_on_eof_ || !*keep_open_on_eof_; }

  asio::ip::tcp::socket& from_;
  asio::ip::tcp::socket& to_;
  PipePool& pool_;
  std::function<void(size_t)> on_bytes_;
  const bool* keep_open_on_eof_;
  std::shared_ptr<void> keep_alive_;
  Done done_;
  PipePool::Pipe pipe_;
  size_t pending_ = 0;  // bytes in the pipe not yet written to `to`
  bool splicing_ = false;
  bool ended_ = false;
  SpliceDirection* peer_ = nullptr;
};

// The coroutine form of one direction, for code that awaits it.
asio::awaitable<DirectionEnd> splice_one_way(asio::ip::tcp::socket& from, asio::ip::tcp::socket& to,
                                             PipePool& pool, std::function<void(size_t)> on_bytes,
                                             const bool* keep_open_on_eof = nullptr);

// Closes both sockets with a RST to each peer.
void reset_both(asio::ip::tcp::socket& a, asio::ip::tcp::socket& b);

}  // namespace egressd
