#pragma once
// One side of an intercepted TLS connection (DESIGN.md "Request transforms"): OpenSSL over
// memory BIOs, driven by the session's socket, so that the ClientHello egressd has already
// read can be handed to the handshake, a half-close is a close_notify plus shutdown(SHUT_WR)
// while the other direction still reads, and one read and one write may be in flight at once
// (each direction of the relay owns one). All on the worker's single thread.
#include <openssl/ssl.h>

#include <asio/awaitable.hpp>
#include <asio/buffer.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/steady_timer.hpp>

#include <memory>
#include <span>
#include <string>
#include <tuple>

namespace egressd {

class TlsChannel {
 public:
  // `server`: egressd answers the handshake (the sandbox side); else it starts it (origin).
  TlsChannel(asio::ip::tcp::socket& socket, SSL_CTX* context, bool server);
  ~TlsChannel();
  TlsChannel(const TlsChannel&) = delete;
  TlsChannel& operator=(const TlsChannel&) = delete;

  SSL* ssl() { return ssl_.get(); }
  // Bytes that arrived before the handshake began (the peeked ClientHello).
  void feed(std::span<const uint8_t> bytes);
  // Runs the handshake; empty on success, else why it failed (verification or protocol).
  asio::awaitable<std::string> handshake();
  bool verified() const;  // the peer certificate passed verification (client side)

  // asio-like: (error, n); eof when the peer closed (close_notify or TCP end).
  asio::awaitable<std::tuple<asio::error_code, size_t>> read_some(asio::mutable_buffer buffer);
  asio::awaitable<std::tuple<asio::error_code, size_t>> write(asio::const_buffer buffer);
  // close_notify, then shutdown(SHUT_WR): the other direction keeps reading.
  asio::awaitable<void> shutdown_send();
  asio::ip::tcp::socket& socket() { return socket_; }

 private:
  // Sends what OpenSSL has queued; one flush at a time, the others wait for it.
  asio::awaitable<asio::error_code> flush();
  // Reads from the socket into OpenSSL's input.
  asio::awaitable<asio::error_code> fill();

  struct SslFree {
    void operator()(SSL* ssl) const { SSL_free(ssl); }
  };
  asio::ip::tcp::socket& socket_;
  std::unique_ptr<SSL, SslFree> ssl_;
  BIO* in_ = nullptr;   // owned by ssl_
  BIO* out_ = nullptr;  // owned by ssl_
  bool flushing_ = false;
  asio::steady_timer flushed_;  // cancelled when a flush ends, to wake the writers waiting
  std::unique_ptr<uint8_t[]> scratch_;
};

}  // namespace egressd
