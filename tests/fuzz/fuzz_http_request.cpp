// Invariants: the same heads and refusal whatever the segmentation; names are canonical.
#include <cstdlib>
#include <span>
#include <string>
#include <vector>

#include "inspect/hostname.hpp"
#include "inspect/http_request.hpp"

using namespace egressd;

namespace {

struct Result {
  std::vector<std::string> names;
  int end = 0;  // 0 need_more, 1 refused, 2 upgraded
  Reason reason = Reason::not_http;
};

Result run(const uint8_t* data, size_t size, size_t piece) {
  HttpRequestParser parser(2048);
  Result result;
  for (size_t offset = 0; offset < size; offset += piece) {
    std::span<const uint8_t> chunk(data + offset, std::min(piece, size - offset));
    while (!chunk.empty()) {
      size_t used = 0;
      auto event = parser.feed(chunk, used);
      if (used > chunk.size()) abort();
      chunk = chunk.subspan(used);
      if (event == HttpRequestParser::Event::head_complete) {
        const RequestHead& head = parser.head();
        if (!head.name.empty() && !hostname_error(head.name).empty()) abort();
        for (char c : head.name) {
          if (c >= 'A' && c <= 'Z') abort();
        }
        result.names.push_back(head.address ? head.address->to_string() : head.name);
      } else if (event == HttpRequestParser::Event::refused) {
        result.end = 1;
        result.reason = parser.refusal();
        return result;
      } else if (event == HttpRequestParser::Event::upgraded) {
        result.end = 2;
        return result;
      } else if (used == 0) {
        abort();  // need_more must consume everything offered
      }
    }
  }
  return result;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  Result whole = run(data, size, size ? size : 1);
  Result split = run(data, size, size ? 1 + data[0] % 7 : 1);
  if (whole.names != split.names || whole.end != split.end) abort();
  if (whole.end == 1 && whole.reason != split.reason) abort();
  return 0;
}
