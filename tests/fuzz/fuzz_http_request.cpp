// Invariants: the same heads, message ends and refusal whatever the segmentation; names are
// canonical; a message never ends inside a head; after an upgrade request nothing is parsed
// until the session declines it (then parsing goes on, as when the origin did not answer 101).
#include <cstdlib>
#include <span>
#include <string>
#include <vector>

#include "core/hostname.hpp"
#include "inspect/http_request.hpp"

using namespace egressd;

namespace {

struct Result {
  std::vector<std::string> names;
  std::vector<size_t> message_ends;  // offsets
  int end = 0;                       // 0 need_more, 1 refused
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
      size_t position = offset + std::min(piece, size - offset) - chunk.size();
      if (event == HttpRequestParser::Event::head_complete) {
        const RequestHead& head = parser.head();
        if (!head.name.empty() && !hostname_error(head.name).empty()) abort();
        for (char c : head.name) {
          if (c >= 'A' && c <= 'Z') abort();
        }
        result.names.push_back(head.address ? head.address->to_string() : head.name);
        if (parser.inside_head()) result.message_ends.push_back(position);  // no body
        if (parser.upgrade_pending()) {
          size_t again = 1;
          if (parser.feed(chunk, again) != HttpRequestParser::Event::upgrade_pending || again != 0)
            abort();
          parser.upgrade_declined();
        }
      } else if (event == HttpRequestParser::Event::refused) {
        result.end = 1;
        result.reason = parser.refusal();
        return result;
      } else if (event == HttpRequestParser::Event::message_complete) {
        if (!parser.inside_head()) abort();  // the next bytes belong to the next head
        result.message_ends.push_back(position);
      } else if (event == HttpRequestParser::Event::upgrade_pending) {
        size_t again = 1;
        if (parser.feed(chunk, again) != HttpRequestParser::Event::upgrade_pending || again != 0)
          abort();  // held: nothing is parsed while the origin's answer is unknown
        result.message_ends.push_back(position);
        parser.upgrade_declined();
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
  if (whole.end == 0 && whole.message_ends != split.message_ends) abort();
  if (whole.end == 1 && whole.reason != split.reason) abort();
  return 0;
}
