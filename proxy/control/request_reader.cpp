#include "control/request_reader.hpp"

#include <cctype>

namespace egressd {

RequestReader::RequestReader() {
  llhttp_settings_init(&settings_);
  settings_.on_url = [](llhttp_t* p, const char* at, size_t n) {
    return self(p).append(self(p).request_.target, at, n);
  };
  settings_.on_header_field = [](llhttp_t* p, const char* at, size_t n) {
    RequestReader& r = self(p);
    if (r.in_value_) r.flush_header();
    if (r.head_too_large_) return -1;
    return r.append(r.field_, at, n);
  };
  settings_.on_header_value = [](llhttp_t* p, const char* at, size_t n) {
    self(p).in_value_ = true;
    return self(p).append(self(p).value_, at, n);
  };
  settings_.on_headers_complete = [](llhttp_t* p) {
    RequestReader& r = self(p);
    if (r.in_value_) r.flush_header();
    if (r.head_too_large_) return -1;
    r.request_.method = llhttp_method_name(static_cast<llhttp_method_t>(p->method));
    if (p->content_length > kMaxBody && p->content_length != UINT64_MAX) {
      r.body_too_large_ = true;
      return -1;
    }
    return 0;
  };
  settings_.on_body = [](llhttp_t* p, const char* at, size_t n) {
    RequestReader& r = self(p);
    if (r.request_.body.size() + n > kMaxBody) {
      r.body_too_large_ = true;
      return -1;
    }
    r.request_.body.append(at, n);
    return 0;
  };
  settings_.on_message_complete = [](llhttp_t* p) {
    self(p).complete_ = true;
    return static_cast<int>(HPE_PAUSED);
  };
  llhttp_init(&parser_, HTTP_REQUEST, &settings_);
  parser_.data = this;
}

// Every byte of the request line and headers counts against one cap for the whole head.
int RequestReader::append(std::string& out, const char* at, size_t n) {
  head_bytes_ += n;
  if (head_bytes_ > kMaxHeadBytes) {
    head_too_large_ = true;
    return -1;
  }
  out.append(at, n);
  return 0;
}

void RequestReader::flush_header() {
  in_value_ = false;
  if (++header_count_ > kMaxHeaders) {
    head_too_large_ = true;
    return;
  }
  for (char& c : field_) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  request_.headers[field_] = value_;
  field_.clear();
  value_.clear();
}

RequestReader::Step RequestReader::feed(std::string_view bytes) {
  auto error = [&] {
    failed_ = true;
    return Step{body_too_large_   ? Outcome::body_too_large
                : head_too_large_ ? Outcome::head_too_large
                                  : Outcome::malformed,
                bytes.size()};
  };
  if (failed_) return error();
  if (complete_) return Step{Outcome::complete, 0};
  if (bytes.empty()) return Step{Outcome::need_more, 0};
  llhttp_errno_t status = llhttp_execute(&parser_, bytes.data(), bytes.size());
  if (status == HPE_PAUSED) {
    auto used = static_cast<size_t>(llhttp_get_error_pos(&parser_) - bytes.data());
    return Step{Outcome::complete, used};
  }
  if (status != HPE_OK) return error();
  return Step{Outcome::need_more, bytes.size()};
}

void RequestReader::next() {
  request_ = ControlRequest{};
  field_.clear();
  value_.clear();
  in_value_ = false;
  complete_ = false;
  head_bytes_ = 0;
  header_count_ = 0;
  llhttp_resume(&parser_);
}

ControlResponse RequestReader::refusal(Outcome outcome) {
  switch (outcome) {
    case Outcome::body_too_large:
      return ControlResponse{413, R"({"error":"body over 1 MiB"})", {}};
    case Outcome::head_too_large:
      return ControlResponse{431, R"({"error":"request head over 64 KiB or 100 headers"})", {}};
    default:
      return ControlResponse{400, R"({"error":"malformed HTTP request"})", {}};
  }
}

}  // namespace egressd
