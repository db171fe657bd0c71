#include "config/config.hpp"

#include "policy/rule.hpp"

#include <yaml-cpp/yaml.h>

#include <charconv>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include "policy/policy_store.hpp"

namespace egressd {
namespace {

class Loader {
 public:
  explicit Loader(std::string name) : name_(std::move(name)) {}

  std::vector<std::string> errors;

  void error(const YAML::Mark& mark, const std::string& message) {
    std::ostringstream out;
    out << name_ << ":" << (mark.line + 1) << ":" << (mark.column + 1) << ": " << message;
    errors.push_back(out.str());
  }

  // Refuses keys outside `allowed`; returns false when `node` is not a map.
  bool expect_map(const YAML::Node& node, const std::string& where, std::set<std::string> allowed) {
    if (!node.IsMap()) {
      error(node.Mark(), where + ": expected a mapping");
      return false;
    }
    for (const auto& entry : node) {
      auto key = entry.first.as<std::string>();
      if (!allowed.count(key)) {
        error(entry.first.Mark(),
              "unknown key \"" + (where.empty() ? key : where + "." + key) + "\"");
      }
    }
    return true;
  }

  std::optional<std::string> scalar(const YAML::Node& node, const std::string& where) {
    if (!node.IsScalar()) {
      error(node.Mark(), where + ": expected a scalar");
      return std::nullopt;
    }
    return node.Scalar();
  }

  template <typename Unsigned>
  void number(const YAML::Node& node, const std::string& where, Unsigned& out, uint64_t min,
              uint64_t max) {
    auto text = scalar(node, where);
    if (!text) return;
    uint64_t value = 0;
    // Decimal, or hexadecimal with 0x (marks are usually written so).
    bool hex = text->size() > 2 && (*text)[0] == '0' && ((*text)[1] == 'x' || (*text)[1] == 'X');
    const char* begin = text->data() + (hex ? 2 : 0);
    auto [end, ec] = std::from_chars(begin, text->data() + text->size(), value, hex ? 16 : 10);
    if (ec != std::errc() || end != text->data() + text->size() || value < min || value > max) {
      error(node.Mark(),
            where + ": expected an integer " + std::to_string(min) + "-" + std::to_string(max));
      return;
    }
    out = static_cast<Unsigned>(value);
  }

  void strings(const YAML::Node& node, const std::string& where, std::vector<std::string>& out,
               std::vector<YAML::Mark>* marks = nullptr) {
    if (!node.IsSequence()) {
      error(node.Mark(), where + ": expected a list");
      return;
    }
    out.clear();
    for (size_t i = 0; i < node.size(); ++i) {
      if (auto text = scalar(node[i], where + "[" + std::to_string(i) + "]")) {
        out.push_back(*text);
        if (marks) marks->push_back(node[i].Mark());
      }
    }
  }

  template <typename Enum>
  void choice(const YAML::Node& node, const std::string& where, Enum& out,
              std::initializer_list<std::pair<const char*, Enum>> options) {
    auto text = scalar(node, where);
    if (!text) return;
    std::string names;
    for (const auto& [name, value] : options) {
      if (*text == name) {
        out = value;
        return;
      }
      names += names.empty() ? name : std::string(" | ") + name;
    }
    error(node.Mark(), where + ": \"" + *text + "\" is not one of " + names);
  }

  void ports(const YAML::Node& node, const std::string& where, std::vector<uint16_t>& out) {
    if (!node.IsSequence()) {
      error(node.Mark(), where + ": expected a list of ports");
      return;
    }
    out.clear();
    for (size_t i = 0; i < node.size(); ++i) {
      uint16_t port = 0;
      number(node[i], where + "[" + std::to_string(i) + "]", port, 1, 65535);
      if (port) out.push_back(port);
    }
  }

  // A mapping of strings to strings, in file order.
  void pairs(const YAML::Node& node, const std::string& where,
             std::vector<std::pair<std::string, std::string>>& out) {
    if (!node.IsMap()) {
      error(node.Mark(), where + ": expected a mapping of strings");
      return;
    }
    for (const auto& entry : node) {
      auto key = scalar(entry.first, where);
      if (!key) continue;
      if (auto value = scalar(entry.second, where + "." + *key)) out.emplace_back(*key, *value);
    }
  }

  // Loads one sandbox; marks of its fields let compile errors point at the right line.
  void sandbox(const YAML::Node& node, const std::string& where, Config& config) {
    if (!expect_map(node, where,
                    {"id", "sources", "egress", "mode", "transforms", "bypass", "secrets"}))
      return;
    SandboxSpec spec;
    std::map<std::string, YAML::Mark> marks{{"id", node.Mark()}};
    if (node["id"]) {
      if (auto id = scalar(node["id"], where + ".id")) spec.id = *id;
      marks["id"] = node["id"].Mark();
    } else {
      error(node.Mark(), where + ": missing \"id\"");
    }
    if (node["sources"]) {
      std::vector<YAML::Mark> source_marks;
      strings(node["sources"], where + ".sources", spec.sources, &source_marks);
      for (size_t i = 0; i < source_marks.size(); ++i)
        marks["sources[" + std::to_string(i) + "]"] = source_marks[i];
    }
    if (node["mode"]) {
      choice(node["mode"], where + ".mode", spec.mode,
             {{"enforce", Mode::enforce}, {"audit", Mode::audit}});
    }
    if (const YAML::Node egress = node["egress"]) {
      if (expect_map(egress, where + ".egress", {"default", "allow", "deny", "gateway"})) {
        if (egress["gateway"]) {
          if (auto gateway = scalar(egress["gateway"], where + ".egress.gateway"))
            spec.gateway = *gateway;
          marks["egress.gateway"] = egress["gateway"].Mark();
        }
        if (egress["default"]) {
          choice(egress["default"], where + ".egress.default", spec.default_verdict,
                 {{"allow", Verdict::allow}, {"deny", Verdict::deny}});
        }
        for (const char* list : {"allow", "deny"}) {
          if (!egress[list]) continue;
          std::vector<YAML::Mark> rule_marks;
          strings(egress[list], where + ".egress." + list,
                  std::string(list) == "allow" ? spec.allow : spec.deny, &rule_marks);
          for (size_t i = 0; i < rule_marks.size(); ++i) {
            marks["egress." + std::string(list) + "[" + std::to_string(i) + "]"] = rule_marks[i];
          }
          // Every bad rule is reported now, with its position: --check-config lists them all,
          // not only the first the policy compiler would stop at.
          const auto& rules = std::string(list) == "allow" ? spec.allow : spec.deny;
          for (size_t i = 0; i < rules.size() && i < rule_marks.size(); ++i) {
            auto parsed = parse_rule(rules[i]);
            if (auto* problem = std::get_if<std::string>(&parsed))
              error(rule_marks[i], where + ".egress." + list + "[" + std::to_string(i) + "]: \"" +
                                       rules[i] + "\": " + *problem);
          }
        }
      }
    }
    if (const YAML::Node transforms = node["transforms"]) {
      if (!transforms.IsSequence()) {
        error(transforms.Mark(), where + ".transforms: expected a list");
      } else {
        for (size_t i = 0; i < transforms.size(); ++i) {
          std::string at = "transforms[" + std::to_string(i) + "]";
          marks[at] = transforms[i].Mark();
          if (!expect_map(transforms[i], where + "." + at, {"hosts", "headers", "body"})) continue;
          Transform transform;
          if (transforms[i]["hosts"]) {
            std::vector<YAML::Mark> host_marks;
            strings(transforms[i]["hosts"], where + "." + at + ".hosts", transform.hosts,
                    &host_marks);
            for (size_t h = 0; h < host_marks.size(); ++h)
              marks[at + ".hosts[" + std::to_string(h) + "]"] = host_marks[h];
          }
          if (transforms[i]["headers"])
            pairs(transforms[i]["headers"], where + "." + at + ".headers", transform.headers);
          if (transforms[i]["body"])
            pairs(transforms[i]["body"], where + "." + at + ".body", transform.body);
          spec.transforms.push_back(std::move(transform));
        }
      }
    }
    if (node["bypass"]) strings(node["bypass"], where + ".bypass", spec.bypass);
    if (node["secrets"]) {
      std::vector<std::pair<std::string, std::string>> secrets;
      pairs(node["secrets"], where + ".secrets", secrets);
      for (auto& [name, value] : secrets) spec.secrets[name] = std::move(value);
      marks["secrets"] = node["secrets"].Mark();
    }
    sandbox_marks.push_back(std::move(marks));
    config.sandboxes.push_back(std::move(spec));
  }

  std::vector<std::map<std::string, YAML::Mark>> sandbox_marks;

 private:
  std::string name_;
};

std::optional<std::string> validate_listen(const std::string& text) {
  if (!parse_host_port(text)) return "\"" + text + "\" is not ADDRESS:PORT (IPv6 as [ADDR]:PORT)";
  return std::nullopt;
}

}  // namespace

std::optional<HostPort> parse_host_port(std::string_view text) {
  std::string_view host, port_text;
  if (text.starts_with("[")) {
    auto close = text.find("]:");
    if (close == std::string_view::npos) return std::nullopt;
    host = text.substr(1, close - 1);
    port_text = text.substr(close + 2);
  } else {
    auto colon = text.rfind(':');
    if (colon == std::string_view::npos) return std::nullopt;
    host = text.substr(0, colon);
    port_text = text.substr(colon + 1);
  }
  auto address = IpAddress::parse(host);
  if (!address || (text.starts_with("[") != (address->family == Family::v6))) return std::nullopt;
  unsigned port = 0;
  auto [end, ec] = std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
  if (ec != std::errc() || end != port_text.data() + port_text.size() || port > 65535 ||
      port_text.empty())
    return std::nullopt;
  return HostPort{std::string(host), static_cast<uint16_t>(port)};
}

namespace {

std::variant<Config, std::vector<std::string>> load_config_checked(const std::string& text,
                                                                   const std::string& name);

}  // namespace

std::variant<Config, std::vector<std::string>> load_config_text(const std::string& text,
                                                                const std::string& name) {
  try {
    return load_config_checked(text, name);
  } catch (const YAML::Exception& e) {  // e.g. a mapping used as a key
    return std::vector<std::string>{name + ":" + std::to_string(e.mark.line + 1) + ":" +
                                    std::to_string(e.mark.column + 1) + ": " + e.msg};
  }
}

namespace {

std::variant<Config, std::vector<std::string>> load_config_checked(const std::string& text,
                                                                   const std::string& name) {
  Loader loader(name);
  Config config;
  config.path = name;
  YAML::Node root;
  try {
    root = YAML::Load(text);
  } catch (const YAML::Exception& e) {
    loader.error(e.mark, e.msg);
    return loader.errors;
  }
  if (root.IsNull()) return config;  // an empty file is every default
  if (!loader.expect_map(root, "",
                         {"listen", "workers", "state_dir", "inspect", "timeouts", "limits", "dns",
                          "dns_filter", "gateways", "guard", "unknown_source", "on_update",
                          "access_log", "sandboxes", "intercept", "drain_s", "fast_path"})) {
    return loader.errors;
  }
  if (const YAML::Node listen = root["listen"];
      listen && loader.expect_map(listen, "listen", {"tproxy", "control", "metrics"})) {
    if (listen["tproxy"]) {
      loader.strings(listen["tproxy"], "listen.tproxy", config.listen.tproxy);
      for (size_t i = 0; i < config.listen.tproxy.size(); ++i) {
        if (auto error = validate_listen(config.listen.tproxy[i])) {
          loader.error(listen["tproxy"][i].Mark(),
                       "listen.tproxy[" + std::to_string(i) + "]: " + *error);
        }
      }
    }
    if (listen["control"]) {
      if (auto path = loader.scalar(listen["control"], "listen.control"))
        config.listen.control = *path;
    }
    if (listen["metrics"]) {
      if (listen["metrics"].IsNull()) {
        config.listen.metrics.reset();
      } else if (auto address = loader.scalar(listen["metrics"], "listen.metrics")) {
        if (auto error = validate_listen(*address))
          loader.error(listen["metrics"].Mark(), "listen.metrics: " + *error);
        config.listen.metrics = *address;
      }
    }
  }
  if (root["workers"]) loader.number(root["workers"], "workers", config.workers, 0, 1024);
  if (root["state_dir"]) {
    if (auto dir = loader.scalar(root["state_dir"], "state_dir")) config.state_dir = *dir;
  }
  if (const YAML::Node inspect = root["inspect"];
      inspect && loader.expect_map(inspect, "inspect", {"tls", "http"})) {
    if (inspect["tls"]) loader.ports(inspect["tls"], "inspect.tls", config.inspect.tls);
    if (inspect["http"]) loader.ports(inspect["http"], "inspect.http", config.inspect.http);
    for (uint16_t port : config.inspect.tls) {
      for (uint16_t other : config.inspect.http) {
        if (port == other)
          loader.error(inspect.Mark(),
                       "inspect: port " + std::to_string(port) + " is both tls and http");
      }
    }
  }
  if (const YAML::Node timeouts = root["timeouts"];
      timeouts && loader.expect_map(timeouts, "timeouts", {"peek_ms", "connect_ms"})) {
    if (timeouts["peek_ms"])
      loader.number(timeouts["peek_ms"], "timeouts.peek_ms", config.timeouts.peek_ms, 1, 600000);
    if (timeouts["connect_ms"])
      loader.number(timeouts["connect_ms"], "timeouts.connect_ms", config.timeouts.connect_ms, 1,
                    600000);
  }
  if (const YAML::Node limits = root["limits"];
      limits && loader.expect_map(limits, "limits",
                                  {"max_peek_bytes", "max_connections_per_sandbox",
                                   "max_connections", "max_peeking_per_sandbox"})) {
    if (limits["max_peek_bytes"])
      loader.number(limits["max_peek_bytes"], "limits.max_peek_bytes", config.limits.max_peek_bytes,
                    512, 1 << 20);
    if (limits["max_connections_per_sandbox"]) {
      loader.number(limits["max_connections_per_sandbox"], "limits.max_connections_per_sandbox",
                    config.limits.max_connections_per_sandbox, 1, 1000000);
    }
    if (limits["max_connections"]) {
      loader.number(limits["max_connections"], "limits.max_connections",
                    config.limits.max_connections, 0, 10000000);
    }
    if (limits["max_peeking_per_sandbox"]) {
      loader.number(limits["max_peeking_per_sandbox"], "limits.max_peeking_per_sandbox",
                    config.limits.max_peeking_per_sandbox, 1, 1000000);
    }
  }
  if (const YAML::Node dns = root["dns"];
      dns && loader.expect_map(dns, "dns",
                               {"servers", "verify", "timeout_ms", "min_ttl_s", "max_ttl_s",
                                "negative_ttl_s", "cache_size"})) {
    if (dns["timeout_ms"])
      loader.number(dns["timeout_ms"], "dns.timeout_ms", config.dns.timeout_ms, 50, 60000);
    if (dns["min_ttl_s"])
      loader.number(dns["min_ttl_s"], "dns.min_ttl_s", config.dns.min_ttl_s, 0, 86400);
    if (dns["max_ttl_s"])
      loader.number(dns["max_ttl_s"], "dns.max_ttl_s", config.dns.max_ttl_s, 1, 86400);
    if (dns["negative_ttl_s"]) {
      loader.number(dns["negative_ttl_s"], "dns.negative_ttl_s", config.dns.negative_ttl_s, 0,
                    86400);
    }
    if (dns["cache_size"])
      loader.number(dns["cache_size"], "dns.cache_size", config.dns.cache_size, 1, 10000000);
    if (config.dns.min_ttl_s > config.dns.max_ttl_s)
      loader.error(dns.Mark(), "dns: min_ttl_s is above max_ttl_s");
    if (dns["servers"]) {
      loader.strings(dns["servers"], "dns.servers", config.dns.servers);
      for (size_t i = 0; i < config.dns.servers.size(); ++i) {
        if (!IpAddress::parse(config.dns.servers[i]) && !parse_host_port(config.dns.servers[i])) {
          loader.error(dns["servers"][i].Mark(), "dns.servers[" + std::to_string(i) + "]: \"" +
                                                     config.dns.servers[i] +
                                                     "\" is not an IP address");
        }
      }
    }
    if (dns["verify"]) {
      loader.choice(
          dns["verify"], "dns.verify", config.dns.verify,
          {{"dial", DnsVerify::dial}, {"strict", DnsVerify::strict}, {"off", DnsVerify::off}});
    }
  }
  if (const YAML::Node filter = root["dns_filter"];
      filter &&
      loader.expect_map(filter, "dns_filter", {"listen", "answer_denied", "strip_ech", "budget"})) {
    if (filter["listen"]) {
      loader.strings(filter["listen"], "dns_filter.listen", config.dns_filter.listen);
      for (size_t i = 0; i < config.dns_filter.listen.size(); ++i) {
        if (auto error = validate_listen(config.dns_filter.listen[i])) {
          loader.error(filter["listen"][i].Mark(),
                       "dns_filter.listen[" + std::to_string(i) + "]: " + *error);
        }
      }
    }
    if (filter["answer_denied"]) {
      loader.choice(filter["answer_denied"], "dns_filter.answer_denied",
                    config.dns_filter.answer_nxdomain, {{"refused", false}, {"nxdomain", true}});
    }
    if (filter["strip_ech"]) {
      loader.choice(filter["strip_ech"], "dns_filter.strip_ech", config.dns_filter.strip_ech,
                    {{"true", true}, {"false", false}});
    }
    if (const YAML::Node budget = filter["budget"];
        budget && loader.expect_map(budget, "dns_filter.budget",
                                    {"queries_per_second", "burst", "new_names_per_minute"})) {
      if (budget["queries_per_second"]) {
        loader.number(budget["queries_per_second"], "dns_filter.budget.queries_per_second",
                      config.dns_filter.queries_per_second, 1, 1000000);
      }
      if (budget["burst"])
        loader.number(budget["burst"], "dns_filter.budget.burst", config.dns_filter.burst, 1,
                      10000000);
      if (budget["new_names_per_minute"]) {
        loader.number(budget["new_names_per_minute"], "dns_filter.budget.new_names_per_minute",
                      config.dns_filter.new_names_per_minute, 1, 1000000);
      }
    }
  }
  if (const YAML::Node intercept = root["intercept"];
      intercept && loader.expect_map(intercept, "intercept", {"ca_dir", "upstream_ca"})) {
    if (intercept["ca_dir"]) {
      if (auto dir = loader.scalar(intercept["ca_dir"], "intercept.ca_dir")) {
        if (dir->empty() || (*dir)[0] != '/') {
          loader.error(intercept["ca_dir"].Mark(), "intercept.ca_dir: expected an absolute path");
        } else {
          config.intercept.ca_dir = *dir;
        }
      }
    }
    if (intercept["upstream_ca"]) {
      if (auto ca = loader.scalar(intercept["upstream_ca"], "intercept.upstream_ca")) {
        if (*ca != "system" && (ca->empty() || (*ca)[0] != '/')) {
          loader.error(intercept["upstream_ca"].Mark(),
                       "intercept.upstream_ca: expected \"system\" or the absolute path of a "
                       "PEM file of trusted CA certificates");
        } else {
          config.intercept.upstream_ca = *ca;
        }
      }
    }
  }
  if (const YAML::Node gateways = root["gateways"]) {
    if (!gateways.IsMap()) {
      loader.error(gateways.Mark(), "gateways: expected a mapping of names to gateways");
    } else {
      for (const auto& entry : gateways) {
        auto name = loader.scalar(entry.first, "gateways");
        if (!name) continue;
        std::string where = "gateways." + *name;
        if (auto problem = gateway_name_error(*name)) {
          loader.error(entry.first.Mark(), where + ": " + *problem);
          continue;
        }
        GatewayConfig gateway;
        const YAML::Node& node = entry.second;
        if (!loader.expect_map(node, where, {"source", "mark"})) continue;
        if (node["source"]) {
          std::vector<std::string> sources;
          loader.strings(node["source"], where + ".source", sources);
          for (size_t i = 0; i < sources.size(); ++i) {
            auto address = IpAddress::parse(sources[i]);
            std::string field = where + ".source[" + std::to_string(i) + "]";
            if (!address) {
              loader.error(node["source"][i].Mark(),
                           field + ": \"" + sources[i] + "\" is not an IP address");
              continue;
            }
            IpAddress plain = address->unmapped();
            auto& slot = plain.family == Family::v4 ? gateway.v4 : gateway.v6;
            if (slot) {
              loader.error(node["source"][i].Mark(),
                           field + ": a second " + (plain.family == Family::v4 ? "IPv4" : "IPv6") +
                               " address (one of each family)");
              continue;
            }
            slot = plain;
          }
        }
        if (node["mark"]) {
          uint32_t mark = 0;
          loader.number(node["mark"], where + ".mark", mark, 1, UINT32_MAX);
          if (mark) gateway.mark = mark;
        }
        if (!node["source"] && !node["mark"])
          loader.error(node.Mark(), where + ": needs a source address or a mark");
        config.gateways[*name] = gateway;
      }
    }
  }
  if (const YAML::Node guard = root["guard"];
      guard && loader.expect_map(guard, "guard", {"deny", "allow"})) {
    if (guard["deny"]) loader.strings(guard["deny"], "guard.deny", config.guard_deny);
    if (guard["allow"]) loader.strings(guard["allow"], "guard.allow", config.guard_allow);
    auto compiled = Guard::compile(config.guard_deny, config.guard_allow);
    if (auto* error = std::get_if<FieldError>(&compiled)) {
      const std::string& field = error->field;  // "guard.deny[2]" or "guard.allow[0]"
      size_t index = std::stoul(field.substr(field.find('[') + 1));
      const char* list = field.starts_with("guard.allow") ? "allow" : "deny";
      loader.error(guard[list][index].Mark(), field + ": " + error->message);
    }
  }
  if (root["unknown_source"]) {
    loader.choice(root["unknown_source"], "unknown_source", config.unknown_source,
                  {{"deny", Verdict::deny}, {"allow", Verdict::allow}});
  }
  if (root["on_update"]) {
    loader.choice(root["on_update"], "on_update", config.on_update,
                  {{"revoke", OnUpdate::revoke}, {"keep", OnUpdate::keep}});
  }
  if (root["fast_path"]) {
    loader.choice(root["fast_path"], "fast_path", config.fast_path,
                  {{"proxy", FastPath::proxy}, {"kernel", FastPath::kernel}});
  }
  if (root["access_log"]) {
    if (auto log = loader.scalar(root["access_log"], "access_log")) config.access_log = *log;
  }
  if (root["drain_s"]) {
    loader.number(root["drain_s"], "drain_s", config.drain_s, 0, 86400);
  }
  if (const YAML::Node sandboxes = root["sandboxes"]) {
    if (!sandboxes.IsSequence()) {
      loader.error(sandboxes.Mark(), "sandboxes: expected a list");
    } else {
      for (size_t i = 0; i < sandboxes.size(); ++i) {
        loader.sandbox(sandboxes[i], "sandboxes[" + std::to_string(i) + "]", config);
      }
    }
  }
  if (!loader.errors.empty()) return loader.errors;
  // Compile every sandbox together, as the store would: rules, sources, overlaps, duplicates,
  // gateways.
  PolicyStore store;
  store.set_gateways(gateway_names(config));
  if (auto error = store.replace_all(config.sandboxes)) {
    const std::string& field = error->error.field;  // "sandboxes[3].egress.allow[2]"
    size_t index = std::stoul(field.substr(field.find('[') + 1));
    std::string inner = field.substr(field.find("].") + 2);
    const auto& marks = loader.sandbox_marks[index];
    // The field's own position, else the nearest enclosing one ("transforms[0].headers.X"
    // points at transforms[0]), else the sandbox's id.
    while (!marks.count(inner) && inner.find_last_of(".[") != std::string::npos)
      inner.resize(inner.find_last_of(".["));
    auto mark = marks.count(inner) ? marks.at(inner) : marks.at("id");
    loader.error(mark, field + ": " + error->error.message);
    return loader.errors;
  }
  return config;
}

}  // namespace

std::optional<std::string> gateway_name_error(std::string_view name) {
  if (name.empty() || name.size() > 63) return "a gateway name has 1 to 63 characters";
  for (char c : name) {
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
          c == '_' || c == '.'))
      return "a gateway name has letters, digits, '-', '_' and '.' only";
  }
  return std::nullopt;
}

std::set<std::string> gateway_names(const Config& config) {
  std::set<std::string> names;
  for (const auto& [name, gateway] : config.gateways) names.insert(name);
  return names;
}

std::variant<Config, std::vector<std::string>> load_config(const std::string& path) {
  std::ifstream in(path);
  if (!in) return std::vector<std::string>{path + ":1:1: cannot open file"};
  std::stringstream text;
  text << in.rdbuf();
  return load_config_text(text.str(), path);
}

}  // namespace egressd
