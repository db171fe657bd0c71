#pragma once
// All sandboxes, keyed by id and by source address, published as immutable snapshots.
// Writers (config load, control API) serialise on the writer mutex, which they may hold
// across slow work (the state file's fsync in before_publish); readers never take it: they
// take a second mutex held only to copy or swap one pointer, and on worker threads go through
// a SnapshotReader that costs one atomic load per connection when nothing changed.
#include <array>
#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <unordered_map>
#include <variant>
#include <vector>

#include "policy/sandbox_policy.hpp"

namespace egressd {

struct Sandbox {
  std::string id;
  std::vector<IpPrefix> sources;
  std::vector<std::string> source_texts;
  std::shared_ptr<const CompiledPolicy> policy;
  uint64_t generation = 0;
};

class StoreSnapshot {
 public:
  static constexpr size_t kShards = 256;

  const Sandbox* find_by_id(std::string_view id) const;
  const Sandbox* find_by_source(const IpAddress& source) const;
  std::shared_ptr<const Sandbox> share_by_id(std::string_view id) const;
  std::shared_ptr<const Sandbox> share_by_source(const IpAddress& source) const;
  size_t size() const { return count_; }
  uint64_t generation() const { return generation_; }
  template <typename Visit>
  void for_each(Visit&& visit) const {
    for (const auto& shard : by_id_)
      for (const auto& [id, sandbox] : *shard) visit(*sandbox);
  }

 private:
  friend class PolicyStore;
  using IdShard = std::unordered_map<std::string, std::shared_ptr<const Sandbox>>;
  using SourceShard = std::unordered_map<IpAddress, std::shared_ptr<const Sandbox>, IpAddressHash>;
  struct CidrSource {
    IpPrefix prefix;
    std::shared_ptr<const Sandbox> sandbox;
  };
  using CidrSources = std::vector<CidrSource>;  // non-overlapping, sorted by (family, address)

  static size_t shard_of(std::string_view id);
  static size_t shard_of(const IpAddress& address);

  std::array<std::shared_ptr<const IdShard>, kShards> by_id_;
  std::array<std::shared_ptr<const SourceShard>, kShards> by_source_;
  std::shared_ptr<const CidrSources> cidr_sources_;
  size_t count_ = 0;
  uint64_t generation_ = 0;
};

class PolicyStore {
 public:
  PolicyStore();

  // Validates completely, then publishes; on error nothing changes. `expected_generation`
  // (If-Match) must equal the stored one when given. The error field names the bad entry.
  struct PutError {
    enum class Kind { invalid, conflict, generation_mismatch, storage } kind;
    FieldError error;
  };
  std::variant<std::shared_ptr<const Sandbox>, PutError> put(
      const SandboxSpec& spec, std::optional<uint64_t> expected_generation = std::nullopt,
      std::optional<uint64_t> restored_generation = std::nullopt,
      const std::function<std::string(const Sandbox&)>& before_publish = {});
  // `before_publish` runs under the writer lock once the sandbox is fully validated; a
  // non-empty answer (e.g. "fsync failed") aborts the put and nothing changes.
  // Publishes many sandboxes at once (startup, SIGHUP); all or nothing. A sandbox whose spec
  // is unchanged keeps its generation (and its compiled policy).
  // `restored` (start-up from state_dir): the generation each spec had, where known.
  std::optional<PutError> replace_all(const std::vector<SandboxSpec>& specs,
                                      const std::vector<std::optional<uint64_t>>& restored = {});
  bool remove(std::string_view id);

  // The gateway names a sandbox's egress.gateway may name (the configuration's `gateways`);
  // a spec naming another is invalid. Set before the sandboxes that use them.
  void set_gateways(std::set<std::string> names);
  std::shared_ptr<const std::set<std::string>> gateways() const;

  std::shared_ptr<const StoreSnapshot> snapshot() const;
  uint64_t version() const { return version_.load(std::memory_order_acquire); }

 private:
  struct SourceOwner {
    uint8_t length;
    std::string id;
  };
  using SourceKey = std::pair<uint8_t, uint128>;  // (family, first address)

  std::variant<std::shared_ptr<Sandbox>, PutError> build(const SandboxSpec& spec) const;
  static std::shared_ptr<StoreSnapshot> empty_snapshot();
  std::optional<PutError> check_sources(const Sandbox& sandbox) const;
  void unindex(StoreSnapshot& next, const Sandbox& old);
  void index(StoreSnapshot& next, const std::shared_ptr<const Sandbox>& sandbox);
  void publish(std::shared_ptr<const StoreSnapshot> next);

  std::mutex writer_mutex_;            // every change; guards owners_ and next_generation_
  mutable std::mutex snapshot_mutex_;  // only the copy and the swap of current_
  std::shared_ptr<const StoreSnapshot> current_;  // written under both, read under either
  std::map<SourceKey, SourceOwner> owners_;       // writer-side, for overlap checks
  uint64_t next_generation_ = 1;
  std::atomic<uint64_t> version_{0};
  mutable std::mutex gateways_mutex_;
  std::shared_ptr<const std::set<std::string>> gateways_ =
      std::make_shared<std::set<std::string>>();
};

// Per-thread cache of the current snapshot: one atomic load per call when nothing changed.
class SnapshotReader {
 public:
  explicit SnapshotReader(const PolicyStore& store) : store_(store) {}
  const std::shared_ptr<const StoreSnapshot>& get() {
    uint64_t version = store_.version();
    if (version != seen_ || !snapshot_) {
      snapshot_ = store_.snapshot();
      seen_ = version;
    }
    return snapshot_;
  }

 private:
  const PolicyStore& store_;
  uint64_t seen_ = 0;
  std::shared_ptr<const StoreSnapshot> snapshot_;
};

bool valid_sandbox_id(std::string_view id);

// The spec a stored sandbox was built from (rule texts as written, in order).
SandboxSpec spec_of(const Sandbox& sandbox);
bool same_spec(const SandboxSpec& a, const SandboxSpec& b);

}  // namespace egressd
