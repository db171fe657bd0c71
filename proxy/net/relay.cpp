#include "net/relay.hpp"

#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <asio/post.hpp>
#include <asio/use_awaitable.hpp>

#include "net/socket_options.hpp"

namespace egressd {
namespace {

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

void SpliceDirection::start(std::shared_ptr<void> keep_alive, Done done, bool wait_first) {
  keep_alive_ = std::move(keep_alive);
  done_ = std::move(done);
  if (wait_first) return wait(false);
  pump();
}

void SpliceDirection::end(DirectionEnd how) {
  ended_ = true;
  pool_.release(pipe_, pending_ == 0);
  pending_ = 0;
  // Nothing of `this` is touched after `done` runs: it may release the owner.
  Done done = std::move(done_);
  std::shared_ptr<void> keep_alive = std::move(keep_alive_);
  done(how);
}

void SpliceDirection::wait(bool for_write) {
  auto& socket = for_write ? to_ : from_;
  socket.async_wait(
      for_write ? asio::ip::tcp::socket::wait_write : asio::ip::tcp::socket::wait_read,
      [this, keep = keep_alive_](const asio::error_code& error) {
        if (error) return end(DirectionEnd::aborted);
        pump();
      });
}

void SpliceDirection::fail(DirectionEnd how) {
  reset_both(from_, to_);
  end(how);
}

void SpliceDirection::eof() {
  asio::error_code ignored;
  bool close_follows = peer_ && peer_->ended_;
  if (!close_follows && shuts_down_on_eof())
    to_.shutdown(asio::ip::tcp::socket::shutdown_send, ignored);
  end(DirectionEnd::eof);
}

// Copies what the source has to the destination, reading one chunk ahead before each send:
// when the source has closed as well (a response followed by FIN, the common end of a short
// connection), the last chunk is sent with MSG_MORE and leaves in one segment with the FIN.
// Returns true to go on in splice mode (a full read means bulk; a destination that cannot take
// a whole chunk leaves the rest parked in a pipe); false when the direction ended or waits.
bool SpliceDirection::copy_once() {
  constexpr size_t kChunk = PipePool::kScratchBytes / 2;
  char* chunk = pool_.scratch();
  char* ahead = chunk + kChunk;
  int source = from_.native_handle();
  ssize_t in = ::recv(source, chunk, kChunk, MSG_DONTWAIT);
  if (in == 0) {
    eof();
    return false;
  }
  if (in < 0) {
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
      wait(false);
    } else {
      fail(DirectionEnd::source_reset);  // ECONNRESET and friends: the source reset
    }
    return false;
  }
  size_t got = static_cast<size_t>(in);
  for (;;) {
    bool full = got == kChunk;
    ssize_t next = full ? -1 : ::recv(source, ahead, kChunk, MSG_DONTWAIT);
    if (!full && next < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
      fail(DirectionEnd::source_reset);
      return false;
    }
    bool source_eof = next == 0;
    bool fin_follows = source_eof && shuts_down_on_eof();
    int flags = MSG_DONTWAIT | MSG_NOSIGNAL | (fin_follows ? MSG_MORE : 0);
    ssize_t out = ::send(to_.native_handle(), chunk, got, flags);
    if (out < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
      fail(DirectionEnd::sink_failed);  // the destination reset: pass it on to the source
      return false;
    }
    size_t sent = out > 0 ? static_cast<size_t>(out) : 0;
    if (sent > 0) on_bytes_(sent);
    size_t later = next > 0 ? static_cast<size_t>(next) : 0;
    if (sent < got) return park(chunk + sent, got - sent, ahead, later);
    if (source_eof) {
      eof();
      return false;
    }
    if (full) {
      splicing_ = true;  // bulk from here on
      return true;
    }
    if (later == 0) {
      wait(false);  // the read ahead found nothing yet
      return false;
    }
    std::swap(chunk, ahead);
    got = later;
  }
}

// The destination is full: the unsent bytes go to a pipe (a fresh pipe holds at least 64 KiB,
// more than both halves of the scratch buffer) and the direction splices from here on. A source
// EOF already read is read again by the next splice.
bool SpliceDirection::park(const char* rest, size_t rest_size, const char* more, size_t more_size) {
  if (!pool_.acquire(pipe_) || ::write(pipe_.write_fd, rest, rest_size) != ssize_t(rest_size) ||
      (more_size > 0 && ::write(pipe_.write_fd, more, more_size) != ssize_t(more_size))) {
    fail(DirectionEnd::aborted);
    return false;
  }
  pending_ = rest_size + more_size;
  splicing_ = true;
  return true;
}

void SpliceDirection::pump() {
  for (;;) {
    if (!from_.is_open() || !to_.is_open()) return end(DirectionEnd::aborted);
    if (!splicing_) {
      if (!copy_once()) return;
      continue;
    }
    while (pending_ > 0) {
      ssize_t out =
          ::splice(pipe_.read_fd, nullptr, to_.native_handle(), nullptr, pending_, kSpliceFlags);
      if (out > 0) {
        pending_ -= static_cast<size_t>(out);
        on_bytes_(static_cast<size_t>(out));
        continue;
      }
      if (out < 0 && errno == EAGAIN) return wait(true);
      return fail(DirectionEnd::sink_failed);  // the destination reset: pass it on to the source
    }
    // Out of descriptors: fail this connection, not the process.
    if (pipe_.read_fd < 0 && !pool_.acquire(pipe_)) return fail(DirectionEnd::aborted);
    ssize_t in =
        ::splice(from_.native_handle(), nullptr, pipe_.write_fd, nullptr, kPipeBytes, kSpliceFlags);
    if (in > 0) {
      pending_ = static_cast<size_t>(in);
      continue;
    }
    if (in == 0) return eof();
    if (errno == EAGAIN) {
      pool_.release(pipe_, true);  // idle: give the pipe back while waiting
      return wait(false);
    }
    return fail(DirectionEnd::source_reset);  // ECONNRESET and friends: the source reset
  }
}

asio::awaitable<DirectionEnd> splice_one_way(asio::ip::tcp::socket& from, asio::ip::tcp::socket& to,
                                             PipePool& pool, std::function<void(size_t)> on_bytes,
                                             const bool* keep_open_on_eof) {
  SpliceDirection direction(from, to, pool, std::move(on_bytes), keep_open_on_eof);
  auto executor = from.get_executor();
  // A named initiation: GCC 12 destroys temporaries inside co_await expressions twice.
  auto initiation = [&direction, executor](auto handler) {
    auto shared = std::make_shared<decltype(handler)>(std::move(handler));
    direction.start(nullptr, [shared, executor](DirectionEnd how) {
      asio::post(executor, [shared, how]() mutable { (*shared)(how); });  // resume outside pump()
    });
  };
  DirectionEnd how =
      co_await asio::async_initiate<const asio::use_awaitable_t<>, void(DirectionEnd)>(
          initiation, asio::use_awaitable);
  co_return how;
}

}  // namespace egressd
