// The control socket's request reader (control/request_reader.hpp) on arbitrary client bytes:
//  - fed whole or in pieces of any size, it reads the same requests and ends the same way;
//  - no request it hands on exceeds the caps (head 64 KiB / 100 headers, body 1 MiB), and every
//    one has a method;
//  - every error outcome maps to a 4xx refusal.
// Input: [piece size byte] client bytes.
#include <cstdlib>
#include <string>
#include <vector>

#include "../support/read_requests.hpp"

using namespace egressd;
using egressd::testing::read_requests;

namespace {

bool same(const ControlRequest& a, const ControlRequest& b) {
  return a.method == b.method && a.target == b.target && a.headers == b.headers && a.body == b.body;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  size_t piece = data[0] % 97 + 1;
  std::string bytes(reinterpret_cast<const char*>(data) + 1, size - 1);
  auto whole = read_requests(bytes, bytes.size() + 1);
  auto pieces = read_requests(bytes, piece);
  if (whole.last != pieces.last || whole.requests.size() != pieces.requests.size()) abort();
  for (size_t i = 0; i < whole.requests.size(); ++i) {
    const ControlRequest& r = whole.requests[i];
    if (!same(r, pieces.requests[i])) abort();
    if (r.method.empty() || r.body.size() > RequestReader::kMaxBody) abort();
    if (r.headers.size() > RequestReader::kMaxHeaders) abort();
    size_t head = r.target.size();
    for (const auto& [name, value] : r.headers) head += name.size() + value.size();
    if (head > RequestReader::kMaxHeadBytes) abort();
  }
  if (whole.last != RequestReader::Outcome::need_more &&
      whole.last != RequestReader::Outcome::complete) {
    int status = RequestReader::refusal(whole.last).status;
    if (status < 400 || status > 499) abort();
  }
  return 0;
}
