#include "tls/secret_box.hpp"

#include <fcntl.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <memory>
#include <vector>

namespace egressd {
namespace {

constexpr size_t kNonce = 12;
constexpr size_t kTag = 16;

struct CipherFree {
  void operator()(EVP_CIPHER_CTX* ctx) const { EVP_CIPHER_CTX_free(ctx); }
};
using Cipher = std::unique_ptr<EVP_CIPHER_CTX, CipherFree>;

std::string base64(const std::vector<uint8_t>& bytes) {
  std::string out(4 * ((bytes.size() + 2) / 3), '\0');
  int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()), bytes.data(),
                          static_cast<int>(bytes.size()));
  out.resize(static_cast<size_t>(n));
  return out;
}

std::optional<std::vector<uint8_t>> unbase64(std::string_view text) {
  if (text.empty() || text.size() % 4 != 0) return std::nullopt;
  std::vector<uint8_t> out(text.size() / 4 * 3);
  int n = EVP_DecodeBlock(out.data(), reinterpret_cast<const unsigned char*>(text.data()),
                          static_cast<int>(text.size()));
  if (n < 0) return std::nullopt;
  size_t padding = text.ends_with("==") ? 2 : text.ends_with("=") ? 1 : 0;
  out.resize(static_cast<size_t>(n) - padding);
  return out;
}

std::string errno_text(const std::string& what) {
  return what + ": " + std::strerror(errno);
}

}  // namespace

std::variant<SecretBox, std::string> SecretBox::open(const std::string& path) {
  SecretBox box;
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd >= 0) {
    ssize_t n = ::read(fd, box.key_.data(), box.key_.size());
    uint8_t extra = 0;
    ssize_t more = ::read(fd, &extra, 1);
    ::close(fd);
    if (n != static_cast<ssize_t>(box.key_.size()) || more != 0)
      return path +
             ": not a 32-byte key; refusing to guess (restore it or remove it, which "
             "makes the stored secrets unreadable)";
    return box;
  }
  if (errno != ENOENT) return errno_text("open " + path);
  std::string dir = path.substr(0, path.rfind('/'));
  if (!dir.empty() && ::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST)
    return errno_text("mkdir " + dir);
  if (RAND_bytes(box.key_.data(), static_cast<int>(box.key_.size())) != 1)
    return "no random bytes for the secrets key";
  std::string temp = path + ".tmp";
  fd = ::open(temp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return errno_text("open " + temp);
  bool ok =
      ::write(fd, box.key_.data(), box.key_.size()) == static_cast<ssize_t>(box.key_.size()) &&
      ::fsync(fd) == 0;
  ::close(fd);
  if (!ok || ::rename(temp.c_str(), path.c_str()) != 0) return errno_text("write " + path);
  return box;
}

SecretBox SecretBox::ephemeral() {
  SecretBox box;
  RAND_bytes(box.key_.data(), static_cast<int>(box.key_.size()));
  return box;
}

std::string SecretBox::seal(std::string_view plaintext, std::string_view context) const {
  std::vector<uint8_t> out(kNonce + plaintext.size() + kTag);
  RAND_bytes(out.data(), kNonce);
  Cipher ctx(EVP_CIPHER_CTX_new());
  int n = 0;
  EVP_EncryptInit_ex(ctx.get(), EVP_aes_256_gcm(), nullptr, key_.data(), out.data());
  EVP_EncryptUpdate(ctx.get(), nullptr, &n, reinterpret_cast<const uint8_t*>(context.data()),
                    static_cast<int>(context.size()));
  EVP_EncryptUpdate(ctx.get(), out.data() + kNonce, &n,
                    reinterpret_cast<const uint8_t*>(plaintext.data()),
                    static_cast<int>(plaintext.size()));
  EVP_EncryptFinal_ex(ctx.get(), out.data() + kNonce + n, &n);
  EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_GET_TAG, kTag,
                      out.data() + kNonce + plaintext.size());
  return base64(out);
}

std::optional<std::string> SecretBox::unseal(std::string_view sealed,
                                             std::string_view context) const {
  auto bytes = unbase64(sealed);
  if (!bytes || bytes->size() < kNonce + kTag) return std::nullopt;
  size_t length = bytes->size() - kNonce - kTag;
  std::string out(length, '\0');
  Cipher ctx(EVP_CIPHER_CTX_new());
  int n = 0;
  EVP_DecryptInit_ex(ctx.get(), EVP_aes_256_gcm(), nullptr, key_.data(), bytes->data());
  EVP_DecryptUpdate(ctx.get(), nullptr, &n, reinterpret_cast<const uint8_t*>(context.data()),
                    static_cast<int>(context.size()));
  EVP_DecryptUpdate(ctx.get(), reinterpret_cast<uint8_t*>(out.data()), &n, bytes->data() + kNonce,
                    static_cast<int>(length));
  EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_SET_TAG, kTag, bytes->data() + kNonce + length);
  if (EVP_DecryptFinal_ex(ctx.get(), reinterpret_cast<uint8_t*>(out.data()) + n, &n) != 1)
    return std::nullopt;
  return out;
}

}  // namespace egressd
