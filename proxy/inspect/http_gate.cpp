#include "inspect/http_gate.hpp"

#include <cstring>
#include <string>

#include "inspect/request_edit.hpp"

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
        if (holding_) release_held(true);
        safe_ = parsed_;
        if (safe_ > 0) return Step::forward;  // a request's last bytes never wait for the next head
        break;
      case Event::refused:
        refused_ = true;
        break;
      case Event::need_more:
        // Body bytes go as they arrive, unless the body is held for an edit.
        if (!requests_.inside_head() && !holding_) safe_ = parsed_;
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
  if (holding_ && length_ == buffer_.size()) {
    if (length_ - head_start_ >= kMaxHeldBody + capacity_) {
      release_held(false);  // too large to hold: it goes unedited, as it arrives
      return Step::forward;
    }
    buffer_.resize(std::min(buffer_.size() * 2, head_start_ + kMaxHeldBody + capacity_));
    return Step::read_more;
  }
  if (length_ == buffer_.size()) {  // a head larger than the buffer; the parser refuses first
    refused_ = true;
    return Step::refused;
  }
  return Step::read_more;
}

void HttpGate::allow(const RequestEdit* edit) {
  deciding_ = false;
  const RequestHead& head = requests_.head();
  responses_.request_sent(head.head_method, head.upgrade);
  if (edit && !edit->empty()) {
    // The head is buffer_[safe_, parsed_): nothing of it was forwardable before the decision.
    if (!edit->body.empty() && head.has_body && head.json && !head.expect_continue) {
      holding_ = true;
      head_start_ = safe_;
      head_end_ = parsed_;
      held_edit_ = *edit;
      requests_.body().clear();
      requests_.capture_body(true);
      return;  // safe_ stays before the head until the body has ended
    }
    replace(safe_, parsed_, edit_head(requests_.parsed_head(), *edit));
  }
  safe_ = parsed_;
}

void HttpGate::release_held(bool body_complete) {
  holding_ = false;
  requests_.capture_body(false);
  ParsedHead head = requests_.parsed_head();  // still this request's: it has just ended
  std::string& body = requests_.body();
  if (body_complete) {
    // The whole body, de-chunked: edited when it is a JSON object, else as it came; framed by
    // egressd with a Content-Length either way.
    auto edited = edit_json_body(body, held_edit_);
    const std::string& out = edited ? *edited : body;
    replace(head_start_, parsed_, edit_head(head, held_edit_, out.size()) + out);
  } else {
    replace(head_start_, head_end_, edit_head(head, held_edit_));
  }
  body.clear();
  body.shrink_to_fit();
  safe_ = parsed_;
}

void HttpGate::replace(size_t from, size_t to, std::string_view bytes) {
  std::vector<uint8_t> rest(buffer_.begin() + static_cast<std::ptrdiff_t>(to),
                            buffer_.begin() + static_cast<std::ptrdiff_t>(length_));
  size_t need = from + bytes.size() + rest.size();
  if (buffer_.size() < need) buffer_.resize(need);
  std::memcpy(buffer_.data() + from, bytes.data(), bytes.size());
  if (!rest.empty()) std::memcpy(buffer_.data() + from + bytes.size(), rest.data(), rest.size());
  parsed_ = parsed_ + from + bytes.size() - to;  // parsed_ >= to: only parsed bytes are replaced
  length_ = need;
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
  if (buffer_.size() > capacity_ && !holding_ && length_ <= capacity_) {
    buffer_.resize(capacity_);  // back to the usual size once an edited body has gone
    buffer_.shrink_to_fit();
  }
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
