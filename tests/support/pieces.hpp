#pragma once
// Feeds a text to an incremental parser (feed(span, consumed) -> event) in pieces of `piece`
// bytes (0 = whole), calling on_event(event, position) after every feed; position is the
// offset just past the bytes consumed so far. on_event returns false to stop.
#include <algorithm>
#include <cstdint>
#include <span>
#include <string_view>

namespace egressd::testing {

template <typename Parser, typename OnEvent>
void feed_in_pieces(Parser& parser, std::string_view text, size_t piece, OnEvent&& on_event) {
  if (piece == 0) piece = text.size();
  for (size_t offset = 0; offset < text.size(); offset += piece) {
    size_t length = std::min(piece, text.size() - offset);
    std::span<const uint8_t> chunk(reinterpret_cast<const uint8_t*>(text.data()) + offset, length);
    while (!chunk.empty()) {
      size_t used = 0;
      auto event = parser.feed(chunk, used);
      chunk = chunk.subspan(used);
      if (!on_event(event, offset + length - chunk.size())) return;
    }
  }
}

}  // namespace egressd::testing
