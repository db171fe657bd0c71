#pragma once
// Incremental HTTP/1.x request parser on llhttp: fed client->server bytes as they arrive, it
// stops at the end of every request head so the session can decide that request before any
// of its bytes are relayed, at the end of every message (so the last bytes of a body can be
// relayed at once), and skips bodies (Content-Length, chunked) to find the next head.
// After a request that asks for Upgrade it stops until the session says how the origin
// answered: declined (parse on, the next bytes are a request) or switched (stop for good).
// Pure: no I/O, no logging; a head larger than max_head_bytes is refused.
#include <llhttp.h>

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/ip.hpp"
#include "core/reason.hpp"
#include "inspect/parse_status.hpp"

namespace egressd {

struct RequestHead {
  std::string name;                  // canonical Host name; empty when none or an address
  std::optional<IpAddress> address;  // Host was an IP literal ("[v6]" or v4)
  uint8_t http_major = 1;
  uint8_t http_minor = 1;
  bool upgrade = false;      // asks to leave HTTP (Connection: upgrade + Upgrade, llhttp's rule)
  bool head_method = false;  // HEAD: its response has no body whatever its headers say
  bool has_body = false;     // Content-Length > 0 or chunked
  bool json = false;         // Content-Type application/json or */*+json
  bool expect_continue = false;  // Expect: 100-continue (the client waits before the body)
};

// The current request head as llhttp understood it: what an edited head is written from, so
// the origin reads exactly the request egressd decided (llhttp's leniencies included).
struct ParsedHead {
  std::string_view method;
  std::string_view target;
  uint8_t http_major = 1;
  uint8_t http_minor = 1;
  std::vector<std::pair<std::string_view, std::string_view>> headers;  // as parsed, in order
};

class HttpRequestParser {
 public:
  explicit HttpRequestParser(size_t max_head_bytes = 16384);
  HttpRequestParser(const HttpRequestParser&) = delete;
  HttpRequestParser& operator=(const HttpRequestParser&) = delete;

  enum class Event : uint8_t {
    need_more,         // all bytes consumed; more are needed
    head_complete,     // stopped right after a request head: head() is valid
    message_complete,  // stopped right after a request's last byte (head or body)
    upgrade_pending,   // an upgrade request ended; nothing more is parsed until upgrade_declined()
    refused,           // refusal() says why
  };

  // Consumes bytes up to the next event; `consumed` says how many were used. A request without
  // a body is complete with its head: after that head_complete, inside_head() is true again
  // and, for an upgrade request, upgrade_pending() is (no message_complete event follows).
  Event feed(std::span<const uint8_t> bytes, size_t& consumed);
  bool upgrade_pending() const { return upgrade_pending_; }
  // The origin answered the pending upgrade request with something else than 101: the
  // bytes that follow are the next request.
  void upgrade_declined();

  const RequestHead& head() const { return head_; }
  // Valid from head_complete until the next request begins.
  ParsedHead parsed_head() const;
  // While on, the bodies' bytes (chunked framing removed) are appended to body(); the caller
  // bounds it and clears it.
  void capture_body(bool on) { capture_ = on; }
  std::string& body() { return body_; }
  Reason refusal() const { return refusal_; }
  // True while bytes of a request head (or the gap before it) are being read: those bytes
  // must be held back until the head completes and is decided.
  bool inside_head() const { return inside_head_; }

 private:
  static int on_message_begin(llhttp_t* parser);
  static int on_url(llhttp_t* parser, const char* at, size_t length);
  static int on_header_field(llhttp_t* parser, const char* at, size_t length);
  static int on_header_value(llhttp_t* parser, const char* at, size_t length);
  static int on_header_value_complete(llhttp_t* parser);
  static int on_headers_complete(llhttp_t* parser);
  static int on_message_complete(llhttp_t* parser);
  static int on_body(llhttp_t* parser, const char* at, size_t length);

  Event refuse(Reason reason);
  bool finish_head();

  llhttp_settings_t settings_;
  llhttp_t parser_;
  size_t max_head_bytes_;
  size_t head_bytes_ = 0;
  bool inside_head_ = true;
  enum class Pause : uint8_t { none, head, message } pause_ = Pause::none;
  bool upgrade_pending_ = false;
  bool refused_ = false;
  Reason refusal_ = Reason::not_http;
  // Current header being read (bounded by max_head_bytes_).
  std::string field_;
  std::string value_;
  bool field_done_ = false;
  std::string url_;
  std::string host_;
  int host_count_ = 0;
  // Every header of the current head: names and values in one arena (capacity kept).
  struct Field {
    uint32_t name_at, name_length, value_at, value_length;
  };
  std::string field_bytes_;
  std::vector<Field> fields_;
  bool in_field_name_ = false;
  std::string content_type_;
  bool expect_continue_ = false;
  bool capture_ = false;
  std::string body_;
  RequestHead head_;
};

// Parses a Host header value or URL authority: "name", "name:port", "v4[:port]", "[v6][:port]".
// Fills `name` (canonical) or `address`; returns false when malformed.
bool parse_http_authority(std::string_view authority, std::string& name,
                          std::optional<IpAddress>& address);

}  // namespace egressd
