#pragma once
// What one request of an intercepted connection gets (DESIGN.md "Request transforms"): the
// headers to set (replacing any the client sent under those names) and, for JSON bodies, the
// top-level string fields to set. Built by policy/ (transforms + secrets), applied by inspect/.
#include <string>
#include <utility>
#include <vector>

namespace egressd {

struct RequestEdit {
  std::vector<std::pair<std::string, std::string>> headers;
  std::vector<std::pair<std::string, std::string>> body;  // field, string value
  bool empty() const { return headers.empty() && body.empty(); }
};

}  // namespace egressd
