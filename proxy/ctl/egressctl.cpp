// egressctl: the command-line client of egressd's control API (unix socket, HTTP/1.1 + JSON).
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>
#include <yaml-cpp/yaml.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include <vector>
#include "build_info.hpp"

namespace {

using nlohmann::json;

constexpr const char* kUsage = R"(usage: egressctl [--socket PATH] [--json] COMMAND
  health                          daemon status
  list                            sandboxes
  get ID                          one sandbox's policy
  set ID [--file F] [--source S]... [--allow RULE]... [--deny RULE]...
         [--default allow|deny] [--mode enforce|audit] [--gateway NAME]
         [--if-match GENERATION]
                                  replace a sandbox's policy (F: YAML or JSON with
                                  sources/egress/mode; flags add to or override it)
  delete ID                       remove a sandbox (its connections are closed)
  check ID [--host NAME] [--ip ADDR] --port N
                                  explain what egressd would decide; exit 0 allow,
                                  1 deny, 3 when egressd could not answer
  check --batch                   one check per JSON line on stdin ({"sandbox","host",
                                  "port"} or a DNS check), one answer line each; exit 0
                                  all allowed, 1 some denied, 3 some failed
  check ID --host NAME --qtype A [--ip ADDR]
                                  what the DNS filter would answer
  secrets ID                      set secrets from a JSON object on stdin ({"name":"value"};
                                  null removes one); write-only: nothing is printed back
  ca                              the interception CA certificate (PEM), for sandbox images
  conns [ID]                      live connections (without ID: host-wide)
  denials [ID]                    recent refusals (without ID: host-wide, unknown sources too)
Options: --socket PATH (default /run/egressd/control.sock or $EGRESSD_SOCKET), --json,
  --timeout SECONDS (default 5: the whole request, connect included), --version.
Other commands exit 0 on success, 1 on failure (the server's message on stderr), 2 on usage.
)";

double g_timeout_s = 5;

// Sets the socket's send/receive timeout to what is left of the request's time.
bool arm(int fd, std::chrono::steady_clock::time_point deadline) {
  auto left = std::chrono::duration_cast<std::chrono::microseconds>(
      deadline - std::chrono::steady_clock::now());
  if (left.count() <= 0) return false;
  timeval tv{static_cast<time_t>(left.count() / 1000000),
             static_cast<suseconds_t>(left.count() % 1000000)};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
  return true;
}

struct Response {
  int status = 0;
  json body;
  std::string raw;  // the body as sent (GET /v1/ca.pem is PEM, not JSON)
};

std::optional<Response> request(const std::string& socket_path, const std::string& method,
                                const std::string& target, const std::string& body,
                                const std::string& if_match, std::string& error) {
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  if (socket_path.size() >= sizeof(address.sun_path)) {
    error = "socket path too long";
    return std::nullopt;
  }
  std::strcpy(address.sun_path, socket_path.c_str());
  auto deadline = std::chrono::steady_clock::now() +
                  std::chrono::microseconds(static_cast<int64_t>(g_timeout_s * 1e6));
  auto timed_out = [&] {
    char text[160];
    std::snprintf(text, sizeof(text), "no answer from %s within %g s (--timeout)",
                  socket_path.c_str(), g_timeout_s);
    error = text;
    ::close(fd);
    return std::nullopt;
  };
  arm(fd, deadline);  // a unix connect to a full backlog waits up to SO_SNDTIMEO
  if (::connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0) {
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINPROGRESS) return timed_out();
    error = "cannot connect to " + socket_path + ": " + std::strerror(errno);
    ::close(fd);
    return std::nullopt;
  }
  std::string text = method + " " + target + " HTTP/1.1\r\nHost: egressd\r\nConnection: close\r\n";
  if (!if_match.empty()) text += "If-Match: " + if_match + "\r\n";
  if (!body.empty())
    text +=
        "Content-Type: application/json\r\nContent-Length: " + std::to_string(body.size()) + "\r\n";
  text += "\r\n" + body;
  for (size_t sent = 0; sent < text.size();) {
    if (!arm(fd, deadline)) return timed_out();
    ssize_t n = ::write(fd, text.data() + sent, text.size() - sent);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return timed_out();
    if (n <= 0) {
      error = std::string("write: ") + std::strerror(errno);
      ::close(fd);
      return std::nullopt;
    }
    sent += static_cast<size_t>(n);
  }
  std::string reply;
  char buffer[65536];
  for (;;) {
    if (!arm(fd, deadline)) return timed_out();
    ssize_t n = ::read(fd, buffer, sizeof(buffer));
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return timed_out();
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    reply.append(buffer, static_cast<size_t>(n));
  }
  ::close(fd);
  auto head_end = reply.find("\r\n\r\n");
  if (reply.rfind("HTTP/1.1 ", 0) != 0 || head_end == std::string::npos) {
    error = "malformed answer from egressd";
    return std::nullopt;
  }
  Response response;
  response.status = std::stoi(reply.substr(9, 3));
  std::string payload = reply.substr(head_end + 4);
  response.raw = payload;
  if (!payload.empty()) response.body = json::parse(payload, nullptr, false);
  return response;
}

std::string text_of(const json& value) {
  if (value.is_null()) return "-";
  if (value.is_string()) return value.get<std::string>();
  return value.dump();
}

void print_table(const std::vector<std::string>& headers,
                 const std::vector<std::vector<std::string>>& rows) {
  std::vector<size_t> widths(headers.size());
  for (size_t c = 0; c < headers.size(); ++c) widths[c] = headers[c].size();
  for (const auto& row : rows)
    for (size_t c = 0; c < row.size(); ++c) widths[c] = std::max(widths[c], row[c].size());
  auto line = [&](const std::vector<std::string>& cells) {
    for (size_t c = 0; c < cells.size(); ++c) {
      std::cout << cells[c];
      if (c + 1 < cells.size()) std::cout << std::string(widths[c] - cells[c].size() + 2, ' ');
    }
    std::cout << "\n";
  };
  line(headers);
  for (const auto& row : rows) line(row);
}

std::string join(const json& list) {
  std::string out;
  for (const auto& item : list) out += (out.empty() ? "" : ", ") + text_of(item);
  return out.empty() ? "-" : out;
}

void print_sandbox(const json& s) {
  std::cout << "id:         " << text_of(s["id"]) << "\n"
            << "generation: " << text_of(s["generation"]) << "\n"
            << "mode:       " << text_of(s["mode"]) << "\n"
            << "sources:    " << join(s["sources"]) << "\n"
            << "default:    " << text_of(s["egress"]["default"]) << "\n"
            << "allow:      " << join(s["egress"]["allow"]) << "\n"
            << "deny:       " << join(s["egress"]["deny"]) << "\n"
            << "gateway:    " << text_of(s["egress"].value("gateway", json())) << "\n";
  if (s.contains("transforms")) {
    for (const auto& t : s["transforms"]) {
      std::string headers, fields;
      const json header_map = t.value("headers", json::object());  // named: items() refers to it
      const json body_map = t.value("body", json::object());
      for (const auto& [name, value] : header_map.items())
        headers += (headers.empty() ? "" : ", ") + name;
      for (const auto& [name, value] : body_map.items())
        fields += (fields.empty() ? "" : ", ") + name;
      std::cout << "transform:  " << join(t["hosts"]) << " sets "
                << (headers.empty() ? "-" : headers) << (fields.empty() ? "" : "; body " + fields)
                << "\n";
    }
  }
  if (s.contains("bypass")) std::cout << "bypass:     " << join(s["bypass"]) << "\n";
  if (s.contains("secret_names")) std::cout << "secrets:    " << join(s["secret_names"]) << "\n";
}

json yaml_to_json(const YAML::Node& node) {
  if (node.IsMap()) {
    json out = json::object();
    for (const auto& entry : node) out[entry.first.as<std::string>()] = yaml_to_json(entry.second);
    return out;
  }
  if (node.IsSequence()) {
    json out = json::array();
    for (const auto& item : node) out.push_back(yaml_to_json(item));
    return out;
  }
  if (node.IsNull()) return nullptr;
  return node.Scalar();
}

// check --batch: one POST /v1/check per JSON line on stdin, one compact answer line each (the
// server's answer, or {"error":...} with the line number), in order.
int check_batch(const std::string& socket_path) {
  bool denied = false, failed = false;
  size_t number = 0;
  for (std::string line; std::getline(std::cin, line);) {
    ++number;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    auto body = json::parse(line, nullptr, false);
    if (body.is_discarded() || !body.is_object()) {
      std::cout << json{{"error", "not a JSON object"}, {"line", number}}.dump() << "\n";
      failed = true;
      continue;
    }
    std::string error;
    auto response = request(socket_path, "POST", "/v1/check", body.dump(), "", error);
    if (!response) {
      std::cout << json{{"error", error}, {"line", number}}.dump() << "\n";
      failed = true;
      continue;
    }
    json answer = response->body.is_object() ? response->body : json{{"error", response->raw}};
    if (response->status >= 400) {
      answer["line"] = number;
      failed = true;
    } else if (answer.value("verdict", "") == "deny") {
      denied = true;
    }
    std::cout << answer.dump() << "\n";
  }
  std::cout.flush();
  return failed ? 3 : denied ? 1 : 0;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  const char* env_socket = std::getenv("EGRESSD_SOCKET");
  std::string socket_path = env_socket ? env_socket : "/run/egressd/control.sock";
  bool as_json = false;
  bool batch = false;
  std::vector<std::string> positional;
  std::vector<std::string> sources, allow, deny;
  std::optional<std::string> file, default_verdict, mode, host, ip, port, qtype, gateway, if_match;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= args.size()) {
        std::cerr << "egressctl: " << a << " needs a value\n";
        std::exit(2);
      }
      return args[++i];
    };
    if (a == "--help" || a == "-h") {
      std::cout << kUsage;
      return 0;
    } else if (a == "--version") {
      std::cout << "egressctl " << egressd::build_info::kVersion << "\n";
      return 0;
    } else if (a == "--timeout") {
      std::string text = value();
      char* end = nullptr;
      g_timeout_s = std::strtod(text.c_str(), &end);
      if (end == text.c_str() || *end != '\0' || !(g_timeout_s > 0) || g_timeout_s > 3600) {
        std::cerr << "egressctl: --timeout takes seconds, more than 0 and at most 3600\n";
        return 2;
      }
    } else if (a == "--batch") {
      batch = true;
    } else if (a == "--socket") {
      socket_path = value();
    } else if (a == "--json") {
      as_json = true;
    } else if (a == "--source") {
      sources.push_back(value());
    } else if (a == "--allow") {
      allow.push_back(value());
    } else if (a == "--deny") {
      deny.push_back(value());
    } else if (a == "--file") {
      file = value();
    } else if (a == "--default") {
      default_verdict = value();
    } else if (a == "--mode") {
      mode = value();
    } else if (a == "--host") {
      host = value();
    } else if (a == "--ip") {
      ip = value();
    } else if (a == "--port") {
      port = value();
    } else if (a == "--gateway") {
      gateway = value();
    } else if (a == "--qtype") {
      qtype = value();
    } else if (a == "--if-match") {
      if_match = value();
    } else if (a.rfind("--", 0) == 0) {
      std::cerr << "egressctl: unknown option " << a << "\n" << kUsage;
      return 2;
    } else {
      positional.push_back(a);
    }
  }
  if (positional.empty()) {
    std::cerr << kUsage;
    return 2;
  }
  const std::string& command = positional[0];
  auto need_id = [&]() -> std::string {
    if (positional.size() != 2) {
      std::cerr << "egressctl: " << command << " needs exactly one sandbox id\n";
      std::exit(2);
    }
    return positional[1];
  };
  std::string method = "GET", target, body;
  if (command == "health") {
    target = "/v1/health";
  } else if (command == "list") {
    target = "/v1/sandboxes";
  } else if (command == "get") {
    target = "/v1/sandboxes/" + need_id();
  } else if (command == "delete") {
    method = "DELETE";
    target = "/v1/sandboxes/" + need_id();
  } else if (command == "conns" || command == "denials") {
    target = command == "conns" ? "/v1/connections" : "/v1/denials";
    if (positional.size() > 2) {
      std::cerr << "egressctl: " << command << " takes at most one sandbox id\n";
      return 2;
    }
    if (positional.size() == 2) target += "?sandbox=" + positional[1];
  } else if (command == "secrets") {
    // Values come on stdin, never as arguments: command lines are visible in ps and history.
    method = "PUT";
    target = "/v1/sandboxes/" + need_id() + "/secrets";
    std::string text((std::istreambuf_iterator<char>(std::cin)), std::istreambuf_iterator<char>());
    if (!json::accept(text)) {
      std::cerr
          << "egressctl: secrets reads a JSON object on stdin, e.g. {\"openai\": \"sk-...\"}\n";
      return 2;
    }
    body = text;
  } else if (command == "ca") {
    target = "/v1/ca.pem";
  } else if (command == "check" && batch) {
    if (positional.size() != 1) {
      std::cerr << "egressctl: check --batch takes no sandbox id (each line names one)\n";
      return 2;
    }
    return check_batch(socket_path);
  } else if (command == "check") {
    method = "POST";
    target = "/v1/check";
    json q = {{"sandbox", need_id()}};
    if (host) q["host"] = *host;
    if (ip) q["ip"] = *ip;
    if (qtype) {
      q["qtype"] = *qtype;  // a DNS check: no port
    } else if (!port) {
      std::cerr << "egressctl: check needs --port\n";
      return 2;
    }
    try {
      if (port) q["port"] = std::stoi(*port);
    } catch (const std::exception&) {
      std::cerr << "egressctl: --port must be a number\n";
      return 2;
    }
    body = q.dump();
  } else if (command == "set") {
    method = "PUT";
    target = "/v1/sandboxes/" + need_id();
    json spec = json::object();
    if (file) {
      try {
        spec = yaml_to_json(YAML::LoadFile(*file));
      } catch (const YAML::Exception& e) {
        std::cerr << "egressctl: " << *file << ":" << e.mark.line + 1 << ":" << e.mark.column + 1
                  << ": " << e.msg << "\n";
        return 2;
      }
      if (!spec.is_object()) {
        std::cerr << "egressctl: " << *file << ": expected a mapping with sources/egress/mode\n";
        return 2;
      }
      spec.erase("id");
      spec.erase("generation");
    }
    for (const auto& s : sources) spec["sources"].push_back(s);
    for (const auto& r : allow) spec["egress"]["allow"].push_back(r);
    for (const auto& r : deny) spec["egress"]["deny"].push_back(r);
    if (default_verdict) spec["egress"]["default"] = *default_verdict;
    if (gateway) spec["egress"]["gateway"] = *gateway;
    if (mode) spec["mode"] = *mode;
    body = spec.dump();
  } else {
    std::cerr << "egressctl: unknown command \"" << command << "\"\n" << kUsage;
    return 2;
  }
  std::string error;
  auto response = request(socket_path, method, target, body, if_match.value_or(""), error);
  if (!response) {
    std::cerr << "egressctl: " << error << "\n";
    return 1;
  }
  if (response->status >= 400) {
    const json& b = response->body;
    std::cerr << "egressctl: " << response->status << ": "
              << (b.is_object() && b.contains("error") ? text_of(b["error"]) : b.dump());
    if (b.is_object() && b.contains("field")) std::cerr << " (field " << text_of(b["field"]) << ")";
    std::cerr << "\n";
    return command == "check" ? 3 : 1;
  }
  // check: the exit code is the verdict, so a platform's CI can gate on it.
  int verdict_code = command == "check" && response->body.is_object() &&
                             response->body.value("verdict", "") == "deny"
                         ? 1
                         : 0;
  if (command == "ca") {
    std::cout << response->raw;
    return 0;
  }
  if (as_json) {
    if (!response->body.is_null()) std::cout << response->body.dump(2) << "\n";
    return verdict_code;
  }
  const json& b = response->body;
  if (command == "health") {
    std::cout << "status " << text_of(b["status"]) << ", generation " << text_of(b["generation"])
              << ", " << text_of(b["sandboxes"]) << " sandboxes\n";
  } else if (command == "list") {
    std::vector<std::vector<std::string>> rows;
    for (const auto& s : b["sandboxes"]) {
      rows.push_back({text_of(s["id"]), text_of(s["generation"]), text_of(s["mode"]),
                      join(s["sources"]), text_of(s["egress"]["default"]),
                      std::to_string(s["egress"]["allow"].size()),
                      std::to_string(s["egress"]["deny"].size())});
    }
    print_table({"ID", "GEN", "MODE", "SOURCES", "DEFAULT", "ALLOW", "DENY"}, rows);
  } else if (command == "get" || command == "set") {
    print_sandbox(b);
  } else if (command == "delete") {
    std::cout << "deleted " << positional[1] << "\n";
  } else if (command == "secrets") {
    std::cout << "secrets of " << positional[1] << " updated\n";
  } else if (command == "check") {
    std::cout << text_of(b["verdict"]) << " (" << text_of(b["reason"]) << ", rule "
              << text_of(b["rule"]) << ")";
    if (b.contains("answer")) std::cout << ", answer: " << text_of(b["answer"]);
    if (b.value("intercepted", false)) std::cout << ", intercepted (request transforms)";
    std::cout << "\n";
  } else if (command == "conns") {
    std::vector<std::vector<std::string>> rows;
    for (const auto& c : b["connections"]) {
      rows.push_back({text_of(c["id"]), text_of(c.value("sandbox", b.value("sandbox", json()))),
                      text_of(c["src"]), text_of(c["dst"]) + ":" + text_of(c["port"]),
                      text_of(c["proto"]), text_of(c["name"]), text_of(c["phase"]),
                      text_of(c["age_ms"])});
    }
    print_table({"ID", "SANDBOX", "SOURCE", "DESTINATION", "PROTO", "NAME", "PHASE", "AGE_MS"},
                rows);
  } else if (command == "denials") {
    std::vector<std::vector<std::string>> rows;
    for (const auto& d : b["denials"]) {
      rows.push_back({text_of(d["time"]), text_of(d.value("sandbox", b.value("sandbox", json()))),
                      text_of(d["src"]), text_of(d["dst"]) + ":" + text_of(d["port"]),
                      text_of(d.value("proto", json())), text_of(d["name"]),
                      text_of(d.value("qtype", json())), text_of(d["reason"]), text_of(d["rule"])});
    }
    print_table(
        {"TIME", "SANDBOX", "SOURCE", "DESTINATION", "PROTO", "NAME", "QTYPE", "REASON", "RULE"},
        rows);
  }
  return verdict_code;
}
