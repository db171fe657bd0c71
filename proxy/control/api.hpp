#pragma once
// The control API (DESIGN.md "Control API"): native routes and the E2B, Brimble, sandbox0 and
// Blaxel compatible ones. Transport-free: a parsed request in, a response out, so every route
// is unit-tested without sockets.
#include <nlohmann/json.hpp>

#include <atomic>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "config/config.hpp"
#include "control/context.hpp"
#include "control/state_dir.hpp"

namespace egressd {

struct ControlRequest {
  std::string method;
  std::string target;                          // path and query
  std::map<std::string, std::string> headers;  // lower-case names
  std::string body;
};

struct ControlResponse {
  int status = 200;
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;
  std::string content_type = "application/json";  // JSON bodies get a final newline
};

// The one way a route answers with JSON (native and compatible alike).
ControlResponse reply(int status, const nlohmann::json& body);

struct CompatPlatform;  // compat.cpp: what differs between the compatible platforms

class ControlApi {
 public:
  ControlApi(ControlContext context, StateDir& state) : ctx_(context), state_(state) {}
  ControlResponse handle(const ControlRequest& request);
  // A takeover in progress: every request is answered 503 (nothing changes) until resumed.
  void set_paused(bool paused) { paused_.store(paused); }

  // Validates, persists, publishes, then applies on_update to live connections. Shared by
  // every route that changes a policy.
  std::variant<std::shared_ptr<const Sandbox>, PolicyStore::PutError> apply(
      const SandboxSpec& spec, std::optional<uint64_t> if_match = std::nullopt);
  bool remove(const std::string& id);
  // SIGHUP: the file's sandboxes replace those the API does not own (no state file), and the
  // file's settings are published, under the same writer lock as every API change, so a PUT
  // cannot land between reading the store and replacing it. Nothing changes on error.
  std::optional<PolicyStore::PutError> reload(const Config& fresh);
  // on_update: revoke re-checks the live connections of `sandbox` against its (new) policy.
  void revoke_denied(const Sandbox& sandbox);

 private:
  // One native call: the request, the path's parameters ("{}" in the route table, in order),
  // the decoded query and the store as it was when the request arrived.
  struct NativeCall {
    const ControlRequest& request;
    std::vector<std::string> params;
    const std::map<std::string, std::string>& query;
    std::shared_ptr<const StoreSnapshot> snapshot;
  };
  ControlResponse native(const ControlRequest& request, const std::vector<std::string>& path,
                         const std::map<std::string, std::string>& query);
  ControlResponse health(const NativeCall& call);
  ControlResponse list_sandboxes(const NativeCall& call);
  ControlResponse get_sandbox(const NativeCall& call);
  ControlResponse put_sandbox(const NativeCall& call);
  ControlResponse delete_sandbox(const NativeCall& call);
  ControlResponse check(const NativeCall& call);
  ControlResponse connections(const NativeCall& call);
  ControlResponse denials(const NativeCall& call);
  ControlResponse records(const NativeCall& call, bool connections);
  ControlResponse put_secrets(const NativeCall& call);
  ControlResponse ca_pem(const NativeCall& call);
  // The compatible endpoints: one skeleton (compat.cpp), one Platform each.
  ControlResponse compatible(const ControlRequest& request, const std::string& id,
                             const CompatPlatform& platform);
  ControlResponse e2b(const ControlRequest& request, const std::string& id);
  ControlResponse brimble(const ControlRequest& request, const std::string& id);
  ControlResponse sandbox0(const ControlRequest& request, const std::string& id);
  ControlResponse blaxel(const ControlRequest& request, const std::string& id);

  ControlContext ctx_;
  StateDir& state_;
  // One policy change at a time (persist order = publish order); recursive: a compatible
  // endpoint holds it across its read-modify-write and apply() takes it again.
  std::recursive_mutex write_mutex_;
  std::atomic<bool> paused_{false};
};

}  // namespace egressd
