#include "policy/transform.hpp"

#include <variant>

#include "policy/rule.hpp"

namespace egressd {
namespace {

constexpr std::string_view kBlaxelOpen = "{{SECRET:";
constexpr std::string_view kBlaxelClose = "}}";
constexpr std::string_view kE2bOpen = "${e2b.secrets.";
constexpr std::string_view kE2bClose = "}";

bool is_tchar(char c) {  // RFC 9110 token characters
  if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) return true;
  return std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
}

char lower(char c) {
  return c >= 'A' && c <= 'Z' ? static_cast<char>(c + 32) : c;
}

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i)
    if (lower(a[i]) != lower(b[i])) return false;
  return true;
}

// Walks a template: literal runs and placeholders. `on_literal(text)`, `on_secret(name)`;
// returns an error message or nothing.
template <class Literal, class Secret>
std::optional<std::string> walk(std::string_view text, Literal on_literal, Secret on_secret) {
  size_t at = 0;
  while (at < text.size()) {
    size_t blaxel = text.find(kBlaxelOpen, at);
    size_t e2b = text.find(kE2bOpen, at);
    size_t open = std::min(blaxel, e2b);
    if (open == std::string_view::npos) {
      on_literal(text.substr(at));
      break;
    }
    bool is_blaxel = open == blaxel;
    std::string_view opener = is_blaxel ? kBlaxelOpen : kE2bOpen;
    std::string_view closer = is_blaxel ? kBlaxelClose : kE2bClose;
    size_t close = text.find(closer, open + opener.size());
    if (close == std::string_view::npos)
      return "placeholder " + std::string(opener) + "... is not closed with " + std::string(closer);
    std::string_view name = text.substr(open + opener.size(), close - open - opener.size());
    if (auto error = secret_name_error(name)) return "placeholder: " + *error;
    on_literal(text.substr(at, open - at));
    if (!on_secret(name)) return std::string();  // stop: the caller knows why
    at = close + closer.size();
  }
  return std::nullopt;
}

}  // namespace

std::optional<std::string> transform_host_error(std::string_view pattern) {
  if (pattern == "*") return std::nullopt;
  if (pattern.find(':') != std::string_view::npos)
    return "a transform host is a name (exact or *.example.com), without ports or addresses";
  auto parsed = parse_rule(pattern);
  if (auto* error = std::get_if<std::string>(&parsed)) return *error;
  RuleKind kind = std::get<Rule>(parsed).kind;
  if (kind != RuleKind::exact_name && kind != RuleKind::below_name)
    return "a transform host is an exact name, *.example.com or *";
  return std::nullopt;
}

std::optional<std::string> header_name_error(std::string_view name) {
  if (name.empty() || name.size() > 256) return "a header name is 1 to 256 token characters";
  for (char c : name)
    if (!is_tchar(c))
      return "a header name is a token (RFC 9110): letters, digits, !#$%&'*+-.^_`|~";
  // Framing and routing stay egressd's and the client's: a transform cannot smuggle a request.
  for (std::string_view managed :
       {"host", "content-length", "transfer-encoding", "connection", "upgrade", "te", "trailer",
        "keep-alive", "proxy-connection", "expect"}) {
    if (iequals(name, managed))
      return "this header frames or routes the request and cannot be set by a transform";
  }
  return std::nullopt;
}

std::optional<std::string> template_error(std::string_view text) {
  if (text.size() > kMaxSecretBytes) return "longer than 8192 bytes";
  for (char c : text)
    if (c == '\r' || c == '\n' || c == '\0') return "contains CR, LF or NUL";
  return walk(
      text, [](std::string_view) {}, [](std::string_view) { return true; });
}

std::optional<std::string> secret_name_error(std::string_view name) {
  if (name.empty() || name.size() > 64) return "a secret name is 1 to 64 characters";
  for (char c : name) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '-' || c == '.';
    if (!ok) return "a secret name is made of letters, digits, '_', '-' and '.'";
  }
  return std::nullopt;
}

std::optional<std::string> secret_value_error(std::string_view value) {
  if (value.size() > kMaxSecretBytes) return "a secret is at most 8192 bytes";
  for (char c : value)
    if (c == '\r' || c == '\n' || c == '\0') return "a secret must not contain CR, LF or NUL";
  return std::nullopt;
}

bool transform_host_matches(std::string_view pattern, std::string_view name) {
  if (pattern == "*") return !name.empty();
  if (pattern.starts_with("*.")) {
    std::string_view base = pattern.substr(2);
    return name.size() > base.size() + 1 && name.ends_with(base) &&
           name[name.size() - base.size() - 1] == '.';
  }
  return name == pattern;
}

bool substitute(std::string_view text, const Secrets& secrets, std::string& out,
                std::string& missing) {
  out.clear();
  auto error = walk(
      text, [&](std::string_view literal) { out += literal; },
      [&](std::string_view name) {
        auto found = secrets.find(std::string(name));
        if (found == secrets.end()) {
          missing = std::string(name);
          return false;
        }
        out += found->second;
        return true;
      });
  return !error;  // templates were validated at load: the only stop is a missing secret
}

bool build_edit(const std::vector<const Transform*>& transforms, const Secrets& secrets,
                RequestEdit& edit, std::string& missing) {
  auto set = [](std::vector<std::pair<std::string, std::string>>& list, const std::string& key,
                std::string value, bool case_insensitive) {
    for (auto& [name, existing] : list) {
      if (case_insensitive ? iequals(name, key) : name == key) {
        existing = std::move(value);
        return;
      }
    }
    list.emplace_back(key, std::move(value));
  };
  std::string value;
  for (const Transform* transform : transforms) {
    for (const auto& [name, text] : transform->headers) {
      if (!substitute(text, secrets, value, missing)) return false;
      set(edit.headers, name, value, true);
    }
    for (const auto& [field, text] : transform->body) {
      if (!substitute(text, secrets, value, missing)) return false;
      set(edit.body, field, value, false);
    }
  }
  return true;
}

}  // namespace egressd
