// One route family of the control API (native, or one compatible translator: chosen at build
// time by EGRESSD_ROUTE) on arbitrary methods, ids and bodies, against a real store and a
// state_dir on tmpfs, checking:
//  - a 4xx (or any non-2xx) answer changes nothing: the store publishes no new snapshot and no
//    state file is written;
//  - no answer is a 5xx (nothing here can fail to store), and no handler throws;
//  - translating is stable: a 2xx PUT sent again leaves the stored policy as it was, and so
//    does sending back what the route answers for it (native GET, sandbox0 GET, Blaxel's echo).
// Every input starts from the same two sandboxes. Input: [method] [id] body.
#include <stdlib.h>

#include <cstdlib>
#include <filesystem>
#include <map>
#include <memory>
#include <string>

#include "control/api.hpp"
#include "control/spec_json.hpp"

using namespace egressd;
using nlohmann::json;

#ifndef EGRESSD_ROUTE
#define EGRESSD_ROUTE 0
#endif

namespace {

const char* const kMethods[] = {"PUT", "GET", "POST", "DELETE", "PATCH"};
const char* const kIds[] = {"a", "b", "new", "%ff", "a%2Fb", ".."};

std::string target_for(const std::string& id, bool check) {
  switch (EGRESSD_ROUTE) {
    case 1:
      return "/sandboxes/" + id + "/network";  // E2B
    case 2:
      return "/sandboxes/" + id + "/egress";  // Brimble
    case 3:
      return "/api/v1/sandboxes/" + id + "/network";  // sandbox0
    case 4:
      return "/v0/sandboxes/" + id;  // Blaxel
    default:
      return check ? "/v1/check" : "/v1/sandboxes/" + id;
  }
}

const char* const kBaselineA =
    R"({"sources":["10.200.1.2","fd00:200:1::2"],"egress":{"default":"deny",)"
    R"("allow":["pypi.org","*.github.com","198.18.0.0/15:443"],"deny":["gist.github.com"]}})";
const char* const kBaselineB = R"({"sources":["10.200.2.0/24"],"egress":{"default":"allow"}})";

struct World {
  std::string dir;
  Config config;
  // What app/ would wire: the control API's context, nothing of the data path.
  PolicyStore store;
  Published<Settings> settings{Settings::from(config)};
  ConnectionRegistry registry;
  DenialLog denials;
  Metrics metrics;
  std::unique_ptr<StateDir> state;
  std::unique_ptr<ControlApi> api;
  std::map<std::string, SandboxSpec> baseline;

  World() {
    char pattern[] = "/dev/shm/egressd-fuzz-XXXXXX";  // tmpfs: fsync costs nothing
    dir = mkdtemp(pattern);
    state = std::make_unique<StateDir>(dir);
    if (!state->prepare().empty()) abort();
    api = std::make_unique<ControlApi>(ControlContext{store, settings, registry, denials, metrics},
                                       *state);
    for (auto [id, body] : {std::pair{"a", kBaselineA}, std::pair{"b", kBaselineB}}) {
      if (handle("PUT", "/v1/sandboxes/" + std::string(id), body).status != 200) abort();
      baseline[id] = spec_of(*store.snapshot()->find_by_id(id));
    }
  }
  ~World() { std::filesystem::remove_all(dir); }

  ControlResponse handle(const std::string& method, const std::string& target,
                         const std::string& body) {
    ControlRequest request{method, target, {}, body};
    return api->handle(request);  // a throw is a finding: libFuzzer reports it
  }

  // Back to the two baseline sandboxes, nothing else.
  void reset() {
    auto snapshot = store.snapshot();
    std::vector<std::string> extra;
    snapshot->for_each([&](const Sandbox& s) {
      if (!baseline.count(s.id)) extra.push_back(s.id);
    });
    for (const auto& id : extra) api->remove(id);
    for (const auto& [id, spec] : baseline) {
      const Sandbox* now = store.snapshot()->find_by_id(id);
      if (!now || !same_spec(spec_of(*now), spec)) {
        if (std::holds_alternative<PolicyStore::PutError>(api->apply(spec))) abort();
      }
    }
  }

  std::map<std::string, std::string> files() const {
    std::map<std::string, std::string> out;
    for (const auto& entry : std::filesystem::recursive_directory_iterator(dir)) {
      if (!entry.is_regular_file()) continue;
      std::string text;
      if (FILE* f = fopen(entry.path().c_str(), "rb")) {
        char chunk[4096];
        for (size_t n; (n = fread(chunk, 1, sizeof chunk, f)) > 0;) text.append(chunk, n);
        fclose(f);
      }
      out[entry.path()] = text;
    }
    return out;
  }

  std::optional<SandboxSpec> spec(const std::string& id) const {
    const Sandbox* s = store.snapshot()->find_by_id(id);
    return s ? std::optional<SandboxSpec>(spec_of(*s)) : std::nullopt;
  }
};

World& world() {
  static World* w = new World();  // lives for the process; the directory is tmpfs
  return *w;
}

void require_same(const std::optional<SandboxSpec>& a, const std::optional<SandboxSpec>& b) {
  if (a.has_value() != b.has_value()) abort();
  if (a && !same_spec(*a, *b)) abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2) return 0;
  World& w = world();
  w.reset();
  std::string method = kMethods[data[0] % 5];
  bool check = EGRESSD_ROUTE == 0 && (data[0] & 0x80);
  std::string id = kIds[data[1] % 6];
  std::string body(reinterpret_cast<const char*>(data) + 2, size - 2);
  std::string target = target_for(id, check);

  auto before = w.store.snapshot();
  auto files_before = w.files();
  ControlResponse response = w.handle(method, target, body);
  if (response.status >= 500) abort();
  if (response.status < 200 || response.status > 299 || method == "GET" || check) {
    // Nothing changed: not the store's snapshot, not the state files.
    if (w.store.snapshot() != before) abort();
    if (w.files() != files_before) abort();
    return 0;
  }
  if (method != "PUT") return 0;
  const std::string& stored_id = id;  // only valid ids can be stored
  auto stored = w.spec(stored_id);
  if (!stored) abort();  // a 2xx PUT stored something
  // The same PUT again: the same policy.
  ControlResponse again = w.handle(method, target, body);
  if (again.status < 200 || again.status > 299) abort();
  require_same(w.spec(stored_id), stored);
  // What the route answers for it, sent back: the same policy.
  std::string echo;
  if (EGRESSD_ROUTE == 0) {
    json got = json::parse(w.handle("GET", target, "").body);
    got.erase("generation");
    got.erase("id");
    echo = got.dump();
  } else if (EGRESSD_ROUTE == 3) {
    echo = w.handle("GET", target, "").body;
  } else if (EGRESSD_ROUTE == 4) {
    echo = again.body;
  }
  if (!echo.empty()) {
    ControlResponse back = w.handle("PUT", target, echo);
    if (back.status < 200 || back.status > 299) abort();
    require_same(w.spec(stored_id), stored);
  }
  return 0;
}
