#include "core/hostname.hpp"

namespace egressd {
namespace {

bool is_ldh(unsigned char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-';
}

}  // namespace

std::string_view hostname_error(std::string_view text) {
  if (!text.empty() && text.back() == '.') text.remove_suffix(1);
  if (text.empty()) return "empty name";
  if (text.size() > 253) return "name longer than 253 bytes";
  size_t label_start = 0;
  bool last_label_all_digits = true;
  for (size_t i = 0; i <= text.size(); ++i) {
    if (i == text.size() || text[i] == '.') {
      size_t length = i - label_start;
      if (length == 0) return "empty label";
      if (length > 63) return "label longer than 63 bytes";
      if (text[label_start] == '-' || text[i - 1] == '-') return "label starts or ends with '-'";
      label_start = i + 1;
      if (i != text.size()) last_label_all_digits = true;
      continue;
    }
    auto c = static_cast<unsigned char>(text[i]);
    if (c >= 0x80) return "non-ASCII byte (write internationalised names as punycode, xn--)";
    if (!is_ldh(c)) return "invalid character (only letters, digits, '-' and '.')";
    if (c < '0' || c > '9') last_label_all_digits = false;
  }
  if (last_label_all_digits) return "last label is all digits (an address, not a name)";
  return {};
}

std::variant<Hostname, std::string> Hostname::parse(std::string_view text) {
  if (auto error = hostname_error(text); !error.empty()) return std::string(error);
  if (text.back() == '.') text.remove_suffix(1);
  std::string value(text);
  for (char& c : value) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return Hostname(std::move(value));
}

}  // namespace egressd
