// Drives HttpGate with edits (an intercepted connection: DESIGN.md "Request transforms") the way
// a session does, with random client bytes, origin bytes and segmentation, and checks what the
// origin receives, re-parsed by llhttp on its own:
//  - it is HTTP: every request parses, none has a Host the rule denies;
//  - every request carries the injected header exactly once, with the injected value (the
//    client's own header of that name never survives, folded or not);
//  - after deny() or a refusal, nothing more is forwarded.
// Input: [seed byte] client bytes [0xFF 0x00 0xFF] origin bytes.
#include <llhttp.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <span>
#include <string>
#include <vector>

#include "inspect/http_gate.hpp"

using namespace egressd;

namespace {

constexpr const char* kHeader = "x-injected";
constexpr const char* kValue = "SECRET-VALUE";

// What the origin got, for the report of a finding.
std::vector<uint8_t>* g_forwarded = nullptr;
[[noreturn]] void fail(const char* why) {
  fprintf(stderr, "fuzz_http_edit: %s; forwarded:\n", why);
  if (g_forwarded) fwrite(g_forwarded->data(), 1, g_forwarded->size(), stderr);
  fprintf(stderr, "\n");
  abort();
}

bool denied(const RequestHead& head) {
  return head.name.find("evil") != std::string::npos || head.address.has_value();
}

struct Reparse {
  llhttp_t parser;
  llhttp_settings_t settings;
  std::string field, value, host;
  bool in_value = false;
  int injected = 0;
  bool wrong_value = false;
  uint64_t body = 0;
  bool after_head = false;  // the last thing parsed was a complete head

  static Reparse& self(llhttp_t* p) { return *static_cast<Reparse*>(p->data); }
  void header_done() {
    std::string lower = field;
    for (char& c : lower) c = static_cast<char>(c | 0x20);
    if (lower == kHeader) {
      ++injected;
      if (value != kValue) wrong_value = true;
    }
    if (lower == "host") host = value;
    field.clear();
    value.clear();
    in_value = false;
  }
  Reparse() {
    llhttp_settings_init(&settings);
    settings.on_message_begin = [](llhttp_t* p) {
      Reparse& r = self(p);
      r.injected = 0;
      r.after_head = false;
      r.wrong_value = false;
      r.body = 0;
      r.host.clear();
      return 0;
    };
    settings.on_header_field = [](llhttp_t* p, const char* at, size_t n) {
      Reparse& r = self(p);
      if (r.in_value) r.header_done();
      r.field.append(at, n);
      return 0;
    };
    settings.on_header_value = [](llhttp_t* p, const char* at, size_t n) {
      Reparse& r = self(p);
      r.in_value = true;
      r.value.append(at, n);
      return 0;
    };
    settings.on_headers_complete = [](llhttp_t* p) {
      Reparse& r = self(p);
      if (r.in_value) r.header_done();
      if (r.injected != 1 || r.wrong_value) fail("a request without exactly the injected header");
      if (r.host.find("evil") != std::string::npos) fail("a denied request was forwarded");
      r.after_head = true;
      return 0;
    };
    settings.on_body = [](llhttp_t* p, const char*, size_t n) {
      self(p).after_head = false;
      self(p).body += n;
      return 0;
    };
    llhttp_init(&parser, HTTP_REQUEST, &settings);
    parser.data = this;
  }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  uint8_t seed = data[0];
  std::span<const uint8_t> input(data + 1, size - 1);
  static const uint8_t kSplit[] = {0xFF, 0x00, 0xFF};
  std::span<const uint8_t> client = input, origin;
  for (size_t i = 0; i + 3 <= input.size(); ++i) {
    if (std::memcmp(input.data() + i, kSplit, 3) == 0) {
      client = input.first(i);
      origin = input.subspan(i + 3);
      break;
    }
  }
  RequestEdit edit{{{"X-Injected", kValue}}, {}};
  if (seed & 0x80) edit.body = {{"api_key", kValue}};
  size_t client_piece = 1 + seed % 13, origin_piece = 1 + (seed / 13) % 7;
  HttpGate gate(4096);
  std::vector<uint8_t> forwarded;
  size_t http_bytes = SIZE_MAX;
  bool stopped = false;
  int steps = 0;
  for (; steps < 100000; ++steps) {
    HttpGate::Step step = gate.next();
    if (step == HttpGate::Step::decide) {
      if (denied(gate.head())) {
        gate.deny();
      } else {
        gate.allow(&edit);
      }
      continue;
    }
    if (step == HttpGate::Step::forward) {
      if (stopped) abort();
      auto bytes = gate.forwardable();
      if (bytes.empty()) abort();
      forwarded.insert(forwarded.end(), bytes.begin(), bytes.end());
      gate.forwarded();
      continue;
    }
    if (step == HttpGate::Step::denied || step == HttpGate::Step::refused ||
        step == HttpGate::Step::opaque) {
      if (step != HttpGate::Step::opaque) stopped = true;
      break;
    }
    bool origin_turn =
        !origin.empty() && (step == HttpGate::Step::await_upgrade || (steps + seed) % 3 == 0);
    if (origin_turn) {
      auto piece = origin.first(std::min(origin_piece, origin.size()));
      origin = origin.subspan(piece.size());
      if (!gate.observe_response(piece)) break;
      if (gate.switched() && http_bytes == SIZE_MAX) http_bytes = forwarded.size();
      continue;
    }
    if (step == HttpGate::Step::await_upgrade || client.empty()) break;
    auto space = gate.free_space();
    size_t n = std::min<size_t>({client_piece, client.size(), space.size()});
    std::memcpy(space.data(), client.data(), n);
    client = client.subspan(n);
    gate.received(n);
  }
  if (steps == 100000) abort();
  // Re-parse what the origin got, up to a protocol switch: every request edited, none denied.
  g_forwarded = &forwarded;
  Reparse reparse;
  size_t length = std::min(http_bytes, forwarded.size());
  const char* at = reinterpret_cast<const char*>(forwarded.data());
  const char* end = at + length;
  while (at < end) {
    llhttp_errno_t error = llhttp_execute(&reparse.parser, at, static_cast<size_t>(end - at));
    if (error == HPE_OK) break;
    // llhttp judges some framing (an odd Transfer-Encoding) only after the head it decided:
    // the gate then refuses and forwards nothing more, so such a head may end the stream.
    if (error != HPE_PAUSED_UPGRADE &&
        !(reparse.after_head && llhttp_get_error_pos(&reparse.parser) == end))
      fail(llhttp_get_error_reason(&reparse.parser));
    if (error != HPE_PAUSED_UPGRADE) break;
    // An upgrade the origin declined (no 101 before this point): the next request follows.
    at = llhttp_get_error_pos(&reparse.parser);
    llhttp_resume_after_upgrade(&reparse.parser);
  }
  return 0;
}
