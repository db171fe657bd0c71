#pragma once
// Incremental HTTP/1.x response parser on llhttp (response mode), for the server->client side
// of an HTTP port. It never changes a byte; it only follows the responses so that the session
// knows when the origin has answered each request, and above all how it answered an upgrade
// request: only a 101 to a request that asked for Upgrade turns the connection opaque.
//
// The session tells it, in order, which requests it relayed (request_sent): the response to a
// HEAD request has no body whatever its headers say, and a 101 is only valid as the answer to
// an upgrade request. 1xx other than 101 are interim and answer nothing. Pure: no I/O.
#include <llhttp.h>

#include <cstddef>
#include <cstdint>
#include <deque>
#include <span>

namespace egressd {

class HttpResponseParser {
 public:
  HttpResponseParser();
  HttpResponseParser(const HttpResponseParser&) = delete;
  HttpResponseParser& operator=(const HttpResponseParser&) = delete;

  enum class Event : uint8_t {
    need_more,  // all bytes consumed
    answered,   // a final response ended: it answered the oldest outstanding request
    switched,   // a 101 answered the upgrade request: every byte after `consumed` is opaque
    malformed,  // not HTTP, or a 101 to a request that did not ask for it
  };

  void request_sent(bool head_method, bool upgrade) {
    outstanding_.push_back(Request{head_method, upgrade});
  }
  // Consumes bytes up to the next event.
  Event feed(std::span<const uint8_t> bytes, size_t& consumed);

  // Requests relayed and not yet answered (the oldest first).
  size_t outstanding() const { return outstanding_.size(); }
  bool oldest_is_upgrade() const { return !outstanding_.empty() && outstanding_.front().upgrade; }
  // True between responses: no response (head or body) is partly read.
  bool between_messages() const { return between_; }
  int last_status() const { return last_status_; }

 private:
  struct Request {
    bool head_method;
    bool upgrade;
  };
  static int on_message_begin(llhttp_t* parser);
  static int on_headers_complete(llhttp_t* parser);
  static int on_message_complete(llhttp_t* parser);

  llhttp_settings_t settings_;
  llhttp_t parser_;
  std::deque<Request> outstanding_;
  bool between_ = true;
  bool answered_ = false;
  bool switched_ = false;
  bool malformed_ = false;
  int last_status_ = 0;
};

}  // namespace egressd
