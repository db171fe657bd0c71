// egressd: argv -> config -> Server -> signals.
#include <cstdio>
#include <cstring>
#include <iostream>
#include <string>
#include <vector>

#include "app/server.hpp"
#include "app/supervisor.hpp"
#include "build_info.hpp"
#include "config/config.hpp"
#include "control/check.hpp"
#include "core/log.hpp"
#include "kernel/netfilter.hpp"

namespace {

constexpr const char* kUsage = R"(usage: egressd --config FILE            run the proxy
       egressd --check-config FILE      validate FILE; exit 0, or 2 with file:line:col errors
       egressd --config FILE --takeover take the listening sockets of the egressd running
                                        with the same listen.control, then it drains: an
                                        upgrade that refuses no connection
       egressd --config FILE --supervise
                                        run egressd as the child of a small supervisor, so
                                        that a restart is a takeover: SIGUSR2 to the
                                        supervisor (systemd's RestartKillSignal in the shipped
                                        unit) leaves egressd serving until the next
                                        `--supervise` start takes its sockets over
       egressd --config FILE --check JSON
                                        decide offline, print what POST /v1/check answers
       egressd --version | --help
Options: --takeover-if-running     --takeover when an egressd answers, a fresh start if not
         --log-format text|json   egressd's own log lines on stderr ("egressd: ..." or one
                                  JSON object per line); the access log is JSON either way
)";

int print_errors(const std::vector<std::string>& errors) {
  for (const auto& line : errors) std::cerr << line << "\n";
  return 2;
}

int check_offline(const egressd::Config& config, const std::string& json_text) {
  auto body = nlohmann::json::parse(json_text, nullptr, false);
  if (body.is_discarded()) {
    std::cout << egressd::error_body("invalid JSON", "").dump() << "\n";
    return 2;
  }
  egressd::PolicyStore store;
  if (auto error = store.replace_all(config.sandboxes)) return print_errors({error->error.message});
  auto guard =
      std::get<egressd::Guard>(egressd::Guard::compile(config.guard_deny, config.guard_allow));
  auto answer = egressd::check_request(*store.snapshot(), guard, config.unknown_source, body);
  std::cout << answer.body.dump() << "\n";
  return answer.status == 200 ? 0 : 2;
}

}  // namespace

int main(int argc, char** argv) {
  std::string config_path, check_config_path, check_json;
  bool check = false, supervise = false;
  auto takeover = egressd::Takeover::none;
  std::vector<std::string> passed_on;  // to the supervised egressd
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    auto value = [&]() -> const char* { return i + 1 < argc ? argv[++i] : nullptr; };
    if (arg == "--help" || arg == "-h") {
      std::cout << kUsage;
      return 0;
    } else if (arg == "--version") {
      std::cout << "egressd " << egressd::build_info::kVersion << " ("
                << egressd::build_info::kCompiler << ", " << egressd::build_info::kBuildType
                << ")\n";
      return 0;
    } else if (arg == "--nft-run") {  // fast_path: kernel's helper (kernel/netfilter.hpp)
      return egressd::nft_run_stdio();
    } else if (arg == "--takeover") {
      takeover = egressd::Takeover::required;
    } else if (arg == "--takeover-if-running") {
      takeover = egressd::Takeover::if_running;
    } else if (arg == "--supervise") {
      supervise = true;
    } else if (arg == "--log-format") {
      const char* v = value();
      if (v) passed_on.insert(passed_on.end(), {arg, v});
      if (!v || (std::strcmp(v, "text") != 0 && std::strcmp(v, "json") != 0)) {
        std::cerr << "egressd: --log-format takes text or json\n" << kUsage;
        return 2;
      }
      egressd::set_log_format(std::strcmp(v, "json") == 0 ? egressd::LogFormat::json
                                                          : egressd::LogFormat::text);
    } else if (arg == "--config" || arg == "--check-config" || arg == "--check") {
      const char* v = value();
      if (!v) {
        std::cerr << "egressd: " << arg << " needs a value\n" << kUsage;
        return 2;
      }
      if (arg == "--config") config_path = v, passed_on.insert(passed_on.end(), {arg, v});
      if (arg == "--check-config") check_config_path = v;
      if (arg == "--check") check = true, check_json = v;
    } else {
      std::cerr << "egressd: unknown argument \"" << arg << "\"\n" << kUsage;
      return 2;
    }
  }
  if (!check_config_path.empty()) {
    auto loaded = egressd::load_config(check_config_path);
    if (auto* errors = std::get_if<std::vector<std::string>>(&loaded)) return print_errors(*errors);
    std::cout << check_config_path << ": ok\n";
    return 0;
  }
  if (config_path.empty()) {
    std::cerr << kUsage;
    return 2;
  }
  auto loaded = egressd::load_config(config_path);
  if (auto* errors = std::get_if<std::vector<std::string>>(&loaded)) return print_errors(*errors);
  auto& config = std::get<egressd::Config>(loaded);
  if (check) return check_offline(config, check_json);
  if (supervise) {
    if (takeover != egressd::Takeover::none) {
      std::cerr << "egressd: --supervise takes over by itself; drop --takeover\n";
      return 2;
    }
    return egressd::run_supervisor(passed_on);
  }
  return egressd::run_server(std::move(config), takeover);
}
