// Invariants: the same answer whatever the segmentation; never a name with a forbidden byte.
#include <cstdlib>
#include <span>

#include "core/hostname.hpp"
#include "inspect/client_hello.hpp"

using namespace egressd;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  ClientHelloParser whole(4096);
  whole.feed(std::span(data, size));
  size_t piece = size ? 1 + data[0] % 13 : 1;
  ClientHelloParser split(4096);
  for (size_t offset = 0; offset < size && split.status() == ParseStatus::need_more;
       offset += piece) {
    split.feed(std::span(data + offset, std::min(piece, size - offset)));
  }
  if (whole.status() != split.status()) abort();
  if (whole.status() == ParseStatus::refused && whole.refusal() != split.refusal()) abort();
  if (whole.status() == ParseStatus::done) {
    const std::string& name = whole.facts().name;
    if (name != split.facts().name || whole.facts().alpn != split.facts().alpn) abort();
    if (!hostname_error(name).empty()) abort();
    for (char c : name) {
      if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '.')) abort();
    }
    if (whole.bytes_seen() > 4096) abort();
  }
  return 0;
}
