// Invariants: rules either parse to canonical names / zero host bits, or are refused; never crash.
#include <cstdlib>
#include <string_view>

#include "core/hostname.hpp"
#include "policy/rule.hpp"

using namespace egressd;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  auto parsed = parse_rule(text);
  if (auto* rule = std::get_if<Rule>(&parsed)) {
    if (!rule->name.empty() && !hostname_error(rule->name).empty()) abort();
    if (rule->ports.low > rule->ports.high) abort();
    if (rule->kind == RuleKind::address) {
      const IpPrefix& p = rule->prefix;
      if (p.address.bits & ~prefix_mask(p.address.width(), p.length)) abort();
    }
  }
  return 0;
}
