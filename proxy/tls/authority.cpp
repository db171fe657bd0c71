#include "tls/authority.hpp"

#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>

namespace egressd {
namespace {

constexpr size_t kMaxCached = 4096;
constexpr auto kLeafLifetime = std::chrono::hours(24 * 7);
constexpr auto kReissueAfter = std::chrono::hours(24 * 6);

struct KeyFree {
  void operator()(EVP_PKEY* key) const { EVP_PKEY_free(key); }
};
struct CertFree {
  void operator()(X509* cert) const { X509_free(cert); }
};
using Key = std::unique_ptr<EVP_PKEY, KeyFree>;
using Cert = std::unique_ptr<X509, CertFree>;

std::string openssl_error() {
  unsigned long code = ERR_get_error();
  if (!code) return "unknown OpenSSL error";
  char text[256];
  ERR_error_string_n(code, text, sizeof(text));
  ERR_clear_error();
  return text;
}

bool random_serial(X509* cert) {
  BIGNUM* serial = BN_new();
  bool ok = serial && BN_rand(serial, 127, BN_RAND_TOP_ANY, BN_RAND_BOTTOM_ANY) == 1 &&
            BN_to_ASN1_INTEGER(serial, X509_get_serialNumber(cert)) != nullptr;
  BN_free(serial);
  return ok;
}

bool add_extension(X509* cert, X509* issuer, int nid, const char* value) {
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, issuer, cert, nullptr, nullptr, 0);
  X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value);
  if (!ext) return false;
  bool ok = X509_add_ext(cert, ext, -1) == 1;
  X509_EXTENSION_free(ext);
  return ok;
}

std::string to_pem(X509* cert) {
  BIO* bio = BIO_new(BIO_s_mem());
  PEM_write_bio_X509(bio, cert);
  char* data = nullptr;
  long length = BIO_get_mem_data(bio, &data);
  std::string out(data, static_cast<size_t>(length));
  BIO_free(bio);
  return out;
}

std::string read_file(const std::string& path, bool& found) {
  std::ifstream in(path);
  found = static_cast<bool>(in);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

std::string write_file(const std::string& path, const std::string& text, mode_t mode) {
  std::string temp = path + ".tmp";
  FILE* file = std::fopen(temp.c_str(), "w");
  if (!file) return "open " + temp + ": " + std::strerror(errno);
  ::fchmod(fileno(file), mode);
  bool ok = std::fwrite(text.data(), 1, text.size(), file) == text.size() &&
            std::fflush(file) == 0 && ::fsync(fileno(file)) == 0;
  std::fclose(file);
  if (!ok || std::rename(temp.c_str(), path.c_str()) != 0)
    return "write " + path + ": " + std::strerror(errno);
  return {};
}

int select_http11(SSL*, const unsigned char** out, unsigned char* out_length,
                  const unsigned char* in, unsigned int in_length, void*) {
  static const unsigned char kHttp11[] = {8, 'h', 't', 't', 'p', '/', '1', '.', '1'};
  unsigned char* selected = nullptr;
  if (SSL_select_next_proto(&selected, out_length, kHttp11, sizeof(kHttp11), in, in_length) !=
      OPENSSL_NPN_NEGOTIATED)
    return SSL_TLSEXT_ERR_NOACK;  // no http/1.1 offered: no ALPN, HTTP/1.1 all the same
  *out = selected;
  return SSL_TLSEXT_ERR_OK;
}

}  // namespace

struct CertificateAuthority::Keys {
  Key ca_key;
  Cert ca_cert;
  Key leaf_key;
};

CertificateAuthority::~CertificateAuthority() = default;

std::variant<std::shared_ptr<CertificateAuthority>, std::string> CertificateAuthority::open(
    const std::string& dir) {
  std::shared_ptr<CertificateAuthority> ca(new CertificateAuthority());
  ca->keys_ = std::make_unique<Keys>();
  Keys& keys = *ca->keys_;
  keys.leaf_key.reset(EVP_EC_gen("P-256"));
  if (!keys.leaf_key) return "cannot create the leaf key: " + openssl_error();
  std::string cert_path = dir + "/ca.pem", key_path = dir + "/ca.key";
  bool have_cert = false, have_key = false;
  std::string cert_text, key_text;
  if (!dir.empty()) {
    cert_text = read_file(cert_path, have_cert);
    key_text = read_file(key_path, have_key);
  }
  if (have_cert != have_key)
    return "found only one of " + cert_path + " and " + key_path + "; restore the other or " +
           "remove both to create a new CA (sandboxes must then trust the new one)";
  if (have_cert) {
    BIO* bio = BIO_new_mem_buf(cert_text.data(), static_cast<int>(cert_text.size()));
    keys.ca_cert.reset(PEM_read_bio_X509(bio, nullptr, nullptr, nullptr));
    BIO_free(bio);
    bio = BIO_new_mem_buf(key_text.data(), static_cast<int>(key_text.size()));
    keys.ca_key.reset(PEM_read_bio_PrivateKey(bio, nullptr, nullptr, nullptr));
    BIO_free(bio);
    if (!keys.ca_cert || !keys.ca_key) return cert_path + ": not a PEM certificate and key";
    if (X509_check_private_key(keys.ca_cert.get(), keys.ca_key.get()) != 1)
      return key_path + " is not the key of " + cert_path;
    ca->pem_ = to_pem(keys.ca_cert.get());
    return ca;
  }
  keys.ca_key.reset(EVP_EC_gen("P-256"));
  keys.ca_cert.reset(X509_new());
  X509* cert = keys.ca_cert.get();
  char host[256] = "localhost";
  ::gethostname(host, sizeof(host) - 1);
  std::string common = std::string("egressd interception CA (") + host + ")";
  if (common.size() > 64) common = "egressd interception CA";
  X509_NAME* name = X509_get_subject_name(cert);
  bool ok = keys.ca_key && X509_set_version(cert, 2) == 1 && random_serial(cert) &&
            X509_gmtime_adj(X509_getm_notBefore(cert), -3600) &&
            X509_gmtime_adj(X509_getm_notAfter(cert), 10L * 365 * 24 * 3600) &&
            X509_NAME_add_entry_by_txt(name, "O", MBSTRING_ASC,
                                       reinterpret_cast<const unsigned char*>("egressd"), -1, -1,
                                       0) == 1 &&
            X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                                       reinterpret_cast<const unsigned char*>(common.c_str()), -1,
                                       -1, 0) == 1 &&
            X509_set_issuer_name(cert, name) == 1 &&
            X509_set_pubkey(cert, keys.ca_key.get()) == 1 &&
            add_extension(cert, cert, NID_basic_constraints, "critical,CA:TRUE,pathlen:0") &&
            add_extension(cert, cert, NID_key_usage, "critical,keyCertSign,cRLSign") &&
            add_extension(cert, cert, NID_subject_key_identifier, "hash") &&
            add_extension(cert, cert, NID_authority_key_identifier, "keyid:always") &&
            X509_sign(cert, keys.ca_key.get(), EVP_sha256()) > 0;
  if (!ok) return "cannot create the interception CA: " + openssl_error();
  ca->pem_ = to_pem(cert);
  if (!dir.empty()) {
    if (::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST)
      return "mkdir " + dir + ": " + std::strerror(errno);
    BIO* bio = BIO_new(BIO_s_mem());
    PEM_write_bio_PrivateKey(bio, keys.ca_key.get(), nullptr, nullptr, 0, nullptr, nullptr);
    char* data = nullptr;
    long length = BIO_get_mem_data(bio, &data);
    std::string key_pem(data, static_cast<size_t>(length));
    BIO_free(bio);
    // The key first: a certificate without its key is never left behind alone.
    if (auto error = write_file(key_path, key_pem, 0600); !error.empty()) return error;
    if (auto error = write_file(cert_path, ca->pem_, 0644); !error.empty()) return error;
  }
  return ca;
}

std::shared_ptr<asio::ssl::context> CertificateAuthority::issue(const std::string& host) {
  Cert leaf(X509_new());
  X509* cert = leaf.get();
  X509_NAME* subject = X509_get_subject_name(cert);
  std::string san = "DNS:" + host;
  bool ok =
      X509_set_version(cert, 2) == 1 && random_serial(cert) &&
      X509_gmtime_adj(X509_getm_notBefore(cert), -3600) &&
      X509_gmtime_adj(X509_getm_notAfter(cert),
                      std::chrono::duration_cast<std::chrono::seconds>(kLeafLifetime).count()) &&
      (host.size() > 64 ||  // CN is at most 64 characters; the SAN is what clients check
       X509_NAME_add_entry_by_txt(subject, "CN", MBSTRING_ASC,
                                  reinterpret_cast<const unsigned char*>(host.c_str()), -1, -1,
                                  0) == 1) &&
      X509_set_issuer_name(cert, X509_get_subject_name(keys_->ca_cert.get())) == 1 &&
      X509_set_pubkey(cert, keys_->leaf_key.get()) == 1 &&
      add_extension(cert, keys_->ca_cert.get(), NID_basic_constraints, "critical,CA:FALSE") &&
      add_extension(cert, keys_->ca_cert.get(), NID_key_usage, "critical,digitalSignature") &&
      add_extension(cert, keys_->ca_cert.get(), NID_ext_key_usage, "serverAuth") &&
      add_extension(cert, keys_->ca_cert.get(), NID_subject_alt_name, san.c_str()) &&
      add_extension(cert, keys_->ca_cert.get(), NID_authority_key_identifier, "keyid:always") &&
      X509_sign(cert, keys_->ca_key.get(), EVP_sha256()) > 0;
  if (!ok) {
    ERR_clear_error();
    return nullptr;
  }
  auto context = std::make_shared<asio::ssl::context>(asio::ssl::context::tls_server);
  SSL_CTX* ctx = context->native_handle();
  SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
  SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE);
  SSL_CTX_set_alpn_select_cb(ctx, select_http11, nullptr);
  if (SSL_CTX_use_certificate(ctx, cert) != 1 ||
      SSL_CTX_use_PrivateKey(ctx, keys_->leaf_key.get()) != 1) {
    ERR_clear_error();
    return nullptr;
  }
  return context;
}

std::shared_ptr<asio::ssl::context> CertificateAuthority::server_context(const std::string& name) {
  auto now = std::chrono::system_clock::now();
  {
    std::lock_guard lock(mutex_);
    if (auto found = cache_.find(name);
        found != cache_.end() && now - found->second.issued < kReissueAfter)
      return found->second.context;
  }
  auto context = issue(name);  // outside the lock: signing is the slow part
  if (!context) return nullptr;
  std::lock_guard lock(mutex_);
  if (cache_.find(name) == cache_.end()) {
    if (cache_.size() >= kMaxCached) {
      cache_.erase(order_.front());
      order_.pop_front();
    }
    order_.push_back(name);
  }
  cache_[name] = Entry{context, now};
  return context;
}

size_t CertificateAuthority::cached() const {
  std::lock_guard lock(mutex_);
  return cache_.size();
}

namespace {

// Where an upstream SSL keeps its cache key and its UpstreamTls (ex_data indexes, made once).
int key_index() {
  static int index = SSL_get_ex_new_index(0, nullptr, nullptr, nullptr,
                                          [](void*, void* data, CRYPTO_EX_DATA*, int, long, void*) {
                                            delete static_cast<std::string*>(data);
                                          });
  return index;
}
int owner_index() {
  static int index = SSL_CTX_get_ex_new_index(0, nullptr, nullptr, nullptr, nullptr);
  return index;
}

}  // namespace

std::variant<std::shared_ptr<UpstreamTls>, std::string> UpstreamTls::open(
    const std::string& upstream_ca) {
  std::shared_ptr<UpstreamTls> tls(new UpstreamTls());
  SSL_CTX* ctx = tls->context_.native_handle();
  SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
  SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION);
  SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, nullptr);
  static const unsigned char kHttp11[] = {8, 'h', 't', 't', 'p', '/', '1', '.', '1'};
  SSL_CTX_set_alpn_protos(ctx, kHttp11, sizeof(kHttp11));
  int loaded = upstream_ca == "system"
                   ? SSL_CTX_set_default_verify_paths(ctx)
                   : SSL_CTX_load_verify_locations(ctx, upstream_ca.c_str(), nullptr);
  if (loaded != 1) return "intercept.upstream_ca " + upstream_ca + ": " + openssl_error();
  SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
  SSL_CTX_set_ex_data(ctx, owner_index(), tls.get());
  SSL_CTX_sess_set_new_cb(ctx, on_new_session);
  return tls;
}

UpstreamTls::~UpstreamTls() {
  for (auto& [key, session] : sessions_) SSL_SESSION_free(session);
}

void UpstreamTls::prepare(SSL* ssl, const std::string& key) {
  SSL_set_ex_data(ssl, key_index(), new std::string(key));
  SSL_SESSION* session = nullptr;
  {
    std::lock_guard lock(mutex_);
    auto found = sessions_.find(key);
    if (found == sessions_.end()) return;
    session = found->second;
    sessions_.erase(found);  // used once: TLS 1.3 tickets are single-use
  }
  SSL_set_session(ssl, session);
  SSL_SESSION_free(session);  // SSL_set_session took its own reference
}

int UpstreamTls::on_new_session(SSL* ssl, SSL_SESSION* session) {
  auto* key = static_cast<std::string*>(SSL_get_ex_data(ssl, key_index()));
  auto* self = static_cast<UpstreamTls*>(SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl), owner_index()));
  if (!key || !self) return 0;
  std::lock_guard lock(self->mutex_);
  auto [it, fresh] = self->sessions_.emplace(*key, session);
  if (!fresh) {
    SSL_SESSION_free(it->second);
    it->second = session;
    return 1;
  }
  self->order_.push_back(*key);
  if (self->order_.size() > 2 * kMaxCached) {  // keys taken and cached again: rebuild the order
    self->order_.clear();
    for (const auto& [cached_key, cached] : self->sessions_) self->order_.push_back(cached_key);
  }
  while (self->sessions_.size() > kMaxCached && !self->order_.empty()) {
    auto old = self->sessions_.find(self->order_.front());
    self->order_.pop_front();
    if (old != self->sessions_.end() && old->first != *key) {
      SSL_SESSION_free(old->second);
      self->sessions_.erase(old);
    }
  }
  return 1;  // the cache keeps this reference
}

size_t UpstreamTls::cached() const {
  std::lock_guard lock(mutex_);
  return sessions_.size();
}

}  // namespace egressd
