#pragma once
#include <cstdint>

namespace egressd {

// The three outcomes of an incremental parser (nginx ssl_preread, Envoy ParseState).
enum class ParseStatus : uint8_t { need_more, done, refused };

}  // namespace egressd
