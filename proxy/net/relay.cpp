#include "net/relay.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <asio/experimental/as_tuple.hpp>
#include <asio/use_awaitable.hpp>

#include "net/socket_options.hpp"

namespace egressd {
namespace {

constexpr auto use_nothrow = asio::experimental::as_tuple(asio::use_awaitable);
constexpr size_t kPipeBytes = 1 << 20;  // fs.pipe-max-size default; falls back to 64 KiB
constexpr size_t kMaxIdlePipes = 64;
constexpr unsigned kSpliceFlags = SPLICE_F_MOVE | SPLICE_F_NONBLOCK;

}  // namespace

PipePool::~PipePool() {
  for (Pipe& pipe : idle_) {
    ::close(pipe.read_fd);
    ::close(pipe.write_fd);
  }
}

bool PipePool::acquire(Pipe& pipe) {
  if (!idle_.empty()) {
    pipe = idle_.back();
    idle_.pop_back();
    return true;
  }
  int fds[2];
  if (::pipe2(fds, O_NONBLOCK | O_CLOEXEC) != 0) return false;
  ::fcntl(fds[1], F_SETPIPE_SZ, static_cast<int>(kPipeBytes));
  pipe = Pipe{fds[0], fds[1]};
  return true;
}

void PipePool::release(Pipe& pipe, bool empty) {
  if (pipe.read_fd < 0) return;
  if (empty && idle_.size() < kMaxIdlePipes) {
    idle_.push_back(pipe);
  } else {
    ::close(pipe.read_fd);
    ::close(pipe.write_fd);
  }
  pipe = Pipe{};
}

void reset_both(asio::ip::tcp::socket& a, asio::ip::tcp::socket& b) {
  reset_and_close(a);
  reset_and_close(b);
}

asio::awaitable<DirectionEnd> splice_one_way(asio::ip::tcp::socket& from, asio::ip::tcp::socket& to,
                                             PipePool& pool, std::function<void(size_t)> on_bytes,
                                             const bool* keep_open_on_eof) {
  PipePool::Pipe pipe;
  for (;;) {
    if (!from.is_open() || !to.is_open()) {
      pool.release(pipe, true);
      co_return DirectionEnd::aborted;
    }
    if (pipe.read_fd < 0 && !pool.acquire(pipe)) {
      reset_both(from, to);  // out of descriptors: fail this connection, not the process
      co_return DirectionEnd::aborted;
    }
    ssize_t in =
        ::splice(from.native_handle(), nullptr, pipe.write_fd, nullptr, kPipeBytes, kSpliceFlags);
    if (in > 0) {
      size_t pending = static_cast<size_t>(in);
      while (pending > 0) {
        ssize_t out =
            ::splice(pipe.read_fd, nullptr, to.native_handle(), nullptr, pending, kSpliceFlags);
        if (out > 0) {
          pending -= static_cast<size_t>(out);
          on_bytes(static_cast<size_t>(out));
          continue;
        }
        if (out < 0 && errno == EAGAIN) {
          auto [error] = co_await to.async_wait(asio::ip::tcp::socket::wait_write, use_nothrow);
          if (!error) continue;
          pool.release(pipe, false);
          co_return DirectionEnd::aborted;
        }
        pool.release(pipe, false);  // the destination reset: pass it on to the source
        reset_both(from, to);
        co_return DirectionEnd::sink_failed;
      }
      continue;
    }
    if (in == 0) {
      pool.release(pipe, true);
      asio::error_code ignored;
      if (!keep_open_on_eof || !*keep_open_on_eof)
        to.shutdown(asio::ip::tcp::socket::shutdown_send, ignored);
      co_return DirectionEnd::eof;
    }
    if (errno == EAGAIN) {
      pool.release(pipe, true);  // idle: give the pipe back while waiting
      auto [error] = co_await from.async_wait(asio::ip::tcp::socket::wait_read, use_nothrow);
      if (error) co_return DirectionEnd::aborted;
      continue;
    }
    pool.release(pipe, true);
    reset_both(from, to);  // ECONNRESET and friends: the source reset
    co_return DirectionEnd::source_reset;
  }
}

}  // namespace egressd
