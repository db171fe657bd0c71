#pragma once
#include <string_view>

namespace egressd {

// True when `name` (canonical) is an ICANN public suffix in Debian's publicsuffix list
// (/usr/share/publicsuffix), e.g. "com" or "co.uk". Private-section suffixes such as
// "github.io" are not refused: operators allow "*.github.io" on purpose.
bool is_public_suffix(std::string_view name);

}  // namespace egressd
