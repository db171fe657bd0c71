#pragma once
// Feeds bytes to a control RequestReader in pieces of `piece` bytes, as the control server
// does (leftovers after a complete request go to the next one): every request read, and the
// last outcome. Bounded: at most a few rounds per input byte.
#include <algorithm>
#include <cstdlib>
#include <string>
#include <vector>

#include "control/request_reader.hpp"

namespace egressd::testing {

struct ReadRequests {
  std::vector<ControlRequest> requests;
  RequestReader::Outcome last = RequestReader::Outcome::need_more;
};

inline ReadRequests read_requests(const std::string& bytes, size_t piece) {
  RequestReader reader;
  ReadRequests out;
  std::string pending;
  size_t at = 0;
  for (size_t rounds = 0; rounds < 4 * bytes.size() + 8; ++rounds) {
    if (pending.empty()) {
      if (at == bytes.size()) break;
      size_t n = std::min(piece, bytes.size() - at);
      pending = bytes.substr(at, n);
      at += n;
    }
    auto step = reader.feed(pending);
    if (step.used > pending.size()) std::abort();  // consumed more than it was given
    pending.erase(0, step.used);
    out.last = step.outcome;
    if (step.outcome == RequestReader::Outcome::complete) {
      out.requests.push_back(reader.request());
      reader.next();
    } else if (step.outcome != RequestReader::Outcome::need_more) {
      break;
    }
  }
  return out;
}

}  // namespace egressd::testing
