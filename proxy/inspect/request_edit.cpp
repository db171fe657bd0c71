#include "inspect/request_edit.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <vector>

namespace egressd {
namespace {

bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return (x | 0x20) == (y | 0x20);
         });
}

}  // namespace

std::string edit_head(std::string_view head, const RequestEdit& edit,
                      std::optional<size_t> content_length) {
  std::vector<std::string_view> lines;
  size_t at = 0;
  while (at < head.size()) {
    size_t end = head.find('\n', at);
    if (end == std::string_view::npos) end = head.size();
    std::string_view line = head.substr(at, end - at);
    if (line.ends_with('\r')) line.remove_suffix(1);
    at = end + 1;
    if (line.empty() && lines.empty()) continue;  // the gap before a request line
    if (line.empty()) break;                      // the blank line ends the head
    lines.push_back(line);
  }
  std::string out;
  out.reserve(head.size() + 256);
  bool dropping = false;
  for (size_t i = 0; i < lines.size(); ++i) {
    std::string_view line = lines[i];
    if (i > 0) {
      if (line.front() == ' ' || line.front() == '\t') {  // obs-fold: part of the header above
        if (dropping) continue;
      } else {
        std::string_view name = line.substr(0, line.find(':'));
        dropping = std::any_of(edit.headers.begin(), edit.headers.end(),
                               [&](const auto& header) { return iequals(header.first, name); });
        if (content_length)
          dropping =
              dropping || iequals(name, "content-length") || iequals(name, "transfer-encoding");
        if (dropping) continue;
      }
    }
    out += line;
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
