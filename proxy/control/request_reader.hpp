#pragma once
// The control socket's request reader: llhttp over the bytes a client sends, one request at a
// time, with the caps of DESIGN.md's control API (head 64 KiB / 100 headers: 431; body 1 MiB:
// 413; anything llhttp refuses: 400). Transport-free, so it is unit-tested and fuzzed alone.
#include <llhttp.h>

#include <string>
#include <string_view>

#include "control/api.hpp"

namespace egressd {

class RequestReader {
 public:
  static constexpr size_t kMaxBody = 1 << 20;
  static constexpr size_t kMaxHeadBytes = 64 * 1024;  // request line + headers
  static constexpr size_t kMaxHeaders = 100;

  enum class Outcome { need_more, complete, body_too_large, head_too_large, malformed };
  struct Step {
    Outcome outcome;
    size_t used;  // bytes of the input consumed; the rest belongs to the next request
  };

  RequestReader();
  RequestReader(const RequestReader&) = delete;
  RequestReader& operator=(const RequestReader&) = delete;

  // Feeds bytes; after `complete`, call next() before feeding the rest. After an error
  // outcome the reader is spent: answer refusal(outcome) and close.
  Step feed(std::string_view bytes);
  const ControlRequest& request() const { return request_; }
  bool keep_alive() const { return llhttp_should_keep_alive(&parser_) != 0; }
  void next();

  static ControlResponse refusal(Outcome outcome);

 private:
  static RequestReader& self(llhttp_t* p) { return *static_cast<RequestReader*>(p->data); }
  int append(std::string& out, const char* at, size_t n);
  void flush_header();

  llhttp_settings_t settings_;
  llhttp_t parser_;
  ControlRequest request_;
  std::string field_, value_;
  bool in_value_ = false;
  bool complete_ = false;
  bool body_too_large_ = false;
  bool head_too_large_ = false;
  bool failed_ = false;
  size_t head_bytes_ = 0;
  size_t header_count_ = 0;
};

}  // namespace egressd
