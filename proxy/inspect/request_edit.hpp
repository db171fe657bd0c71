#pragma once
// Applies a RequestEdit to bytes llhttp has already accepted as one request (pure, no I/O).
// The head is written out again line by line, CRLF, with the edited headers replacing every
// header of the same name (obs-fold continuations go with their header); the body of a JSON
// request gets its top-level fields set. Framing is egressd's: a rewritten body is sent with a
// Content-Length and without Transfer-Encoding, whatever the client used.
#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

#include "core/request_edit.hpp"

namespace egressd {

// `head`: the bytes from the request line (leading empty lines allowed) to the blank line.
// `content_length`: set when the body was rewritten: Content-Length/Transfer-Encoding are
// replaced by that length.
std::string edit_head(std::string_view head, const RequestEdit& edit,
                      std::optional<size_t> content_length = std::nullopt);

// The body with `edit.body` set as top-level string fields. Nothing when the body is not a
// JSON object (then it goes as it came).
std::optional<std::string> edit_json_body(std::string_view body, const RequestEdit& edit);

}  // namespace egressd
