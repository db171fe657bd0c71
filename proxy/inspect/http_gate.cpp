#include "inspect/http_gate.hpp"

#include <cstring>

namespace egressd {

HttpGate::Step HttpGate::next() {
  using Event = HttpRequestParser::Event;
  if (deciding_) return Step::decide;
  while (!denied_ && !refused_ && !opaque_ && !requests_.upgrade_pending() && parsed_ < length_) {
    size_t used = 0;
    auto event = requests_.feed(std::span(buffer_).subspan(parsed_, length_ - parsed_), used);
    parsed_ += used;
    switch (event) {
      case Event::head_complete:
        deciding_ = true;
        return Step::decide;
      case Event::message_complete:
      case Event::upgrade_pending:
        safe_ = parsed_;
        if (safe_ > 0) return Step::forward;  // a request's last bytes never wait for the next head
        break;
      case Event::refused:
        refused_ = true;
        break;
      case Event::need_more:
        if (!requests_.inside_head()) safe_ = parsed_;  // body bytes go as they arrive
        break;
    }
  }
  if (safe_ > 0) return Step::forward;  // what was allowed goes first, whatever follows
  if (denied_) return Step::denied;
  if (refused_) return Step::refused;
  if (opaque_) return Step::opaque;
  if (requests_.upgrade_pending()) {
    // The upgrade request is relayed (allow() counted it); a final answer that came before
    // its body ended, or any final answer since, was not a 101: parse on.
    if (responses_.outstanding() > 0) return Step::await_upgrade;
    requests_.upgrade_declined();
    return next();
  }
  if (length_ == buffer_.size()) {  // a head larger than the buffer; the parser refuses first
    refused_ = true;
    return Step::refused;
  }
  return Step::read_more;
}

void HttpGate::allow() {
  deciding_ = false;
  responses_.request_sent(requests_.head().head_method, requests_.head().upgrade);
  safe_ = parsed_;
}

void HttpGate::go_opaque() {
  opaque_ = true;
  refused_ = false;
  safe_ = length_;
}

void HttpGate::forwarded() {
  std::memmove(buffer_.data(), buffer_.data() + safe_, length_ - safe_);
  length_ -= safe_;
  parsed_ -= safe_;
  safe_ = 0;
}

bool HttpGate::observe_response(std::span<const uint8_t> bytes) {
  using Event = HttpResponseParser::Event;
  if (opaque_) return true;  // switched, or audit relays as it is: nothing left to follow
  while (!bytes.empty() && !switched_) {
    size_t used = 0;
    auto event = responses_.feed(bytes, used);
    bytes = bytes.subspan(used);
    if (event == Event::malformed) return false;
    if (event == Event::switched) {
      // 101 to the pending upgrade request: the client's next bytes are the new protocol.
      switched_ = true;
      opaque_ = true;
      safe_ = length_;
    }
  }
  return true;
}

}  // namespace egressd
