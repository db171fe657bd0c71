#include <doctest/doctest.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include <stdlib.h>
#include <sys/stat.h>

#include <filesystem>

#include "tls/authority.hpp"
#include "tls/secret_box.hpp"

using namespace egressd;

namespace {

struct TempDir {
  std::string path;
  TempDir() {
    char pattern[] = "/tmp/egressd-tls-XXXXXX";
    path = mkdtemp(pattern);
  }
  ~TempDir() { std::filesystem::remove_all(path); }
};

unsigned mode_of(const std::string& path) {
  struct stat info {};
  REQUIRE(::stat(path.c_str(), &info) == 0);
  return info.st_mode & 0777;
}

// Verifies the certificate `context` shows against the CA's PEM, for `name`.
bool verifies(const std::string& ca_pem, asio::ssl::context& context, const std::string& name) {
  X509* leaf = SSL_CTX_get0_certificate(context.native_handle());
  BIO* bio = BIO_new_mem_buf(ca_pem.data(), static_cast<int>(ca_pem.size()));
  X509* ca = PEM_read_bio_X509(bio, nullptr, nullptr, nullptr);
  BIO_free(bio);
  X509_STORE* store = X509_STORE_new();
  X509_STORE_add_cert(store, ca);
  X509_STORE_CTX* ctx = X509_STORE_CTX_new();
  X509_STORE_CTX_init(ctx, store, leaf, nullptr);
  X509_VERIFY_PARAM_set1_host(X509_STORE_CTX_get0_param(ctx), name.c_str(), 0);
  X509_VERIFY_PARAM_set_purpose(X509_STORE_CTX_get0_param(ctx), X509_PURPOSE_SSL_SERVER);
  bool ok = X509_verify_cert(ctx) == 1;
  X509_STORE_CTX_free(ctx);
  X509_STORE_free(store);
  X509_free(ca);
  return ok;
}

}  // namespace

TEST_CASE("SecretBox: sealed values open only with their key and their place") {
  TempDir dir;
  std::string key_path = dir.path + "/ca/secrets.key";
  auto opened = SecretBox::open(key_path);
  REQUIRE(std::holds_alternative<SecretBox>(opened));
  CHECK(mode_of(key_path) == 0600);
  CHECK(mode_of(dir.path + "/ca") == 0700);
  const SecretBox& box = std::get<SecretBox>(opened);
  std::string sealed = box.seal("sk-live-1", "one/openai");
  CHECK(sealed.find("sk-live-1") == std::string::npos);
  CHECK(box.seal("sk-live-1", "one/openai") != sealed);  // a fresh nonce each time
  CHECK(box.unseal(sealed, "one/openai") == "sk-live-1");
  CHECK_FALSE(box.unseal(sealed, "two/openai"));  // copied to another sandbox: does not open
  std::string altered = sealed;
  altered[20] = altered[20] == 'A' ? 'B' : 'A';
  CHECK_FALSE(box.unseal(altered, "one/openai"));
  CHECK_FALSE(box.unseal("not base64!", "one/openai"));
  CHECK_FALSE(box.unseal("", "one/openai"));
  CHECK(box.unseal(box.seal("", "x"), "x") == "");
  // The same key file opens the same box; another key does not.
  auto again = SecretBox::open(key_path);
  REQUIRE(std::holds_alternative<SecretBox>(again));
  CHECK(std::get<SecretBox>(again).unseal(sealed, "one/openai") == "sk-live-1");
  CHECK_FALSE(SecretBox::ephemeral().unseal(sealed, "one/openai"));
  // A key file of the wrong size is refused, not replaced.
  FILE* file = std::fopen(key_path.c_str(), "w");
  std::fputs("short", file);
  std::fclose(file);
  CHECK(std::holds_alternative<std::string>(SecretBox::open(key_path)));
}

TEST_CASE(
    "CertificateAuthority: created once (key 0600), loaded after; leaves verify for their name") {
  TempDir dir;
  std::string ca_dir = dir.path + "/ca";
  auto first = CertificateAuthority::open(ca_dir);
  REQUIRE(std::holds_alternative<std::shared_ptr<CertificateAuthority>>(first));
  auto ca = std::get<std::shared_ptr<CertificateAuthority>>(first);
  CHECK(mode_of(ca_dir + "/ca.key") == 0600);
  CHECK(ca->pem().starts_with("-----BEGIN CERTIFICATE-----"));
  auto second = CertificateAuthority::open(ca_dir);
  REQUIRE(std::holds_alternative<std::shared_ptr<CertificateAuthority>>(second));
  CHECK(std::get<std::shared_ptr<CertificateAuthority>>(second)->pem() == ca->pem());
  auto context = ca->server_context("api.openai.com");
  REQUIRE(context);
  CHECK(ca->server_context("api.openai.com") == context);  // cached
  CHECK(verifies(ca->pem(), *context, "api.openai.com"));
  CHECK_FALSE(verifies(ca->pem(), *context, "other.example"));
  // A name longer than a CN may be still gets a certificate (SAN only).
  std::string long_name = std::string(63, 'a') + "." + std::string(63, 'b') + ".example";
  auto long_context = ca->server_context(long_name);
  REQUIRE(long_context);
  CHECK(verifies(ca->pem(), *long_context, long_name));
  // Another CA does not vouch for these leaves.
  auto other = std::get<std::shared_ptr<CertificateAuthority>>(CertificateAuthority::open(""));
  CHECK_FALSE(verifies(other->pem(), *context, "api.openai.com"));
  // Half a CA (a lost key) is refused rather than silently replaced.
  std::filesystem::remove(ca_dir + "/ca.key");
  CHECK(std::holds_alternative<std::string>(CertificateAuthority::open(ca_dir)));
  CHECK(std::holds_alternative<std::string>(UpstreamTls::open(dir.path + "/missing.pem")));
  CHECK(std::holds_alternative<std::shared_ptr<UpstreamTls>>(UpstreamTls::open("system")));
}
