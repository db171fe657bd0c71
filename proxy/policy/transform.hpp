#pragma once
// Request transforms (DESIGN.md "Request transforms"): which names of a sandbox are
// intercepted, what is set on their requests, and the write-only secrets the values use.
// Pure: validation, host matching and placeholder substitution, no I/O.
//
//   transforms:
//     - hosts: ["api.openai.com", "*.stripe.com", "*"]        exact, *.x, or * (every name)
//       headers: { Authorization: "Bearer {{SECRET:openai}}" } set (replace) request headers
//       body: { api_key: "${e2b.secrets.openai}" }           JSON bodies: set top-level fields
//   bypass: ["*.s3.amazonaws.com"]                            never intercepted (Blaxel)
//   secrets: { openai: "sk-..." }                             write-only
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/request_edit.hpp"

namespace egressd {

struct Transform {
  std::vector<std::string> hosts;
  std::vector<std::pair<std::string, std::string>> headers;  // name, value template
  std::vector<std::pair<std::string, std::string>> body;     // top-level JSON field, template
  bool operator==(const Transform&) const = default;
};

using Secrets = std::map<std::string, std::string>;

inline constexpr size_t kMaxTransforms = 64;
inline constexpr size_t kMaxTransformEntries = 32;  // hosts, headers or body fields each
inline constexpr size_t kMaxSecrets = 64;
inline constexpr size_t kMaxSecretBytes = 8192;

// Each returns why the item is unacceptable, or nothing. Messages never contain a secret.
std::optional<std::string> transform_host_error(std::string_view pattern);
std::optional<std::string> header_name_error(std::string_view name);
// A value template: literal text and placeholders `{{SECRET:name}}` / `${e2b.secrets.name}`;
// no CR, LF or NUL; a placeholder that is not closed or names no valid secret name is refused.
std::optional<std::string> template_error(std::string_view text);
std::optional<std::string> secret_name_error(std::string_view name);
std::optional<std::string> secret_value_error(std::string_view value);

// A transform host pattern (as validated above) matches a canonical name: exact, strictly
// below for "*.x" (on a label boundary), every name for "*".
bool transform_host_matches(std::string_view pattern, std::string_view name);

// Substitutes the placeholders of `text`. Returns false (and the first missing secret's name
// in `missing`) when a placeholder names a secret that is not set.
bool substitute(std::string_view text, const Secrets& secrets, std::string& out,
                std::string& missing);

// What one request of an intercepted connection gets: every matching transform, in order
// (a later one replaces a header or field an earlier one set), with the secrets substituted.
// Builds the edit for `transforms` (those matching the name). Returns false with `missing`
// set when a placeholder has no secret: that request is refused (missing_secret).
bool build_edit(const std::vector<const Transform*>& transforms, const Secrets& secrets,
                RequestEdit& edit, std::string& missing);

}  // namespace egressd
