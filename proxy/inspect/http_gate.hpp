#pragma once
// The pure part of an HTTP connection (DESIGN.md "What a connection gets", HTTP port): which of
// the client's bytes may be relayed to the origin, given a decision on every request head and
// the origin's responses. No I/O: the session does the reading, writing and deciding; the
// fuzz target drives it with random bytes and checks that no denied request is ever relayed.
//
//   client bytes -> [ buffer | parsed | safe ] -> forwardable() -> origin
//                          head -> decide -> allow()/deny()
//   origin bytes -> observe_response() -> answered? 101 to the upgrade request?
//
// Every request head is decided before any of its bytes become forwardable; body bytes become
// forwardable as they arrive, and a body's last bytes at once (message end). After a request
// that asks for Upgrade nothing more is parsed until the origin's answer is known: a 101
// makes everything after it opaque, anything else and the next bytes are the next request.
#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "core/request_edit.hpp"
#include "inspect/http_request.hpp"
#include "inspect/http_response.hpp"

namespace egressd {

class HttpGate {
 public:
  explicit HttpGate(size_t capacity)
      : requests_(capacity), capacity_(capacity), buffer_(capacity) {}

  enum class Step : uint8_t {
    read_more,      // read client bytes into free_space(), then received()
    decide,         // head() waits for allow() or deny()
    forward,        // write forwardable() to the origin, then forwarded()
    await_upgrade,  // the origin's answer to an upgrade request decides what follows
    opaque,         // everything from here on is relayed as it is (after a 101, or audit)
    denied,         // deny() was called: nothing more goes to the origin
    refused,        // the client's bytes are not acceptable HTTP: refusal() says why
  };
  // What the session must do now. Parses what it can first.
  Step next();

  std::span<uint8_t> free_space() { return std::span(buffer_).subspan(length_); }
  void received(size_t n) { length_ += n; }

  const RequestHead& head() const { return requests_.head(); }
  // The request goes on; with an edit (an intercepted connection), its head is rewritten
  // before any of it is forwardable and, when the edit sets body fields and the request has a
  // JSON body (not one the client holds back for 100-continue), the body is held until it
  // ends (at most kMaxHeldBody bytes; a larger one goes unedited), then rewritten.
  void allow(const RequestEdit* edit = nullptr);
  static constexpr size_t kMaxHeldBody = 1 << 20;
  void deny() {
    deciding_ = false;
    denied_ = true;
  }
  // Audit mode after a refusal: the rest of the client's bytes go through unparsed.
  void go_opaque();

  std::span<const uint8_t> forwardable() const { return std::span(buffer_).first(safe_); }
  void forwarded();

  // Follows the origin's bytes (relayed unchanged by the session). False when they are not
  // HTTP or a 101 came unasked: the session ends the connection then.
  bool observe_response(std::span<const uint8_t> bytes);
  // Every request relayed so far has been answered completely.
  bool all_answered() const {
    return responses_.outstanding() == 0 && responses_.between_messages();
  }
  bool switched() const { return switched_; }
  Reason refusal() const { return requests_.refusal(); }

 private:
  // Replaces buffer_[from, to) (all parsed) by `bytes`; later offsets move with it.
  void replace(size_t from, size_t to, std::string_view bytes);
  void release_held(bool body_complete);

  HttpRequestParser requests_;
  HttpResponseParser responses_;
  size_t capacity_;
  // A held request (body edit): where its head starts and ends in buffer_, and the edit.
  bool holding_ = false;
  size_t head_start_ = 0, head_end_ = 0;
  RequestEdit held_edit_;
  std::vector<uint8_t> buffer_;
  size_t length_ = 0;  // bytes in buffer_
  size_t parsed_ = 0;  // of those, parsed
  size_t safe_ = 0;    // of those, forwardable
  bool deciding_ = false;
  bool denied_ = false;
  bool refused_ = false;
  bool opaque_ = false;
  bool switched_ = false;
};

}  // namespace egressd
