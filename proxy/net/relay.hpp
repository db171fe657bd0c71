#pragma once
// Zero-copy relay with splice(2). Pipes come from a per-worker pool and are held only while
// bytes are in flight, so an idle relayed connection costs two sockets, not four more fds.
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

 private:
  std::vector<Pipe> idle_;
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

  // `keep_alive` is held by pending handlers until `done` has run.
  void start(std::shared_ptr<void> keep_alive, Done done);

 private:
  void pump();
  void wait(bool for_write);
  void end(DirectionEnd how);

  asio::ip::tcp::socket& from_;
  asio::ip::tcp::socket& to_;
  PipePool& pool_;
  std::function<void(size_t)> on_bytes_;
  const bool* keep_open_on_eof_;
  std::shared_ptr<void> keep_alive_;
  Done done_;
  PipePool::Pipe pipe_;
  size_t pending_ = 0;  // bytes in the pipe not yet written to `to`
};

// The coroutine form of one direction, for code that awaits it.
asio::awaitable<DirectionEnd> splice_one_way(asio::ip::tcp::socket& from, asio::ip::tcp::socket& to,
                                             PipePool& pool, std::function<void(size_t)> on_bytes,
                                             const bool* keep_open_on_eof = nullptr);

// Closes both sockets with a RST to each peer.
void reset_both(asio::ip::tcp::socket& a, asio::ip::tcp::socket& b);

}  // namespace egressd
