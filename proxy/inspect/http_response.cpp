#include "inspect/http_response.hpp"

namespace egressd {
namespace {

HttpResponseParser& self(llhttp_t* parser) {
  return *static_cast<HttpResponseParser*>(parser->data);
}

}  // namespace

HttpResponseParser::HttpResponseParser() {
  llhttp_settings_init(&settings_);
  settings_.on_message_begin = on_message_begin;
  settings_.on_headers_complete = on_headers_complete;
  settings_.on_message_complete = on_message_complete;
  llhttp_init(&parser_, HTTP_RESPONSE, &settings_);
  parser_.data = this;
}

int HttpResponseParser::on_message_begin(llhttp_t* parser) {
  self(parser).between_ = false;
  return 0;
}

// Return values as llhttp defines them: 0 go on, 1 the message has no body, -1 error.
int HttpResponseParser::on_headers_complete(llhttp_t* parser) {
  HttpResponseParser& p = self(parser);
  p.last_status_ = parser->status_code;
  if (parser->status_code == 101) {
    if (!p.oldest_is_upgrade()) {  // switching protocols unasked: nothing to trust after it
      p.malformed_ = true;
      return -1;
    }
    p.switched_ = true;
    return 1;
  }
  if (parser->status_code >= 100 && parser->status_code < 200) return 0;  // interim: no body
  if (!p.outstanding_.empty() && p.outstanding_.front().head_method) return 1;
  return 0;
}

int HttpResponseParser::on_message_complete(llhttp_t* parser) {
  HttpResponseParser& p = self(parser);
  p.between_ = true;
  bool interim = p.last_status_ >= 100 && p.last_status_ < 200 && p.last_status_ != 101;
  if (!interim) {
    // A response with nothing outstanding (a 408 before closing, say) answers no request.
    if (!p.outstanding_.empty()) p.outstanding_.pop_front();
    p.answered_ = true;
  }
  return HPE_PAUSED;
}

HttpResponseParser::Event HttpResponseParser::feed(std::span<const uint8_t> bytes,
                                                   size_t& consumed) {
  consumed = 0;
  if (malformed_) return Event::malformed;
  if (switched_) return Event::switched;
  const char* data = reinterpret_cast<const char*>(bytes.data());
  while (consumed < bytes.size()) {
    answered_ = false;
    size_t length = bytes.size() - consumed;
    llhttp_errno_t error = llhttp_execute(&parser_, data + consumed, length);
    size_t used = error == HPE_OK
                      ? length
                      : static_cast<size_t>(llhttp_get_error_pos(&parser_) - (data + consumed));
    consumed += used;
    if (error == HPE_OK) continue;
    if (error == HPE_PAUSED) {
      llhttp_resume(&parser_);
      if (switched_) return Event::switched;
      if (answered_) return Event::answered;
      continue;
    }
    malformed_ = true;
    return Event::malformed;
  }
  return Event::need_more;
}

}  // namespace egressd
