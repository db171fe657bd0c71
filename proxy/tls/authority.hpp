#pragma once
// The interception CA (DESIGN.md "Request transforms"): created in intercept.ca_dir at first
// start (ca.pem, ca.key 0600) or loaded from there; leaf certificates for the names egressd
// intercepts are issued on the fly (one P-256 key for all leaves, kept in memory) and cached
// as ready server contexts (TLS 1.2-1.3, ALPN http/1.1 only). Thread-safe.
#include <asio/ssl/context.hpp>

#include <chrono>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <variant>

namespace egressd {

class CertificateAuthority {
 public:
  // `dir` empty: a CA that lives in memory only (nothing to persist it in).
  static std::variant<std::shared_ptr<CertificateAuthority>, std::string> open(
      const std::string& dir);
  ~CertificateAuthority();
  CertificateAuthority(const CertificateAuthority&) = delete;
  CertificateAuthority& operator=(const CertificateAuthority&) = delete;

  const std::string& pem() const { return pem_; }
  // A server context for `name` (canonical), issued on first use; nullptr if issuing failed.
  std::shared_ptr<asio::ssl::context> server_context(const std::string& name);
  size_t cached() const;

 private:
  CertificateAuthority() = default;
  std::shared_ptr<asio::ssl::context> issue(const std::string& name);

  struct Keys;
  std::unique_ptr<Keys> keys_;
  std::string pem_;
  mutable std::mutex mutex_;
  struct Entry {
    std::shared_ptr<asio::ssl::context> context;
    std::chrono::system_clock::time_point issued;
  };
  std::unordered_map<std::string, Entry> cache_;
  std::deque<std::string> order_;  // oldest first, for the cap
};

// The origin side: a client context that verifies against `upstream_ca` ("system": the
// system trust store; else a PEM file), with a session cache per origin (name and address):
// a resumed handshake skips the certificate chain, which is most of a full one's cost.
// TLS 1.3 tickets are used once (taken from the cache when a connection starts; the
// connection's own new ticket replaces it).
class UpstreamTls {
 public:
  static std::variant<std::shared_ptr<UpstreamTls>, std::string> open(
      const std::string& upstream_ca);
  ~UpstreamTls();
  SSL_CTX* native_handle() { return context_.native_handle(); }
  // Before the handshake: remembers `key` for the tickets this connection gets, and resumes
  // the session cached under it, if any.
  void prepare(SSL* ssl, const std::string& key);
  size_t cached() const;

 private:
  UpstreamTls() : context_(asio::ssl::context::tls_client) {}
  static int on_new_session(SSL* ssl, SSL_SESSION* session);
  asio::ssl::context context_;
  mutable std::mutex mutex_;
  std::unordered_map<std::string, SSL_SESSION*> sessions_;
  std::deque<std::string> order_;
};

}  // namespace egressd
