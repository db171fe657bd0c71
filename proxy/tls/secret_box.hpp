#pragma once
// Secrets at rest (DESIGN.md "Request transforms"): AES-256-GCM with a 256-bit key kept in its
// own file (mode 0600), apart from the state files that hold the sealed values. Each value is
// bound to where it belongs (sandbox id and secret name as additional data), so a sealed value
// copied into another sandbox's file does not open.
#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <variant>

namespace egressd {

class SecretBox {
 public:
  // Reads the key from `path`, creating it (0600, in a 0700 directory) when absent.
  static std::variant<SecretBox, std::string> open(const std::string& path);
  // A key that lives in memory only (no state_dir: nothing is written anyway).
  static SecretBox ephemeral();

  // base64(nonce 12 | ciphertext | tag 16).
  std::string seal(std::string_view plaintext, std::string_view context) const;
  // Nothing when the value was not sealed with this key and context (or was altered).
  std::optional<std::string> unseal(std::string_view sealed, std::string_view context) const;

 private:
  SecretBox() = default;
  std::array<uint8_t, 32> key_{};
};

}  // namespace egressd
