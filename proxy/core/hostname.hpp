#pragma once
// Canonical host names. Names enter policy code only as a Hostname: ASCII lower case, one
// trailing dot removed, LDH labels of 1-63 bytes, at most 253 bytes, last label not all digits.
#include <string>
#include <string_view>
#include <variant>

namespace egressd {

class Hostname {
 public:
  // Returns the canonical name, or a message saying why `text` is not a valid host name.
  static std::variant<Hostname, std::string> parse(std::string_view text);

  const std::string& str() const { return value_; }
  bool operator==(const Hostname&) const = default;

 private:
  explicit Hostname(std::string value) : value_(std::move(value)) {}
  std::string value_;
};

// Why `text` is not a canonical-able host name, or empty when it is. Does not allocate.
std::string_view hostname_error(std::string_view text);

}  // namespace egressd
