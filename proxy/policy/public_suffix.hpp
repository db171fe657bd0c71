#pragma once
#include <string_view>

namespace egressd {

// True when `name` (canonical) is an ICANN public suffix in Debian's publicsuffix list
// (/usr/share/publicsuffix), e.g. "com" or "co.uk". Private-section suffixes such as
// "github.io" are not refused: operators allow "*.github.io" on purpose.
bool is_public_suffix(std::string_view name);

// The registrable domain of `name` (canonical): the ICANN public suffix that ends it plus one
// label ("x1.tunnel.example.co.uk" -> "example.co.uk"); a name that is a suffix itself, or has
// no dot, is its own. The DNS filter's budget of new names is kept per registrable domain.
std::string_view registrable_domain(std::string_view name);

}  // namespace egressd
