// Drives HttpGate (the HTTP port's request/response state machine) as a session would, with
// random client bytes, random origin bytes, random segmentation and a decision rule, and checks:
//  - what reaches the origin is a prefix of what the client sent, in order;
//  - re-parsed on its own (up to a 101 switch), it holds no head the rule denies and ends
//    only at a request boundary or inside a body: no request whose Host is denied is ever
//    forwarded, not even in part;
//  - after deny() or a refusal, nothing more is forwarded.
// Input: [seed byte] client bytes [0xFF 0x00 0xFF] origin bytes.
#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <span>
#include <string>
#include <vector>

#include "inspect/http_gate.hpp"
#include "inspect/http_request.hpp"

using namespace egressd;

namespace {

// The rule the fuzzer decides by: names containing "evil" (or IP literals) are denied.
bool denied(const RequestHead& head) {
  return head.name.find("evil") != std::string::npos || head.address.has_value();
}

// Re-parses what was forwarded, declining every upgrade as the gate did (up to `http_bytes`).
void check_forwarded(const std::vector<uint8_t>& forwarded, size_t http_bytes) {
  HttpRequestParser parser(4096);
  std::span<const uint8_t> rest(forwarded.data(), http_bytes);
  size_t boundary = 0, position = 0;
  while (!rest.empty()) {
    size_t used = 0;
    auto event = parser.feed(rest, used);
    rest = rest.subspan(used);
    position += used;
    switch (event) {
      case HttpRequestParser::Event::refused:
        abort();  // the gate forwarded bytes that are not an allowed request
      case HttpRequestParser::Event::head_complete:
        if (denied(parser.head())) abort();
        if (parser.inside_head()) boundary = position;
        if (parser.upgrade_pending()) parser.upgrade_declined();
        break;
      case HttpRequestParser::Event::message_complete:
        boundary = position;
        break;
      case HttpRequestParser::Event::upgrade_pending:
        boundary = position;
        parser.upgrade_declined();
        break;
      case HttpRequestParser::Event::need_more:
        break;
    }
  }
  // Ending inside a head means part of an undecided request went out.
  if (parser.inside_head() && boundary != http_bytes) abort();
}

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
  size_t client_piece = 1 + seed % 13, origin_piece = 1 + (seed / 13) % 11;
  HttpGate gate(4096);
  std::vector<uint8_t> forwarded;
  size_t http_bytes = SIZE_MAX;  // forwarded bytes before the switch to the new protocol
  bool stopped = false;
  int steps = 0;
  for (; steps < 100000; ++steps) {
    HttpGate::Step step = gate.next();
    if (step == HttpGate::Step::decide) {
      if (denied(gate.head())) {
        gate.deny();
      } else {
        gate.allow();
      }
      continue;
    }
    if (step == HttpGate::Step::forward) {
      if (stopped) abort();  // nothing after a deny or refusal
      auto bytes = gate.forwardable();
      if (bytes.empty()) abort();
      forwarded.insert(forwarded.end(), bytes.begin(), bytes.end());
      gate.forwarded();
      continue;
    }
    if (step == HttpGate::Step::denied || step == HttpGate::Step::refused ||
        step == HttpGate::Step::opaque) {
      if (step != HttpGate::Step::opaque) stopped = true;
      if (step == HttpGate::Step::opaque && !gate.switched()) abort();  // only a 101 does that
      break;
    }
    // read_more or await_upgrade: some origin bytes first (alternating by the seed), or more
    // client bytes; nothing left of either: done.
    bool origin_turn =
        !origin.empty() && (step == HttpGate::Step::await_upgrade || (steps + seed) % 3 == 0);
    if (origin_turn) {
      auto piece = origin.first(std::min(origin_piece, origin.size()));
      origin = origin.subspan(piece.size());
      if (!gate.observe_response(piece)) break;  // the session resets the connection here
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
  if (steps == 100000) abort();  // the gate went round in circles (a session would spin)
  // A prefix of the client's bytes, in order.
  if (forwarded.size() > size - 1 ||
      (!forwarded.empty() && std::memcmp(forwarded.data(), data + 1, forwarded.size()) != 0))
    abort();
  check_forwarded(forwarded, std::min(http_bytes, forwarded.size()));
  return 0;
}
