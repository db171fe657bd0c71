#include "inspect/http_request.hpp"

#include <algorithm>

#include "core/hostname.hpp"

namespace egressd {
namespace {

HttpRequestParser& self(llhttp_t* parser) {
  return *static_cast<HttpRequestParser*>(parser->data);
}

bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return (x | 0x20) == (y | 0x20);
         });
}

std::string_view trim_ows(std::string_view text) {
  while (!text.empty() && (text.front() == ' ' || text.front() == '\t')) text.remove_prefix(1);
  while (!text.empty() && (text.back() == ' ' || text.back() == '\t')) text.remove_suffix(1);
  return text;
}

}  // namespace

bool parse_http_authority(std::string_view authority, std::string& name,
                          std::optional<IpAddress>& address) {
  name.clear();
  address.reset();
  std::string_view host = authority, port;
  if (authority.starts_with("[")) {
    auto close = authority.find(']');
    if (close == std::string_view::npos) return false;
    host = authority.substr(1, close - 1);
    auto rest = authority.substr(close + 1);
    if (!rest.empty() && rest.front() != ':') return false;
    if (!rest.empty()) port = rest.substr(1);
    auto v6 = IpAddress::parse(host);
    if (!v6 || v6->family != Family::v6) return false;
    address = v6->unmapped();
  } else {
    auto colon = authority.find(':');
    if (colon != std::string_view::npos) {
      host = authority.substr(0, colon);
      port = authority.substr(colon + 1);
    }
    if (auto v4 = IpAddress::parse(host); v4 && v4->family == Family::v4) {
      address = v4;
    } else {
      auto canonical = Hostname::parse(host);
      if (std::holds_alternative<std::string>(canonical)) return false;
      name = std::get<Hostname>(canonical).str();
    }
  }
  if (port.size() > 5 ||
      !std::all_of(port.begin(), port.end(), [](char c) { return c >= '0' && c <= '9'; })) {
    return false;
  }
  return port.empty() || std::stoul(std::string(port)) <= 65535;
}

HttpRequestParser::HttpRequestParser(size_t max_head_bytes) : max_head_bytes_(max_head_bytes) {
  llhttp_settings_init(&settings_);
  settings_.on_message_begin = on_message_begin;
  settings_.on_url = on_url;
  settings_.on_header_field = on_header_field;
  settings_.on_header_value = on_header_value;
  settings_.on_header_value_complete = on_header_value_complete;
  settings_.on_headers_complete = on_headers_complete;
  settings_.on_message_complete = on_message_complete;
  settings_.on_body = on_body;
  llhttp_init(&parser_, HTTP_REQUEST, &settings_);
  parser_.data = this;
}

int HttpRequestParser::on_message_begin(llhttp_t* parser) {
  HttpRequestParser& p = self(parser);
  p.inside_head_ = true;
  p.url_.clear();
  p.host_.clear();
  p.host_count_ = 0;
  p.content_type_.clear();
  p.field_bytes_.clear();
  p.fields_.clear();
  p.in_field_name_ = false;
  p.expect_continue_ = false;
  p.field_.clear();
  p.value_.clear();
  p.field_done_ = false;
  return 0;
}

int HttpRequestParser::on_url(llhttp_t* parser, const char* at, size_t length) {
  self(parser).url_.append(at, length);
  return 0;
}

int HttpRequestParser::on_header_field(llhttp_t* parser, const char* at, size_t length) {
  HttpRequestParser& p = self(parser);
  if (p.field_done_) {
    p.field_.clear();
    p.value_.clear();
    p.field_done_ = false;
  }
  p.field_.append(at, length);
  if (!p.in_field_name_) {
    p.fields_.push_back(Field{static_cast<uint32_t>(p.field_bytes_.size()), 0, 0, 0});
    p.in_field_name_ = true;
  }
  p.field_bytes_.append(at, length);  // bounded by the head cap, like the head itself
  p.fields_.back().name_length += static_cast<uint32_t>(length);
  return 0;
}

int HttpRequestParser::on_header_value(llhttp_t* parser, const char* at, size_t length) {
  HttpRequestParser& p = self(parser);
  p.field_done_ = true;
  if (!p.fields_.empty()) {
    Field& field = p.fields_.back();
    if (p.in_field_name_) {
      p.in_field_name_ = false;
      field.value_at = static_cast<uint32_t>(p.field_bytes_.size());
    }
    p.field_bytes_.append(at, length);
    field.value_length += static_cast<uint32_t>(length);
  }
  if (iequals(p.field_, "host") || iequals(p.field_, "content-type") || iequals(p.field_, "expect"))
    p.value_.append(at, length);  // within the head cap, like every head byte
  return 0;
}

int HttpRequestParser::on_header_value_complete(llhttp_t* parser) {
  HttpRequestParser& p = self(parser);
  p.field_done_ = true;
  p.in_field_name_ = false;  // a header with an empty value: the next name is a new field
  if (iequals(p.field_, "host")) {
    ++p.host_count_;
    p.host_ = p.value_;
  } else if (iequals(p.field_, "content-type")) {
    p.content_type_ = p.value_;
  } else if (iequals(p.field_, "expect")) {
    p.expect_continue_ = p.expect_continue_ || iequals(trim_ows(p.value_), "100-continue");
  }
  return 0;
}

int HttpRequestParser::on_headers_complete(llhttp_t* parser) {
  HttpRequestParser& p = self(parser);
  p.inside_head_ = false;
  if (!p.finish_head()) return -1;
  p.pause_ = Pause::head;
  return HPE_PAUSED;  // stop here: the session decides this request before relaying it
}

int HttpRequestParser::on_body(llhttp_t* parser, const char* at, size_t length) {
  HttpRequestParser& p = self(parser);
  if (p.capture_) p.body_.append(at, length);
  return 0;
}

int HttpRequestParser::on_message_complete(llhttp_t* parser) {
  HttpRequestParser& p = self(parser);
  p.inside_head_ = true;  // bytes from here on belong to the next head
  p.pause_ = Pause::message;
  if (p.head_.upgrade) p.upgrade_pending_ = true;
  return HPE_PAUSED;
}

void HttpRequestParser::upgrade_declined() {
  upgrade_pending_ = false;
  head_.upgrade = false;
}

bool HttpRequestParser::finish_head() {
  head_ = RequestHead{};
  head_.http_major = parser_.http_major;
  head_.http_minor = parser_.http_minor;
  if (head_.http_major != 1 || head_.http_minor > 1) {
    refusal_ = Reason::not_http;
    return false;
  }
  if (parser_.method == HTTP_CONNECT) {  // a tunnel is not a request on this origin
    refusal_ = Reason::not_http;
    return false;
  }
  refusal_ = Reason::malformed_host;
  if (host_count_ > 1) return false;
  if (host_count_ == 1) {
    std::string_view value = trim_ows(host_);
    if (value.empty() || !parse_http_authority(value, head_.name, head_.address)) return false;
  } else if (head_.http_minor == 1) {
    return false;  // HTTP/1.1 requires Host
  }
  // Absolute-form target: its authority must name the same host as Host.
  std::string_view url = url_;
  if (!url.starts_with("/") && url != "*") {
    auto scheme_end = url.find("://");
    if (scheme_end == std::string_view::npos) return false;
    std::string_view scheme = url.substr(0, scheme_end);
    if (!iequals(scheme, "http") && !iequals(scheme, "https")) return false;
    std::string_view authority = url.substr(scheme_end + 3);
    authority = authority.substr(0, authority.find_first_of("/?#"));
    if (authority.find('@') != std::string_view::npos) return false;
    std::string name;
    std::optional<IpAddress> address;
    if (!parse_http_authority(authority, name, address)) return false;
    if (host_count_ == 0) {
      head_.name = name;
      head_.address = address;
    } else if (name != head_.name || address != head_.address) {
      return false;
    }
  }
  head_.upgrade = parser_.upgrade != 0;
  head_.head_method = parser_.method == HTTP_HEAD;
  head_.has_body = (parser_.flags & F_CHUNKED) != 0 || parser_.content_length > 0;
  head_.expect_continue = expect_continue_;
  // application/json, or a structured +json type, parameters aside.
  std::string_view type =
      trim_ows(std::string_view(content_type_)
                   .substr(0, std::min(content_type_.find(';'), content_type_.size())));
  head_.json = iequals(type, "application/json") ||
               (type.size() > 5 && iequals(type.substr(type.size() - 5), "+json"));
  return true;
}

ParsedHead HttpRequestParser::parsed_head() const {
  ParsedHead head;
  head.method = llhttp_method_name(static_cast<llhttp_method_t>(parser_.method));
  head.target = url_;
  head.http_major = parser_.http_major;
  head.http_minor = parser_.http_minor;
  std::string_view bytes = field_bytes_;
  head.headers.reserve(fields_.size());
  for (const Field& field : fields_) {
    head.headers.emplace_back(bytes.substr(field.name_at, field.name_length),
                              bytes.substr(field.value_at, field.value_length));
  }
  return head;
}

HttpRequestParser::Event HttpRequestParser::refuse(Reason reason) {
  refused_ = true;
  refusal_ = reason;
  return Event::refused;
}

HttpRequestParser::Event HttpRequestParser::feed(std::span<const uint8_t> bytes, size_t& consumed) {
  consumed = 0;
  if (refused_) return Event::refused;
  if (upgrade_pending_) return Event::upgrade_pending;
  const char* data = reinterpret_cast<const char*>(bytes.data());
  // Each llhttp_execute runs to a head end or a message end (both pause), so every byte is
  // known to be head or body. Head bytes are capped: llhttp never sees more than the cap.
  while (consumed < bytes.size()) {
    bool in_head = inside_head_;
    size_t length = bytes.size() - consumed;
    if (in_head) length = std::min(length, max_head_bytes_ - head_bytes_ + 1);
    pause_ = Pause::none;
    llhttp_errno_t error = llhttp_execute(&parser_, data + consumed, length);
    size_t used = error == HPE_OK
                      ? length
                      : static_cast<size_t>(llhttp_get_error_pos(&parser_) - (data + consumed));
    consumed += used;
    if (in_head) head_bytes_ += used;
    switch (error) {
      case HPE_OK:
        if (inside_head_ && head_bytes_ > max_head_bytes_) return refuse(Reason::malformed_host);
        continue;
      case HPE_PAUSED:
        llhttp_resume(&parser_);
        head_bytes_ = 0;
        if (pause_ == Pause::head) {
          // A request without a body ends with its head: let llhttp finish it now (a
          // zero-length run) so that inside_head() and upgrade_pending() are already true.
          pause_ = Pause::none;
          if (llhttp_execute(&parser_, data + consumed, 0) == HPE_PAUSED) llhttp_resume(&parser_);
          return Event::head_complete;
        }
        return upgrade_pending_ ? Event::upgrade_pending : Event::message_complete;
      case HPE_PAUSED_UPGRADE:
        // llhttp stops after every upgrade request; reached only once the session said the
        // origin declined (upgrade_pending_ returns above until then).
        llhttp_resume_after_upgrade(&parser_);
        continue;
      case HPE_PAUSED_H2_UPGRADE:
        return refuse(Reason::not_http);
      case HPE_USER:
      case HPE_CB_HEADERS_COMPLETE:
        return refuse(refusal_);
      case HPE_INVALID_METHOD:
      case HPE_INVALID_URL:
      case HPE_INVALID_CONSTANT:
      case HPE_INVALID_VERSION:
        return refuse(Reason::not_http);
      default:
        return refuse(Reason::malformed_host);
    }
  }
  return Event::need_more;
}

}  // namespace egressd
