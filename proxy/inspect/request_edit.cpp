#include "inspect/request_edit.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>

namespace egressd {
namespace {

bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return (x | 0x20) == (y | 0x20);
         });
}

}  // namespace

std::string edit_head(const ParsedHead& head, const RequestEdit& edit,
                      std::optional<size_t> content_length) {
  std::string out;
  out.reserve(256 + head.target.size() + 64 * head.headers.size());
  out.append(head.method);
  out += ' ';
  out.append(head.target);
  out += " HTTP/";
  out += static_cast<char>('0' + head.http_major % 10);
  out += '.';
  out += static_cast<char>('0' + head.http_minor % 10);
  out += "\r\n";
  for (const auto& field : head.headers) {
    std::string_view name = field.first, value = field.second;
    bool replaced = std::any_of(edit.headers.begin(), edit.headers.end(),
                                [&](const auto& header) { return iequals(header.first, name); });
    if (content_length)
      replaced = replaced || iequals(name, "content-length") || iequals(name, "transfer-encoding");
    if (replaced) continue;
    out.append(name);
    out += ": ";
    // A folded or otherwise odd value llhttp let through is one line on the way out.
    std::string_view text = value;
    while (!text.empty() && (text.back() == ' ' || text.back() == '\t')) text.remove_suffix(1);
    for (char c : text) out += (c == '\r' || c == '\n') ? ' ' : c;
    out += "\r\n";
  }
  for (const auto& [name, value] : edit.headers) {
    out += name;
    out += ": ";
    out += value;
    out += "\r\n";
  }
  if (content_length) out += "Content-Length: " + std::to_string(*content_length) + "\r\n";
  out += "\r\n";
  return out;
}

std::optional<std::string> edit_json_body(std::string_view body, const RequestEdit& edit) {
  auto json = nlohmann::ordered_json::parse(body, nullptr, false);
  if (json.is_discarded() || !json.is_object()) return std::nullopt;
  for (const auto& [field, value] : edit.body) json[field] = value;
  // Invalid UTF-8 in a secret or field is replaced, never a reason to throw on the data path.
  return json.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
}

}  // namespace egressd
