#pragma once
// Applies a RequestEdit to a request llhttp has already accepted (pure, no I/O). The head is
// written again from what llhttp parsed (method, target, version, every header in order), not
// from the client's bytes, so the origin reads the request egressd decided whatever leniency
// the client tried; the edited headers replace every header of the same name. The body of a
// JSON request gets its top-level fields set. A rewritten body is framed by egressd: a
// Content-Length, no Transfer-Encoding, whatever the client used.
#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

#include "core/request_edit.hpp"
#include "inspect/http_request.hpp"

namespace egressd {

// `content_length`: set when the body was rewritten: Content-Length/Transfer-Encoding are
// replaced by that length.
std::string edit_head(const ParsedHead& head, const RequestEdit& edit,
                      std::optional<size_t> content_length = std::nullopt);

// The body with `edit.body` set as top-level string fields. Nothing when the body is not a
// JSON object (then it goes as it came).
std::optional<std::string> edit_json_body(std::string_view body, const RequestEdit& edit);

}  // namespace egressd
