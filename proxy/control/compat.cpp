// The compatible endpoints: each maps a platform's egress API onto the native policy with
// that platform's documented meaning (../shared/reference/). The sandbox must exist; its
// sources and mode are kept. What differs between platforms (error shape, translation, answer)
// is a Platform; compatible() does the rest the same way for all four.
#include "control/api.hpp"
#include "control/spec_json.hpp"

#include <algorithm>
#include <functional>

namespace egressd {
namespace {

using nlohmann::json;

// What a list entry is, by the native grammar, and whether it carries ports or brackets.
struct EntryKind {
  bool valid = false;
  bool address = false;
  bool v6 = false;
  bool any = false;
  bool has_ports = false;
  std::string error;
};

EntryKind classify(const std::string& text) {
  EntryKind kind;
  auto parsed = parse_rule(text);
  if (auto* error = std::get_if<std::string>(&parsed)) {
    kind.error = "\"" + text + "\": " + *error;
    return kind;
  }
  const Rule& rule = std::get<Rule>(parsed);
  kind.valid = true;
  kind.address = rule.kind == RuleKind::address;
  kind.v6 = kind.address && rule.prefix.address.family == Family::v6;
  kind.any = rule.kind == RuleKind::any;
  kind.has_ports = !(rule.ports == PortRange{}) || text.front() == '[';
  return kind;
}

std::optional<std::vector<std::string>> strings_of(const json& value) {
  if (!value.is_array()) return std::nullopt;
  std::vector<std::string> out;
  for (const auto& item : value) {
    if (!item.is_string()) return std::nullopt;
    out.push_back(item.get<std::string>());
  }
  return out;
}

// sandbox0's "*.x" also matches x itself: that is the native ".x".
std::string sandbox0_domain_in(const std::string& domain) {
  return domain.starts_with("*.") ? domain.substr(1) : domain;
}
std::string sandbox0_domain_out(const std::string& rule) {
  return rule.starts_with(".") ? "*" + rule : rule;
}

}  // namespace

// One platform's side of a compatible endpoint.
struct CompatPlatform {
  std::vector<std::string_view> methods;  // "PUT", or "GET" and "PUT"
  std::string method_message;             // the 405's message
  std::function<ControlResponse(int status, const std::string& message)> error;
  std::function<std::string(const std::string& id)> not_found;
  std::string not_an_object;         // a body that is not a JSON object
  bool empty_body_is_object = true;  // "" reads as {}
  // GET: the stored policy in the platform's shape.
  std::function<json(const Sandbox&)> render;
  // PUT: the body onto the sandbox's current spec. A refusal, or the spec to apply (nullopt:
  // the body changes no policy).
  std::function<std::variant<std::optional<SandboxSpec>, ControlResponse>(const json& body,
                                                                          SandboxSpec spec)>
      translate;
  // The 2xx answer: the body, the spec before, the sandbox as stored now.
  std::function<ControlResponse(const json& body, const SandboxSpec& before, const Sandbox& now)>
      answer;
};

ControlResponse ControlApi::compatible(const ControlRequest& request, const std::string& id,
                                       const CompatPlatform& platform) {
  // Read, translate and apply as one change: nothing else writes in between (SIGHUP).
  std::lock_guard lock(write_mutex_);
  const auto& methods = platform.methods;
  if (std::find(methods.begin(), methods.end(), request.method) == methods.end()) {
    ControlResponse r = platform.error(405, platform.method_message);
    std::string allow;
    for (auto m : methods) allow += (allow.empty() ? "" : ", ") + std::string(m);
    r.headers.push_back({"Allow", allow});
    return r;
  }
  auto existing = ctx_.store.snapshot()->share_by_id(id);
  if (!existing) return platform.error(404, platform.not_found(id));
  if (request.method == "GET") return reply(200, platform.render(*existing));
  std::string text = request.body;
  if (text.empty() && platform.empty_body_is_object) text = "{}";
  auto body = json::parse(text, nullptr, false);
  if (body.is_discarded() || !body.is_object()) return platform.error(400, platform.not_an_object);
  SandboxSpec before = spec_of(*existing);
  auto translated = platform.translate(body, before);
  if (auto* refusal = std::get_if<ControlResponse>(&translated)) return *refusal;
  std::shared_ptr<const Sandbox> now = existing;
  if (auto& spec = std::get<std::optional<SandboxSpec>>(translated)) {
    auto result = apply(*spec);
    if (auto* problem = std::get_if<PolicyStore::PutError>(&result)) {
      return platform.error(problem->kind == PolicyStore::PutError::Kind::storage ? 500 : 400,
                            problem->error.message);
    }
    now = std::get<std::shared_ptr<const Sandbox>>(result);
  }
  return platform.answer(body, before, *now);
}

namespace {

using Translation = std::variant<std::optional<SandboxSpec>, ControlResponse>;

// E2B PUT /sandboxes/{id}/network {"allowOut":[...],"denyOut":[...]} -> 204.
// allowOut: IPs, CIDRs or domains; denyOut: IPs and CIDRs only. Allow always takes precedence
// over deny, so a deny prefix inside an allow prefix is dropped (natively the longer deny
// would win). 0.0.0.0/0 (ALL_TRAFFIC) means all traffic: ::/0 is added beside it. Internet
// access stays on by default; an empty body clears every rule.
const CompatPlatform& e2b_platform() {
  static const CompatPlatform platform = [] {
    CompatPlatform p;
    p.methods = {"PUT"};
    p.method_message = "method not allowed; use PUT";
    p.error = [](int code, const std::string& message) {
      return reply(code, {{"code", code}, {"message", message}});
    };
    p.not_found = [](const std::string& id) { return "sandbox \"" + id + "\" not found"; };
    p.not_an_object = "body must be a JSON object";
    p.translate = [error = p.error](const json& body, SandboxSpec spec) -> Translation {
      std::vector<std::string> allow, deny;
      // rules: {"host": [{"transform": {"headers": {...}}}, ...]}: per-host request transforms
      // (a rule grants no egress). The whole network configuration is replaced: no rules, no
      // transforms. Secrets (${e2b.secrets.NAME}) come from PUT /v1/sandboxes/{id}/secrets.
      spec.transforms.clear();
      for (const auto& [key, value] : body.items()) {
        if (key == "rules") {
          if (!value.is_object()) return error(400, "rules must be an object of host: [rules]");
          for (const auto& [host, list] : value.items()) {
            std::string field = "rules." + host;
            if (!list.is_array()) return error(400, field + " must be a list of rules");
            for (size_t i = 0; i < list.size(); ++i) {
              std::string at = field + "[" + std::to_string(i) + "]";
              if (!list[i].is_object()) return error(400, at + " must be an object");
              Transform transform;
              transform.hosts = {host};
              for (const auto& [rule_key, rule_value] : list[i].items()) {
                if (rule_key != "transform")
                  return error(400, at + "." + rule_key + ": unknown field");
                if (!rule_value.is_object()) return error(400, at + ".transform must be an object");
                for (const auto& [t_key, t_value] : rule_value.items()) {
                  if (t_key != "headers")
                    return error(400, at + ".transform." + t_key + ": unknown field");
                  if (auto problem =
                          string_pairs(t_value, at + ".transform.headers", transform.headers))
                    return error(400, problem->field + ": " + problem->message);
                }
              }
              spec.transforms.push_back(std::move(transform));
            }
          }
          continue;
        }
        auto list = strings_of(value);
        if (key != "allowOut" && key != "denyOut")
          return error(400, "unknown field \"" + key + "\"");
        if (!list) return error(400, key + " must be a list of strings");
        (key == "allowOut" ? allow : deny) = *list;
      }
      std::vector<IpPrefix> allow_prefixes;
      for (size_t i = 0; i < allow.size(); ++i) {
        EntryKind kind = classify(allow[i]);
        if (!kind.valid) return error(400, "allowOut[" + std::to_string(i) + "]: " + kind.error);
        if (kind.has_ports || kind.any)
          return error(400, "allowOut[" + std::to_string(i) + "]: \"" + allow[i] +
                                "\": expected an IP, a CIDR or a domain");
        if (kind.address) allow_prefixes.push_back(std::get<IpPrefix>(IpPrefix::parse(allow[i])));
      }
      for (size_t i = 0; i < deny.size(); ++i) {
        EntryKind kind = classify(deny[i]);
        if (!kind.valid) return error(400, "denyOut[" + std::to_string(i) + "]: " + kind.error);
        if (!kind.address || kind.has_ports) {
          return error(400, "denyOut[" + std::to_string(i) + "]: \"" + deny[i] +
                                "\": domain names are not supported for deny rules; use IPs or "
                                "CIDR blocks");
        }
      }
      auto all_traffic = [](std::vector<std::string>& list) {
        if (std::find(list.begin(), list.end(), "0.0.0.0/0") != list.end() &&
            std::find(list.begin(), list.end(), "::/0") == list.end()) {
          list.push_back("::/0");
        }
      };
      all_traffic(allow);
      all_traffic(deny);
      for (const auto& text : allow) {
        if (text == "::/0") allow_prefixes.push_back(std::get<IpPrefix>(IpPrefix::parse(text)));
      }
      std::erase_if(deny, [&](const std::string& text) {
        IpPrefix prefix = std::get<IpPrefix>(IpPrefix::parse(text));
        return std::any_of(allow_prefixes.begin(), allow_prefixes.end(), [&](const IpPrefix& a) {
          return a.length <= prefix.length && a.contains(prefix.address);
        });
      });
      spec.default_verdict = Verdict::allow;
      spec.allow = allow;
      spec.deny = deny;
      spec.names_bypass_address_denies = true;  // E2B: an allowed domain beats denyOut
      return spec;
    };
    p.answer = [](const json&, const SandboxSpec&, const Sandbox&) {
      return ControlResponse{204, "", {}};
    };
    return p;
  }();
  return platform;
}

// Brimble PUT /sandboxes/{id}/egress {"mode":"open|restricted|deny_all","allow":[...]}.
const CompatPlatform& brimble_platform() {
  static const CompatPlatform platform = [] {
    CompatPlatform p;
    p.methods = {"PUT"};
    p.method_message = "method not allowed; use PUT";
    p.error = [](int code, const std::string& message) {
      return reply(code, {{"message", message}});
    };
    p.not_found = [](const std::string&) { return std::string("Sandbox not found"); };
    p.not_an_object = "body must be a JSON object";
    p.translate = [error = p.error](const json& body, SandboxSpec spec) -> Translation {
      for (const auto& [key, value] : body.items()) {
        if (key != "mode" && key != "allow") return error(400, "unknown field \"" + key + "\"");
      }
      if (!body.contains("mode") || !body["mode"].is_string())
        return error(400, "mode is required: open, restricted or deny_all");
      std::string mode = body["mode"];
      if (mode != "open" && mode != "restricted" && mode != "deny_all") {
        return error(400, "mode must be one of open, restricted, deny_all");
      }
      std::vector<std::string> allow;
      if (mode == "restricted") {
        auto list = body.contains("allow") ? strings_of(body["allow"]) : std::nullopt;
        if (!list)
          return error(400, "allow (a list of strings) is required when mode is restricted");
        if (list->empty() || list->size() > 50) return error(400, "allow must have 1-50 entries");
        for (size_t i = 0; i < list->size(); ++i) {
          const std::string& entry = (*list)[i];
          if (entry.empty() || entry.size() > 253)
            return error(400, "allow[" + std::to_string(i) + "] must be 1-253 characters");
          EntryKind kind = classify(entry);
          if (!kind.valid) return error(400, "allow[" + std::to_string(i) + "]: " + kind.error);
          if (kind.v6 || kind.has_ports || kind.any) {
            return error(400, "allow[" + std::to_string(i) + "]: \"" + entry +
                                  "\": expected an IPv4 address, a CIDR range or a hostname");
          }
        }
        allow = *list;
      } else if (body.contains("allow")) {
        return error(400, "allow must be omitted when mode is " + mode);
      }
      spec.default_verdict = mode == "open" ? Verdict::allow : Verdict::deny;
      spec.allow = allow;
      spec.deny.clear();
      spec.names_bypass_address_denies = false;
      return spec;
    };
    p.answer = [](const json& body, const SandboxSpec& before, const Sandbox& now) {
      std::string mode = body["mode"];
      json egress = {{"mode", mode}};
      if (mode == "restricted") egress["allow"] = body["allow"];
      return reply(200, {{"message", "Sandbox egress updated"},
                         {"data",
                          {{"id", now.id},
                           {"egress", egress},
                           {"block_outbound", mode == "deny_all"},
                           {"network_updated", !same_spec(before, spec_of(now))}}}});
    };
    return p;
  }();
  return platform;
}

// sandbox0 GET|PUT /api/v1/sandboxes/{id}/network {"mode":"allow-all|block-all","egress":{...}}.
// In allow-all only the denied_* fields apply, in block-all only the allowed_* ones; ports
// become port-only rules ("*:443"); "*.x" also matches x, so it becomes the native ".x".
json sandbox0_render(const Sandbox& sandbox) {
  SandboxSpec spec = spec_of(sandbox);
  bool allow_all = spec.default_verdict == Verdict::allow;
  const auto& rules = allow_all ? spec.deny : spec.allow;
  std::string prefix = allow_all ? "denied_" : "allowed_";
  json domains = json::array(), cidrs = json::array(), ports = json::array();
  for (const std::string& rule : rules) {
    EntryKind kind = classify(rule);
    if (kind.any && rule.starts_with("*:")) {
      std::string range = rule.substr(2);
      if (range.find('-') == std::string::npos) {
        ports.push_back(std::stoi(range));
      } else {
        ports.push_back(range);
      }
    } else if (kind.address) {
      cidrs.push_back(rule);
    } else {
      domains.push_back(sandbox0_domain_out(rule));
    }
  }
  return json{
      {"mode", allow_all ? "allow-all" : "block-all"},
      {"egress",
       {{prefix + "domains", domains}, {prefix + "cidrs", cidrs}, {prefix + "ports", ports}}}};
}

const CompatPlatform& sandbox0_platform() {
  static const CompatPlatform platform = [] {
    CompatPlatform p;
    p.methods = {"GET", "PUT"};
    p.method_message = "method not allowed; use GET or PUT";
    p.error = [](int code, const std::string& message) {
      return reply(code, {{"error", message}});
    };
    p.not_found = [](const std::string& id) { return "sandbox \"" + id + "\" not found"; };
    p.not_an_object = "body must be a JSON object";
    p.render = sandbox0_render;
    p.translate = [error = p.error](const json& body, SandboxSpec spec) -> Translation {
      for (const auto& [key, value] : body.items()) {
        if (key != "mode" && key != "egress") return error(400, "unknown field \"" + key + "\"");
      }
      if (!body.contains("mode") || (body["mode"] != "allow-all" && body["mode"] != "block-all")) {
        return error(400, "mode must be allow-all or block-all");
      }
      bool allow_all = body["mode"] == "allow-all";
      std::vector<std::string> rules;
      if (body.contains("egress") && !body["egress"].is_null()) {
        const json& egress = body["egress"];
        if (!egress.is_object()) return error(400, "egress must be an object");
        static const std::vector<std::string> known = {"allowed_domains", "denied_domains",
                                                       "allowed_cidrs",   "denied_cidrs",
                                                       "allowed_ports",   "denied_ports"};
        for (const auto& [key, value] : egress.items()) {
          if (std::find(known.begin(), known.end(), key) == known.end())
            return error(400, "unknown field \"egress." + key + "\"");
          bool applies = key.starts_with(allow_all ? "denied_" : "allowed_");
          if (key.ends_with("_ports")) {
            if (!value.is_array()) return error(400, "egress." + key + " must be a list");
            for (size_t i = 0; i < value.size(); ++i) {
              std::string port = value[i].is_number_integer()
                                     ? std::to_string(value[i].get<int64_t>())
                                 : value[i].is_string() ? value[i].get<std::string>()
                                                        : std::string("?");
              std::string rule = "*:" + port;
              if (!classify(rule).valid)
                return error(400, "egress." + key + "[" + std::to_string(i) +
                                      "]: not a port or range 1-65535");
              if (applies) rules.push_back(rule);
            }
            continue;
          }
          auto list = strings_of(value);
          if (!list) return error(400, "egress." + key + " must be a list of strings");
          for (size_t i = 0; i < list->size(); ++i) {
            std::string field = "egress." + key + "[" + std::to_string(i) + "]";
            bool domain_field = key.ends_with("_domains");
            std::string rule = domain_field ? sandbox0_domain_in((*list)[i]) : (*list)[i];
            EntryKind kind = classify(rule);
            if (!kind.valid) return error(400, field + ": " + kind.error);
            if (kind.has_ports || kind.any || kind.address == domain_field) {
              return error(400, field + ": \"" + (*list)[i] + "\" is not " +
                                    (domain_field ? "a domain" : "an IP or CIDR"));
            }
            if (applies) rules.push_back(rule);
          }
        }
      }
      spec.default_verdict = allow_all ? Verdict::allow : Verdict::deny;
      spec.allow = allow_all ? std::vector<std::string>{} : rules;
      spec.deny = allow_all ? rules : std::vector<std::string>{};
      spec.names_bypass_address_denies = false;
      return spec;
    };
    p.answer = [](const json&, const SandboxSpec&, const Sandbox& now) {
      return reply(200, sandbox0_render(now));
    };
    return p;
  }();
  return platform;
}

// Blaxel PUT /v0/sandboxes/{name} with a Sandbox object: spec.network.allowedDomains (an
// allowlist: only these) and forbiddenDomains (a denylist: all but these); allowedDomains
// takes precedence when both are set. Other fields are accepted and ignored; the answer is
// the Sandbox object.
const CompatPlatform& blaxel_platform() {
  static const CompatPlatform platform = [] {
    CompatPlatform p;
    p.methods = {"PUT"};
    p.method_message = "use PUT";
    p.error = [](int code, const std::string& message) {
      const char* kind = code == 404   ? "Not Found"
                         : code == 405 ? "Method Not Allowed"
                         : code >= 500 ? "Internal Server Error"
                                       : "Bad Request";
      return reply(code, {{"code", code}, {"error", kind}, {"message", message}});
    };
    p.not_found = [](const std::string& id) { return "sandbox " + id + " not found"; };
    p.not_an_object = "body must be a Sandbox object";
    p.empty_body_is_object = false;
    p.translate = [error = p.error](const json& body, SandboxSpec spec) -> Translation {
      // null stands for absent; any other non-object is a bad Sandbox object.
      auto object_at = [&](const json& parent, const char* key) -> const json* {
        if (!parent.contains(key) || parent[key].is_null()) return nullptr;
        return &parent[key];
      };
      if (const json* metadata = object_at(body, "metadata")) {
        if (!metadata->is_object()) return error(400, "metadata must be an object");
        if (metadata->contains("name") && (*metadata)["name"] != spec.id)
          return error(400, "metadata.name does not match the sandbox in the path");
      }
      const json* sandbox_spec = object_at(body, "spec");
      if (sandbox_spec && !sandbox_spec->is_object()) return error(400, "spec must be an object");
      const json* network_at = sandbox_spec ? object_at(*sandbox_spec, "network") : nullptr;
      if (!network_at) return std::optional<SandboxSpec>();  // no network: no policy change
      const json& network = *network_at;
      if (!network.is_object()) return error(400, "spec.network must be an object");
      std::vector<std::string> lists[2];
      const char* names[2] = {"allowedDomains", "forbiddenDomains"};
      for (int l = 0; l < 2; ++l) {
        if (!network.contains(names[l]) || network[names[l]].is_null()) continue;
        auto list = strings_of(network[names[l]]);
        if (!list)
          return error(400, std::string("spec.network.") + names[l] + " must be a list of strings");
        for (size_t i = 0; i < list->size(); ++i) {
          EntryKind kind = classify((*list)[i]);
          std::string field =
              std::string("spec.network.") + names[l] + "[" + std::to_string(i) + "]";
          if (!kind.valid) return error(400, field + ": " + kind.error);
          if (kind.address || kind.any || kind.has_ports)
            return error(400, field + ": \"" + (*list)[i] + "\" is not a domain");
        }
        lists[l] = *list;
      }
      // spec.network.egress {mode: "dedicated", gateway: NAME}: every connection leaves through
      // that gateway; another mode (or {}) leaves through the host's default address; absent:
      // unchanged. Per-destination policies are "not yet supported" by Blaxel: refused.
      if (const json* egress = object_at(network, "egress")) {
        if (!egress->is_object()) return error(400, "spec.network.egress must be an object");
        for (const auto& [key, value] : egress->items()) {
          if (key != "mode" && key != "gateway" && key != "policies")
            return error(400, "spec.network.egress." + key + ": unknown field");
        }
        if (egress->contains("policies") && !(*egress)["policies"].is_null() &&
            !((*egress)["policies"].is_array() && (*egress)["policies"].empty()))
          return error(400,
                       "spec.network.egress.policies: per-destination policies are not supported");
        std::string mode = "dedicated";
        if (egress->contains("mode") && !(*egress)["mode"].is_null()) {
          if (!(*egress)["mode"].is_string())
            return error(400, "spec.network.egress.mode must be a string");
          mode = (*egress)["mode"].get<std::string>();
        }
        const json* gateway = object_at(*egress, "gateway");
        if (gateway && !gateway->is_string())
          return error(400, "spec.network.egress.gateway must be a string");
        if (mode == "dedicated") {
          if (!gateway || gateway->get<std::string>().empty())
            return error(400, "spec.network.egress.gateway: required with mode \"dedicated\"");
          spec.gateway = gateway->get<std::string>();
        } else if (mode == "shared") {
          spec.gateway.clear();
        } else {
          return error(
              400, "spec.network.egress.mode: \"" + mode + "\" is not \"dedicated\" or \"shared\"");
        }
      }
      // spec.network.proxy {routing: [ProxyTarget], bypass: [...]}: request transforms; the
      // targets' secrets are write-only and join the sandbox's. Absent: unchanged.
      if (const json* proxy = object_at(network, "proxy")) {
        if (!proxy->is_object()) return error(400, "spec.network.proxy must be an object");
        spec.transforms.clear();
        spec.bypass.clear();
        Secrets given;
        for (const auto& [key, value] : proxy->items()) {
          std::string field = "spec.network.proxy." + key;
          if (value.is_null()) continue;
          if (key == "bypass") {
            auto list = strings_of(value);
            if (!list) return error(400, field + " must be a list of strings");
            spec.bypass = *list;
          } else if (key == "routing") {
            if (!value.is_array()) return error(400, field + " must be a list of ProxyTarget");
            for (size_t i = 0; i < value.size(); ++i) {
              std::string at = field + "[" + std::to_string(i) + "]";
              const json& target = value[i];
              if (!target.is_object()) return error(400, at + " must be an object");
              Transform transform;
              for (const auto& [t_key, t_value] : target.items()) {
                std::string where = at + "." + t_key;
                std::optional<FieldError> problem;
                if (t_value.is_null()) continue;
                if (t_key == "destinations") {
                  auto list = strings_of(t_value);
                  if (!list) return error(400, where + " must be a list of strings");
                  transform.hosts = *list;
                } else if (t_key == "headers") {
                  problem = string_pairs(t_value, where, transform.headers);
                } else if (t_key == "body") {
                  problem = string_pairs(t_value, where, transform.body);
                } else if (t_key == "secrets") {
                  Secrets these;
                  problem = secrets_from_json(t_value, where, these);
                  for (const auto& [name, secret] : these) {
                    auto [it, fresh] = given.emplace(name, secret);
                    if (!fresh && it->second != secret)
                      return error(400,
                                   where + "." + name +
                                       ": another routing rule gives this secret another value");
                  }
                } else {
                  return error(400, where + ": unknown field");
                }
                if (problem) return error(400, problem->field + ": " + problem->message);
              }
              if (transform.hosts.empty())
                return error(400, at + ".destinations: name at least one destination (\"*\": all)");
              spec.transforms.push_back(std::move(transform));
            }
          } else {
            return error(400, field + ": unknown field");
          }
        }
        for (auto& [name, secret] : given) spec.secrets[name] = std::move(secret);
      }
      if (!lists[0].empty()) {
        spec.default_verdict = Verdict::deny;
        spec.allow = lists[0];
        spec.deny.clear();
      } else {
        spec.default_verdict = Verdict::allow;
        spec.allow.clear();
        spec.deny = lists[1];
      }
      return spec;
    };
    p.answer = [](const json& body, const SandboxSpec&, const Sandbox& now) {
      json answer = body;
      answer["metadata"]["name"] = now.id;
      // The egress as stored (a gateway set earlier comes back too).
      if (answer.contains("spec") && answer["spec"].is_object() &&
          answer["spec"].contains("network") && answer["spec"]["network"].is_object()) {
        const std::string& gateway = now.policy->gateway();
        if (!gateway.empty()) {
          answer["spec"]["network"]["egress"] = {{"mode", "dedicated"}, {"gateway", gateway}};
        } else if (answer["spec"]["network"].contains("egress")) {
          answer["spec"]["network"]["egress"] = {{"mode", "shared"}};
        }
      }
      // Secrets are write-only: the echoed routing rules lose them.
      if (answer.contains("spec") && answer["spec"].is_object() &&
          answer["spec"].contains("network") && answer["spec"]["network"].is_object() &&
          answer["spec"]["network"].contains("proxy") &&
          answer["spec"]["network"]["proxy"].is_object() &&
          answer["spec"]["network"]["proxy"].contains("routing") &&
          answer["spec"]["network"]["proxy"]["routing"].is_array()) {
        for (json& target : answer["spec"]["network"]["proxy"]["routing"])
          if (target.is_object()) target.erase("secrets");
      }
      answer["status"] = "DEPLOYED";
      return reply(200, answer);
    };
    return p;
  }();
  return platform;
}

}  // namespace

ControlResponse ControlApi::e2b(const ControlRequest& request, const std::string& id) {
  return compatible(request, id, e2b_platform());
}

ControlResponse ControlApi::brimble(const ControlRequest& request, const std::string& id) {
  return compatible(request, id, brimble_platform());
}

ControlResponse ControlApi::sandbox0(const ControlRequest& request, const std::string& id) {
  return compatible(request, id, sandbox0_platform());
}

ControlResponse ControlApi::blaxel(const ControlRequest& request, const std::string& id) {
  return compatible(request, id, blaxel_platform());
}

}  // namespace egressd
