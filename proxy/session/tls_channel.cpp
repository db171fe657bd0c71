#include "session/tls_channel.hpp"

#include <openssl/err.h>
#include <openssl/x509.h>

#include <asio/write.hpp>

#include "util/asio_tokens.hpp"

namespace egressd {
namespace {

constexpr size_t kScratch = 16384;

std::string ssl_error_text() {
  unsigned long code = ERR_get_error();
  ERR_clear_error();
  if (!code) return "TLS handshake failed";
  char text[256];
  ERR_error_string_n(code, text, sizeof(text));
  return text;
}

}  // namespace

TlsChannel::TlsChannel(asio::ip::tcp::socket& socket, SSL_CTX* context, bool server)
    : socket_(socket),
      ssl_(SSL_new(context)),
      flushed_(socket.get_executor()),
      scratch_(std::make_unique_for_overwrite<uint8_t[]>(kScratch)) {
  flushed_.expires_at(asio::steady_timer::time_point::max());
  in_ = BIO_new(BIO_s_mem());
  out_ = BIO_new(BIO_s_mem());
  BIO_set_mem_eof_return(in_, -1);  // empty input: "retry", not end of stream
  SSL_set_bio(ssl_.get(), in_, out_);
  if (server) {
    SSL_set_accept_state(ssl_.get());
  } else {
    SSL_set_connect_state(ssl_.get());
  }
}

TlsChannel::~TlsChannel() = default;

void TlsChannel::feed(std::span<const uint8_t> bytes) {
  if (!bytes.empty()) BIO_write(in_, bytes.data(), static_cast<int>(bytes.size()));
}

bool TlsChannel::verified() const {
  return SSL_get_verify_result(ssl_.get()) == X509_V_OK &&
         SSL_get0_peer_certificate(ssl_.get()) != nullptr;
}

asio::awaitable<asio::error_code> TlsChannel::flush() {
  while (flushing_) co_await flushed_.async_wait(use_nothrow);  // woken by the flush in progress
  flushing_ = true;
  asio::error_code error;
  while (!error && BIO_ctrl_pending(out_) > 0) {
    int n = BIO_read(out_, scratch_.get(), static_cast<int>(kScratch));
    if (n <= 0) break;
    std::tie(error, std::ignore) = co_await asio::async_write(
        socket_, asio::buffer(scratch_.get(), static_cast<size_t>(n)), use_nothrow);
  }
  flushing_ = false;
  flushed_.cancel();
  co_return error;
}

asio::awaitable<asio::error_code> TlsChannel::fill() {
  uint8_t buffer[kScratch];
  auto [error, n] = co_await socket_.async_read_some(asio::buffer(buffer), use_nothrow);
  if (error) co_return error;
  BIO_write(in_, buffer, static_cast<int>(n));
  co_return asio::error_code();
}

asio::awaitable<std::string> TlsChannel::handshake() {
  for (;;) {
    ERR_clear_error();
    int result = SSL_do_handshake(ssl_.get());
    int reason = result == 1 ? SSL_ERROR_NONE : SSL_get_error(ssl_.get(), result);
    // Whatever the handshake produced goes out first, the alert of a failure included.
    if (auto error = co_await flush(); error && reason != SSL_ERROR_SSL)
      co_return "send: " + error.message();
    if (result == 1) co_return std::string();
    if (reason != SSL_ERROR_WANT_READ) {
      long verify = SSL_get_verify_result(ssl_.get());
      if (verify != X509_V_OK)
        co_return std::string("certificate: ") + X509_verify_cert_error_string(verify);
      co_return ssl_error_text();
    }
    if (auto error = co_await fill()) co_return "receive: " + error.message();
  }
}

asio::awaitable<std::tuple<asio::error_code, size_t>> TlsChannel::read_some(
    asio::mutable_buffer buffer) {
  for (;;) {
    size_t n = 0;
    ERR_clear_error();
    int result = SSL_read_ex(ssl_.get(), buffer.data(), buffer.size(), &n);
    int reason = result == 1 ? SSL_ERROR_NONE : SSL_get_error(ssl_.get(), result);
    if (BIO_ctrl_pending(out_) > 0) {  // a KeyUpdate answer, a ticket: sent at once
      if (auto error = co_await flush()) co_return std::make_tuple(error, size_t{0});
    }
    if (result == 1) co_return std::make_tuple(asio::error_code(), n);
    if (reason == SSL_ERROR_ZERO_RETURN)
      co_return std::make_tuple(asio::error_code(asio::error::eof), size_t{0});
    if (reason != SSL_ERROR_WANT_READ) {
      ERR_clear_error();
      co_return std::make_tuple(asio::error_code(asio::error::connection_reset), size_t{0});
    }
    if (auto error = co_await fill()) co_return std::make_tuple(error, size_t{0});
  }
}

asio::awaitable<std::tuple<asio::error_code, size_t>> TlsChannel::write(asio::const_buffer buffer) {
  size_t n = 0;
  ERR_clear_error();
  // Memory BIOs take everything: the record layer never waits, the flush does.
  if (SSL_write_ex(ssl_.get(), buffer.data(), buffer.size(), &n) != 1) {
    ERR_clear_error();
    co_return std::make_tuple(asio::error_code(asio::error::connection_reset), size_t{0});
  }
  auto error = co_await flush();
  co_return std::make_tuple(error, error ? size_t{0} : n);
}

asio::awaitable<void> TlsChannel::shutdown_send() {
  ERR_clear_error();
  SSL_shutdown(ssl_.get());  // queues close_notify; the peer's is not waited for
  ERR_clear_error();
  co_await flush();
  asio::error_code ignored;
  socket_.shutdown(asio::ip::tcp::socket::shutdown_send, ignored);
}

}  // namespace egressd
