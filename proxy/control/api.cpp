#include "control/api.hpp"

#include <asio/post.hpp>

#include <algorithm>
#include <chrono>
#include <ctime>

#include "control/check.hpp"
#include "control/spec_json.hpp"

namespace egressd {

ControlResponse reply(int status, const nlohmann::json& body) {
  return ControlResponse{status, body.dump(), {}};
}

namespace {

using nlohmann::json;
ControlResponse no_content() {
  return ControlResponse{204, "", {}};
}
ControlResponse native_error(int status, const std::string& message,
                             const std::string& field = "") {
  return reply(status, error_body(message, field));
}
ControlResponse method_not_allowed(const char* allow) {
  ControlResponse response = native_error(405, std::string("method not allowed; use ") + allow);
  response.headers.push_back({"Allow", allow});
  return response;
}

std::vector<std::string> split_path(const std::string& path) {
  std::vector<std::string> parts;
  size_t start = 1;
  while (start <= path.size()) {
    size_t slash = path.find('/', start);
    if (slash == std::string::npos) slash = path.size();
    parts.push_back(path.substr(start, slash - start));
    start = slash + 1;
  }
  if (!parts.empty() && parts.back().empty()) parts.pop_back();
  return parts;
}

std::string url_decode(const std::string& text) {
  std::string out;
  for (size_t i = 0; i < text.size(); ++i) {
    if (text[i] == '%' && i + 2 < text.size() &&
        std::isxdigit(static_cast<unsigned char>(text[i + 1])) &&
        std::isxdigit(static_cast<unsigned char>(text[i + 2]))) {
      out.push_back(static_cast<char>(std::stoi(text.substr(i + 1, 2), nullptr, 16)));
      i += 2;
    } else {
      out.push_back(text[i] == '+' ? ' ' : text[i]);
    }
  }
  return out;
}

// Well-formed UTF-8 (no overlongs, no surrogates, at most U+10FFFF): ids and paths end up in
// JSON answers and log lines, which must stay valid.
bool valid_utf8(std::string_view text) {
  for (size_t i = 0; i < text.size();) {
    auto byte = static_cast<unsigned char>(text[i]);
    size_t length = byte < 0x80           ? 1
                    : (byte >> 5) == 0x6  ? 2
                    : (byte >> 4) == 0xE  ? 3
                    : (byte >> 3) == 0x1E ? 4
                                          : 0;
    if (length == 0 || i + length > text.size()) return false;
    uint32_t code = length == 1 ? byte : byte & (0x7F >> length);
    for (size_t k = 1; k < length; ++k) {
      auto next = static_cast<unsigned char>(text[i + k]);
      if ((next & 0xC0) != 0x80) return false;
      code = (code << 6) | (next & 0x3F);
    }
    static constexpr uint32_t kSmallest[] = {0, 0, 0x80, 0x800, 0x10000};
    if (code < kSmallest[length] || code > 0x10FFFF || (code >= 0xD800 && code <= 0xDFFF))
      return false;
    i += length;
  }
  return true;
}

std::string iso_time(std::chrono::system_clock::time_point time) {
  auto seconds = std::chrono::system_clock::to_time_t(time);
  std::tm tm{};
  gmtime_r(&seconds, &tm);
  char buffer[32];
  std::strftime(buffer, sizeof(buffer), "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buffer;
}

json parse_body(const ControlRequest& request, bool& ok) {
  auto body = json::parse(request.body.empty() ? std::string("{}") : request.body, nullptr, false);
  ok = !body.is_discarded();
  return body;
}

}  // namespace

std::variant<std::shared_ptr<const Sandbox>, PolicyStore::PutError> ControlApi::apply(
    const SandboxSpec& spec, std::optional<uint64_t> if_match) {
  std::lock_guard lock(write_mutex_);
  auto result = ctx_.store.put(spec, if_match, std::nullopt, [&](const Sandbox& sandbox) {
    return state_.save(spec, sandbox.generation);
  });
  ctx_.metrics.policy_update(std::holds_alternative<std::shared_ptr<const Sandbox>>(result));
  if (auto* sandbox = std::get_if<std::shared_ptr<const Sandbox>>(&result)) {
    ctx_.metrics.sandboxes(ctx_.store.snapshot()->size());
    if (ctx_.published) ctx_.published();
    if (ctx_.settings.load()->on_update == OnUpdate::revoke) revoke_denied(**sandbox);
  }
  return result;
}

// Re-checks each live connection of `sandbox` with the facts it was decided on, on the
// connection's own thread, and closes the ones the new policy denies (reason revoked).
void ControlApi::revoke_denied(const Sandbox& sandbox) {
  auto settings = ctx_.settings.load();
  std::shared_ptr<const CompiledPolicy> policy = sandbox.policy;
  for (auto& live : ctx_.registry.of_sandbox(sandbox.id)) {
    asio::post(live->executor, [live, policy, settings] {
      auto [name, decided] = live->facts();
      if (!decided) return;  // still peeking: it will be decided with the new policy anyway
      DecisionInput input;
      input.name = name.empty() ? nullptr : &name;
      input.destination = live->destination;
      input.port = live->port;
      Decision decision = decide(settings->guard, policy.get(), settings->unknown_source, input);
      // An address deny also holds for the address a name was dialled at.
      bool dialled_denied = decision.reason == Reason::allowed_domain &&
                            !policy->address_denial(live->dialed(), live->port).empty();
      if (decision.verdict == Verdict::deny || dialled_denied) live->abort(Reason::revoked);
    });
  }
}

std::optional<PolicyStore::PutError> ControlApi::reload(const Config& fresh) {
  std::lock_guard lock(write_mutex_);
  auto before = ctx_.store.snapshot();
  std::vector<SandboxSpec> merged;
  for (const SandboxSpec& spec : fresh.sandboxes) {
    if (!state_.has(spec.id)) merged.push_back(spec);
  }
  before->for_each([&](const Sandbox& sandbox) {
    if (state_.has(sandbox.id)) merged.push_back(spec_of(sandbox));
  });
  // The fresh file's gateways judge the merged set; a refused reload keeps the old ones.
  auto gateways_before = ctx_.store.gateways();
  ctx_.store.set_gateways(gateway_names(fresh));
  if (auto problem = ctx_.store.replace_all(merged)) {
    ctx_.store.set_gateways(*gateways_before);
    ctx_.metrics.policy_update(false);
    return problem;
  }
  ctx_.settings.publish(Settings::from(fresh));
  ctx_.metrics.policy_update(true);
  ctx_.metrics.sandboxes(ctx_.store.snapshot()->size());
  if (ctx_.published) ctx_.published();
  if (fresh.on_update == OnUpdate::revoke) {
    ctx_.store.snapshot()->for_each([&](const Sandbox& sandbox) {
      auto old = before->find_by_id(sandbox.id);
      if (old && old->generation != sandbox.generation) revoke_denied(sandbox);
    });
  }
  return std::nullopt;
}

bool ControlApi::remove(const std::string& id) {
  std::lock_guard lock(write_mutex_);
  if (!ctx_.store.snapshot()->find_by_id(id)) return false;
  state_.remove(id);
  ctx_.store.remove(id);
  ctx_.metrics.policy_update(true);
  ctx_.metrics.sandboxes(ctx_.store.snapshot()->size());
  if (ctx_.published) ctx_.published();
  ctx_.denials.forget(id);
  for (auto& live : ctx_.registry.of_sandbox(id)) {
    asio::post(live->executor, [live] { live->abort(Reason::revoked); });
  }
  return true;
}

ControlResponse ControlApi::handle(const ControlRequest& request) {
  if (paused_.load()) {
    ControlResponse busy = native_error(
        503, "egressd is handing over to a new process (--takeover); retry: nothing changed");
    busy.headers.push_back({"Retry-After", "1"});
    return busy;
  }
  std::string path = request.target, query_text;
  if (auto q = path.find('?'); q != std::string::npos) {
    query_text = path.substr(q + 1);
    path = path.substr(0, q);
  }
  std::map<std::string, std::string> query;
  for (size_t start = 0; start < query_text.size();) {
    size_t amp = query_text.find('&', start);
    if (amp == std::string::npos) amp = query_text.size();
    std::string pair = query_text.substr(start, amp - start);
    auto eq = pair.find('=');
    query[url_decode(pair.substr(0, eq))] =
        eq == std::string::npos ? "" : url_decode(pair.substr(eq + 1));
    start = amp + 1;
  }
  auto parts = split_path(path);
  for (auto& part : parts) part = url_decode(part);
  bool utf8 = std::all_of(parts.begin(), parts.end(), [](const auto& p) { return valid_utf8(p); });
  for (const auto& [key, value] : query) utf8 = utf8 && valid_utf8(key) && valid_utf8(value);
  if (!utf8) return native_error(400, "the path or query is not valid UTF-8", "path");
  if (parts.size() >= 1 && parts[0] == "v1") return native(request, parts, query);
  // E2B: PUT /sandboxes/{id}/network; Brimble: PUT /sandboxes/{id}/egress
  if (parts.size() == 3 && parts[0] == "sandboxes" && parts[2] == "network")
    return e2b(request, parts[1]);
  if (parts.size() == 3 && parts[0] == "sandboxes" && parts[2] == "egress")
    return brimble(request, parts[1]);
  // sandbox0: GET|PUT /api/v1/sandboxes/{id}/network
  if (parts.size() == 5 && parts[0] == "api" && parts[1] == "v1" && parts[2] == "sandboxes" &&
      parts[4] == "network") {
    return sandbox0(request, parts[3]);
  }
  // Blaxel: PUT /v0/sandboxes/{name}
  if (parts.size() == 3 && parts[0] == "v0" && parts[1] == "sandboxes")
    return blaxel(request, parts[2]);
  return native_error(404, "no such route: " + path);
}

// The native routes, one row per method and path shape ("{}": a parameter). A known shape
// with another method is 405 with every method the shape has; an unknown one is 404.
ControlResponse ControlApi::native(const ControlRequest& request,
                                   const std::vector<std::string>& path,
                                   const std::map<std::string, std::string>& query) {
  struct Route {
    std::string_view method;
    std::vector<std::string_view> shape;  // after "v1"
    ControlResponse (ControlApi::*handler)(const NativeCall&);
  };
  static const std::vector<Route> routes = {
      {"GET", {"health"}, &ControlApi::health},
      {"GET", {"sandboxes"}, &ControlApi::list_sandboxes},
      {"GET", {"sandboxes", "{}"}, &ControlApi::get_sandbox},
      {"PUT", {"sandboxes", "{}"}, &ControlApi::put_sandbox},
      {"DELETE", {"sandboxes", "{}"}, &ControlApi::delete_sandbox},
      {"POST", {"check"}, &ControlApi::check},
      {"GET", {"connections"}, &ControlApi::connections},
      {"GET", {"denials"}, &ControlApi::denials},
      {"PUT", {"sandboxes", "{}", "secrets"}, &ControlApi::put_secrets},
      {"GET", {"ca.pem"}, &ControlApi::ca_pem},
  };
  std::string allow;
  for (const Route& route : routes) {
    if (route.shape.size() + 1 != path.size()) continue;
    NativeCall call{request, {}, query, nullptr};
    bool match = true;
    for (size_t i = 0; i < route.shape.size() && match; ++i) {
      if (route.shape[i] == "{}") {
        call.params.push_back(path[i + 1]);
      } else {
        match = route.shape[i] == path[i + 1];
      }
    }
    if (!match) continue;
    if (route.method == request.method) {
      call.snapshot = ctx_.store.snapshot();
      return (this->*route.handler)(call);
    }
    allow += (allow.empty() ? "" : ", ") + std::string(route.method);
  }
  if (!allow.empty()) return method_not_allowed(allow.c_str());
  return native_error(404, "no such route: " + request.target);
}

ControlResponse ControlApi::health(const NativeCall& call) {
  return reply(200, {{"status", "ok"},
                     {"generation", call.snapshot->generation()},
                     {"sandboxes", call.snapshot->size()}});
}

ControlResponse ControlApi::list_sandboxes(const NativeCall& call) {
  json list = json::array();
  call.snapshot->for_each(
      [&](const Sandbox& sandbox) { list.push_back(sandbox_to_json(sandbox)); });
  std::sort(list.begin(), list.end(),
            [](const json& a, const json& b) { return a["id"] < b["id"]; });
  return reply(200, {{"sandboxes", list}});
}

ControlResponse ControlApi::get_sandbox(const NativeCall& call) {
  const std::string& id = call.params[0];
  auto sandbox = call.snapshot->share_by_id(id);
  if (!sandbox) return native_error(404, "unknown sandbox \"" + id + "\"");
  return reply(200, sandbox_to_json(*sandbox));
}

ControlResponse ControlApi::delete_sandbox(const NativeCall& call) {
  const std::string& id = call.params[0];
  if (!remove(id)) return native_error(404, "unknown sandbox \"" + id + "\"");
  return no_content();
}

ControlResponse ControlApi::put_sandbox(const NativeCall& call) {
  const std::string& id = call.params[0];
  const ControlRequest& request = call.request;
  if (!valid_sandbox_id(id)) return native_error(400, "ids are 1-128 of [A-Za-z0-9._-]", "id");
  bool ok = false;
  json body = parse_body(request, ok);
  if (!ok) return native_error(400, "invalid JSON");
  bool secrets_given = false;
  auto spec = spec_from_json(id, body, &secrets_given);
  if (auto* error = std::get_if<FieldError>(&spec))
    return native_error(400, error->message, error->field);
  std::lock_guard lock(write_mutex_);  // the kept secrets are those of the sandbox replaced
  if (!secrets_given) {
    // Write-only secrets never come back in a GET, so a GET-edit-PUT without "secrets" keeps
    // them; "secrets": {} clears them.
    if (auto old = ctx_.store.snapshot()->share_by_id(id))
      std::get<SandboxSpec>(spec).secrets = old->policy->secrets();
  }
  std::optional<uint64_t> if_match;
  if (auto header = request.headers.find("if-match"); header != request.headers.end()) {
    std::string value = header->second;
    std::erase(value, '"');
    try {
      if_match = std::stoull(value);
    } catch (const std::exception&) {
      return native_error(400, "If-Match must be a generation number", "If-Match");
    }
  }
  auto result = apply(std::get<SandboxSpec>(spec), if_match);
  if (auto* error = std::get_if<PolicyStore::PutError>(&result)) {
    using Kind = PolicyStore::PutError::Kind;
    int status = error->kind == Kind::invalid ? 400 : error->kind == Kind::storage ? 500 : 409;
    return native_error(status, error->error.message, error->error.field);
  }
  return reply(200, sandbox_to_json(*std::get<std::shared_ptr<const Sandbox>>(result)));
}

// PUT /v1/sandboxes/{id}/secrets {"name":"value",...}: sets those secrets (null removes one),
// keeps the others; write-only, so the answer is a 204 without a body.
ControlResponse ControlApi::put_secrets(const NativeCall& call) {
  const std::string& id = call.params[0];
  bool ok = false;
  json body = parse_body(call.request, ok);
  if (!ok) return native_error(400, "invalid JSON");
  std::lock_guard lock(write_mutex_);
  auto old = ctx_.store.snapshot()->share_by_id(id);
  if (!old) return native_error(404, "unknown sandbox \"" + id + "\"");
  SandboxSpec spec = spec_of(*old);
  std::vector<std::string> removed;
  if (auto error = secrets_from_json(body, "secrets", spec.secrets, &removed))
    return native_error(400, error->message, error->field);
  for (const std::string& name : removed) spec.secrets.erase(name);
  auto result = apply(spec);
  if (auto* error = std::get_if<PolicyStore::PutError>(&result)) {
    int status = error->kind == PolicyStore::PutError::Kind::storage ? 500 : 400;
    return native_error(status, error->error.message, error->error.field);
  }
  return no_content();
}

ControlResponse ControlApi::ca_pem(const NativeCall&) {
  if (ctx_.ca_pem.empty()) return native_error(404, "no interception CA is configured");
  ControlResponse response{200, ctx_.ca_pem, {}};
  response.content_type = "application/x-pem-file";
  return response;
}

ControlResponse ControlApi::check(const NativeCall& call) {
  bool ok = false;
  json body = parse_body(call.request, ok);
  if (!ok) return native_error(400, "invalid JSON");
  auto settings = ctx_.settings.load();
  auto answer = check_request(*call.snapshot, settings->guard, settings->unknown_source, body);
  return reply(answer.status, answer.body);
}

ControlResponse ControlApi::connections(const NativeCall& call) {
  return records(call, true);
}

ControlResponse ControlApi::denials(const NativeCall& call) {
  return records(call, false);
}

// GET /v1/connections and /v1/denials.
ControlResponse ControlApi::records(const NativeCall& call, bool connections) {
  const auto& query = call.query;
  const auto& snapshot = call.snapshot;
  // With sandbox=: that sandbox's; without: host-wide, unknown sources included.
  auto sandbox = query.find("sandbox");
  bool host_wide = sandbox == query.end();
  if (!host_wide && !snapshot->find_by_id(sandbox->second))
    return native_error(404, "unknown sandbox \"" + sandbox->second + "\"");
  auto owner = [](const std::string& id) { return id.empty() ? json(nullptr) : json(id); };
  json list = json::array();
  if (connections) {
    auto now = std::chrono::system_clock::now();
    auto lives = host_wide ? ctx_.registry.all() : ctx_.registry.of_sandbox(sandbox->second);
    std::sort(lives.begin(), lives.end(),
              [](const auto& a, const auto& b) { return a->serial < b->serial; });
    for (const auto& live : lives) {
      auto [name, decided] = live->facts();
      list.push_back(
          {{"id", live->serial},
           {"src", endpoint_text(live->source, live->source_port)},
           {"dst", live->destination.to_string()},
           {"port", live->port},
           {"proto", live->proto},
           {"name", name.empty() ? json(nullptr) : json(name)},
           {"phase", decided ? "relay" : "peek"},
           {"started", iso_time(live->started)},
           {"age_ms",
            std::chrono::duration_cast<std::chrono::milliseconds>(now - live->started).count()}});
      if (host_wide) list.back()["sandbox"] = owner(live->sandbox);
    }
    // fast_path: kernel: the flows the kernel forwards, phase "kernel" (no name: decided by
    // address at SYN), with conntrack's byte counts so far.
    for (const KernelFlow& flow :
         ctx_.kernel_flows ? ctx_.kernel_flows() : std::vector<KernelFlow>{}) {
      const Sandbox* of = snapshot->find_by_source(flow.source);
      std::string id = of ? of->id : std::string();
      if (!host_wide && id != sandbox->second) continue;
      auto started = flow.start.time_since_epoch().count() ? flow.start : now;
      list.push_back(
          {{"id", flow.serial},
           {"src", endpoint_text(flow.source, flow.source_port)},
           {"dst", flow.destination.to_string()},
           {"port", flow.port},
           {"proto", "tcp"},
           {"name", nullptr},
           {"phase", "kernel"},
           {"started", iso_time(started)},
           {"age_ms", std::chrono::duration_cast<std::chrono::milliseconds>(now - started).count()},
           {"kernel", true},
           {"bytes_up", flow.bytes_up},
           {"bytes_down", flow.bytes_down}});
      if (host_wide) list.back()["sandbox"] = owner(id);
    }
    if (host_wide) return reply(200, {{"connections", list}});
    return reply(200, {{"sandbox", sandbox->second}, {"connections", list}});
  }
  auto denials = host_wide ? ctx_.denials.recent_host_wide() : ctx_.denials.recent(sandbox->second);
  for (const Denial& d : denials) {
    list.push_back({{"time", iso_time(d.time)},
                    {"src", d.src},
                    {"dst", d.destination.to_string()},
                    {"port", d.port},
                    {"name", d.name.empty() ? json(nullptr) : json(d.name)},
                    {"reason", to_string(d.reason)},
                    {"rule", d.rule.empty() ? json(nullptr) : json(d.rule)}});
    if (!d.proto.empty()) list.back()["proto"] = d.proto;
    if (!d.qtype.empty()) list.back()["qtype"] = d.qtype;
    if (d.would_deny) list.back()["would_deny"] = to_string(*d.would_deny);
    if (host_wide) list.back()["sandbox"] = owner(d.sandbox);
  }
  if (host_wide) return reply(200, {{"denials", list}});
  return reply(200, {{"sandbox", sandbox->second}, {"denials", list}});
}

}  // namespace egressd
