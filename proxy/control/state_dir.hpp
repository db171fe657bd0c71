#pragma once
// Policies written through the API survive restarts: one JSON file per sandbox in
// state_dir/sandboxes, replaced atomically (temp file, fsync, rename, fsync the directory).
// Secrets are written sealed ("sealed_secrets", SecretBox): no state file holds one in clear.
#include <optional>
#include <string>
#include <vector>

#include "policy/policy_store.hpp"
#include "tls/secret_box.hpp"

namespace egressd {

struct StoredSandbox {
  SandboxSpec spec;
  uint64_t generation = 0;
};

class StateDir {
 public:
  // `box` seals and opens the secrets; without one a sandbox with secrets cannot be saved.
  explicit StateDir(std::string root, const SecretBox* box = nullptr)
      : root_(std::move(root)), box_(box) {}
  void set_box(const SecretBox* box) { box_ = box; }
  // Creates the directory (0700). Returns an error message or empty.
  std::string prepare();
  // Durable before it returns; an error message or empty.
  std::string save(const SandboxSpec& spec, uint64_t generation);
  std::string remove(const std::string& id);
  // Every readable file; unreadable or corrupt ones are reported by name in `problems`.
  std::vector<StoredSandbox> load(std::vector<std::string>& problems) const;
  bool has(const std::string& id) const;

 private:
  std::string directory() const { return root_ + "/sandboxes"; }
  std::string root_;
  const SecretBox* box_;
};

}  // namespace egressd
