#include "policy/policy_store.hpp"

#include <algorithm>
#include <utility>

namespace egressd {

bool valid_sandbox_id(std::string_view id) {
  if (id.empty() || id.size() > 128 || id == "." || id == "..") return false;
  return std::all_of(id.begin(), id.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '_' || c == '.';
  });
}

size_t StoreSnapshot::shard_of(std::string_view id) {
  return std::hash<std::string_view>{}(id) % kShards;
}

size_t StoreSnapshot::shard_of(const IpAddress& address) {
  return IpAddressHash{}(address) % kShards;
}

std::shared_ptr<const Sandbox> StoreSnapshot::share_by_id(std::string_view id) const {
  const IdShard& shard = *by_id_[shard_of(id)];
  auto found = shard.find(std::string(id));
  return found == shard.end() ? nullptr : found->second;
}

const Sandbox* StoreSnapshot::find_by_id(std::string_view id) const {
  return share_by_id(id).get();
}

std::shared_ptr<const Sandbox> StoreSnapshot::share_by_source(const IpAddress& source) const {
  const SourceShard& shard = *by_source_[shard_of(source)];
  if (auto found = shard.find(source); found != shard.end()) return found->second;
  const CidrSources& cidrs = *cidr_sources_;
  // Sources never overlap, so the only candidate is the last prefix starting at or before it.
  auto after = std::upper_bound(cidrs.begin(), cidrs.end(), source,
                                [](const IpAddress& a, const CidrSource& entry) {
                                  if (a.family != entry.prefix.address.family)
                                    return a.family < entry.prefix.address.family;
                                  return a.bits < entry.prefix.address.bits;
                                });
  if (after == cidrs.begin()) return nullptr;
  const CidrSource& candidate = *std::prev(after);
  return candidate.prefix.contains(source) ? candidate.sandbox : nullptr;
}

const Sandbox* StoreSnapshot::find_by_source(const IpAddress& source) const {
  return share_by_source(source).get();
}

std::shared_ptr<StoreSnapshot> PolicyStore::empty_snapshot() {
  auto empty = std::make_shared<StoreSnapshot>();
  auto empty_ids = std::make_shared<const StoreSnapshot::IdShard>();
  auto empty_sources = std::make_shared<const StoreSnapshot::SourceShard>();
  empty->by_id_.fill(empty_ids);
  empty->by_source_.fill(empty_sources);
  empty->cidr_sources_ = std::make_shared<const StoreSnapshot::CidrSources>();
  return empty;
}

PolicyStore::PolicyStore() : current_(empty_snapshot()) {}

std::shared_ptr<const StoreSnapshot> PolicyStore::snapshot() const {
  std::lock_guard lock(snapshot_mutex_);
  return current_;
}

std::variant<std::shared_ptr<Sandbox>, PolicyStore::PutError> PolicyStore::build(
    const SandboxSpec& spec) const {
  auto invalid = [](std::string field, std::string message) {
    return PutError{PutError::Kind::invalid, FieldError{std::move(field), std::move(message)}};
  };
  if (!valid_sandbox_id(spec.id)) {
    return invalid("id", "\"" + spec.id + "\": ids are 1-128 of [A-Za-z0-9._-]");
  }
  auto sandbox = std::make_shared<Sandbox>();
  sandbox->id = spec.id;
  for (size_t i = 0; i < spec.sources.size(); ++i) {
    auto prefix = IpPrefix::parse(spec.sources[i]);
    std::string field = "sources[" + std::to_string(i) + "]";
    if (auto* error = std::get_if<std::string>(&prefix)) {
      return invalid(field, "\"" + spec.sources[i] + "\": " + *error);
    }
    for (size_t j = 0; j < sandbox->sources.size(); ++j) {
      if (sandbox->sources[j].overlaps(std::get<IpPrefix>(prefix))) {
        return invalid(field,
                       "\"" + spec.sources[i] + "\" overlaps sources[" + std::to_string(j) + "]");
      }
    }
    sandbox->sources.push_back(std::get<IpPrefix>(prefix));
    sandbox->source_texts.push_back(spec.sources[i]);
  }
  if (!spec.gateway.empty()) {
    std::shared_ptr<const std::set<std::string>> known = gateways();
    if (!known->count(spec.gateway)) {
      std::string names;
      for (const std::string& name : *known) names += (names.empty() ? "" : ", ") + name;
      return invalid("egress.gateway", "unknown gateway \"" + spec.gateway + "\" (configured: " +
                                           (names.empty() ? "none" : names) + ")");
    }
  }
  auto policy = CompiledPolicy::compile(spec);
  if (auto* error = std::get_if<FieldError>(&policy)) {
    return PutError{PutError::Kind::invalid, *error};
  }
  sandbox->policy = std::get<std::shared_ptr<const CompiledPolicy>>(policy);
  return sandbox;
}

std::optional<PolicyStore::PutError> PolicyStore::check_sources(const Sandbox& sandbox) const {
  for (size_t i = 0; i < sandbox.sources.size(); ++i) {
    const IpPrefix& prefix = sandbox.sources[i];
    auto family = static_cast<uint8_t>(prefix.address.family);
    auto conflict = [&](const SourceOwner& owner) {
      return PutError{PutError::Kind::conflict,
                      FieldError{"sources[" + std::to_string(i) + "]",
                                 "\"" + sandbox.source_texts[i] +
                                     "\" overlaps a source of sandbox \"" + owner.id + "\""}};
    };
    uint128 last = prefix.address.bits | ~prefix_mask(prefix.address.width(), prefix.length);
    if (prefix.address.family == Family::v4) last &= 0xFFFFFFFFu;
    auto it = owners_.lower_bound(SourceKey{family, prefix.address.bits});
    for (auto scan = it;
         scan != owners_.end() && scan->first.first == family && scan->first.second <= last;
         ++scan) {
      if (scan->second.id != sandbox.id) return conflict(scan->second);
    }
    if (it != owners_.begin()) {
      auto before = std::prev(it);
      IpPrefix existing{IpAddress{prefix.address.family, before->first.second},
                        before->second.length};
      if (before->first.first == family && existing.contains(prefix.address) &&
          before->second.id != sandbox.id) {
        return conflict(before->second);
      }
    }
  }
  return std::nullopt;
}

void PolicyStore::unindex(StoreSnapshot& next, const Sandbox& old) {
  size_t id_shard = StoreSnapshot::shard_of(old.id);
  auto ids = std::make_shared<StoreSnapshot::IdShard>(*next.by_id_[id_shard]);
  ids->erase(old.id);
  next.by_id_[id_shard] = std::move(ids);
  bool had_cidr = false;
  for (const IpPrefix& prefix : old.sources) {
    owners_.erase(SourceKey{static_cast<uint8_t>(prefix.address.family), prefix.address.bits});
    if (prefix.length != prefix.address.width()) {
      had_cidr = true;
      continue;
    }
    size_t shard = StoreSnapshot::shard_of(prefix.address);
    auto sources = std::make_shared<StoreSnapshot::SourceShard>(*next.by_source_[shard]);
    sources->erase(prefix.address);
    next.by_source_[shard] = std::move(sources);
  }
  if (had_cidr) {
    auto cidrs = std::make_shared<StoreSnapshot::CidrSources>(*next.cidr_sources_);
    std::erase_if(*cidrs,
                  [&](const StoreSnapshot::CidrSource& c) { return c.sandbox->id == old.id; });
    next.cidr_sources_ = std::move(cidrs);
  }
  --next.count_;
}

void PolicyStore::index(StoreSnapshot& next, const std::shared_ptr<const Sandbox>& sandbox) {
  size_t id_shard = StoreSnapshot::shard_of(sandbox->id);
  auto ids = std::make_shared<StoreSnapshot::IdShard>(*next.by_id_[id_shard]);
  (*ids)[sandbox->id] = sandbox;
  next.by_id_[id_shard] = std::move(ids);
  std::shared_ptr<StoreSnapshot::CidrSources> cidrs;
  for (const IpPrefix& prefix : sandbox->sources) {
    owners_[SourceKey{static_cast<uint8_t>(prefix.address.family), prefix.address.bits}] =
        SourceOwner{prefix.length, sandbox->id};
    if (prefix.length != prefix.address.width()) {
      if (!cidrs) cidrs = std::make_shared<StoreSnapshot::CidrSources>(*next.cidr_sources_);
      cidrs->push_back({prefix, sandbox});
      continue;
    }
    size_t shard = StoreSnapshot::shard_of(prefix.address);
    auto sources = std::make_shared<StoreSnapshot::SourceShard>(*next.by_source_[shard]);
    (*sources)[prefix.address] = sandbox;
    next.by_source_[shard] = std::move(sources);
  }
  if (cidrs) {
    std::sort(cidrs->begin(), cidrs->end(), [](const auto& a, const auto& b) {
      if (a.prefix.address.family != b.prefix.address.family)
        return a.prefix.address.family < b.prefix.address.family;
      return a.prefix.address.bits < b.prefix.address.bits;
    });
    next.cidr_sources_ = std::move(cidrs);
  }
  ++next.count_;
}

void PolicyStore::publish(std::shared_ptr<const StoreSnapshot> next) {
  std::shared_ptr<const StoreSnapshot> old;  // the last reference may go: outside the lock
  {
    std::lock_guard lock(snapshot_mutex_);
    old = std::exchange(current_, std::move(next));
  }
  version_.fetch_add(1, std::memory_order_release);
}

void PolicyStore::set_gateways(std::set<std::string> names) {
  std::lock_guard lock(gateways_mutex_);
  gateways_ = std::make_shared<const std::set<std::string>>(std::move(names));
}

std::shared_ptr<const std::set<std::string>> PolicyStore::gateways() const {
  std::lock_guard lock(gateways_mutex_);
  return gateways_;
}

SandboxSpec spec_of(const Sandbox& sandbox) {
  SandboxSpec spec;
  spec.id = sandbox.id;
  spec.sources = sandbox.source_texts;
  spec.default_verdict = sandbox.policy->default_verdict();
  spec.allow = sandbox.policy->rule_texts(true);
  spec.deny = sandbox.policy->rule_texts(false);
  spec.mode = sandbox.policy->mode();
  spec.names_bypass_address_denies = sandbox.policy->names_bypass_address_denies();
  spec.gateway = sandbox.policy->gateway();
  spec.transforms = sandbox.policy->transforms();
  spec.bypass = sandbox.policy->bypass();
  spec.secrets = sandbox.policy->secrets();
  return spec;
}

bool same_spec(const SandboxSpec& a, const SandboxSpec& b) {
  return a.id == b.id && a.sources == b.sources && a.default_verdict == b.default_verdict &&
         a.allow == b.allow && a.deny == b.deny && a.mode == b.mode &&
         a.names_bypass_address_denies == b.names_bypass_address_denies && a.gateway == b.gateway &&
         a.transforms == b.transforms && a.bypass == b.bypass && a.secrets == b.secrets;
}

std::variant<std::shared_ptr<const Sandbox>, PolicyStore::PutError> PolicyStore::put(
    const SandboxSpec& spec, std::optional<uint64_t> expected_generation,
    std::optional<uint64_t> restored_generation,
    const std::function<std::string(const Sandbox&)>& before_publish) {
  auto built = build(spec);  // compile outside the lock: it is the expensive part
  if (auto* error = std::get_if<PutError>(&built)) return *error;
  std::shared_ptr<Sandbox> sandbox = std::get<std::shared_ptr<Sandbox>>(built);

  std::lock_guard lock(writer_mutex_);
  auto old = current_->share_by_id(spec.id);
  if (expected_generation && (!old || old->generation != *expected_generation)) {
    return PutError{
        PutError::Kind::generation_mismatch,
        FieldError{"If-Match", "generation is " + std::to_string(old ? old->generation : 0)}};
  }
  if (auto conflict = check_sources(*sandbox)) return *conflict;
  sandbox->generation = restored_generation ? *restored_generation : next_generation_;
  if (before_publish) {
    if (std::string problem = before_publish(*sandbox); !problem.empty()) {
      return PutError{PutError::Kind::storage, FieldError{"", problem}};
    }
  }
  next_generation_ = std::max(next_generation_, sandbox->generation + 1);
  auto next = std::make_shared<StoreSnapshot>(*current_);
  if (old) unindex(*next, *old);
  std::shared_ptr<const Sandbox> published = sandbox;
  index(*next, published);
  next->generation_ = std::max(current_->generation_, sandbox->generation);
  publish(std::move(next));
  return published;
}

std::optional<PolicyStore::PutError> PolicyStore::replace_all(
    const std::vector<SandboxSpec>& specs, const std::vector<std::optional<uint64_t>>& restored) {
  std::vector<std::shared_ptr<Sandbox>> built;
  for (size_t i = 0; i < specs.size(); ++i) {
    auto one = build(specs[i]);
    if (auto* error = std::get_if<PutError>(&one)) {
      error->error.field = "sandboxes[" + std::to_string(i) + "]." + error->error.field;
      return *error;
    }
    built.push_back(std::get<std::shared_ptr<Sandbox>>(one));
  }
  std::lock_guard lock(writer_mutex_);
  // Fresh generations come after every restored one, so none is given twice.
  for (const auto& generation : restored) {
    if (generation) next_generation_ = std::max(next_generation_, *generation + 1);
  }
  auto saved_owners = owners_;
  owners_.clear();
  auto next = empty_snapshot();
  for (size_t i = 0; i < built.size(); ++i) {
    if (next->share_by_id(built[i]->id)) {
      owners_ = std::move(saved_owners);
      return PutError{PutError::Kind::invalid, FieldError{"sandboxes[" + std::to_string(i) + "].id",
                                                          "duplicate id \"" + built[i]->id + "\""}};
    }
    if (auto conflict = check_sources(*built[i])) {
      owners_ = std::move(saved_owners);
      conflict->error.field = "sandboxes[" + std::to_string(i) + "]." + conflict->error.field;
      return conflict;
    }
    auto old = current_->share_by_id(built[i]->id);
    if (old && same_spec(spec_of(*old), specs[i])) {
      index(*next, old);  // unchanged: same object, same generation
      continue;
    }
    if (i < restored.size() && restored[i]) {
      built[i]->generation = *restored[i];
    } else {
      built[i]->generation = next_generation_++;
    }
    index(*next, built[i]);
  }
  next->generation_ = next_generation_ - 1;
  publish(std::move(next));
  return std::nullopt;
}

bool PolicyStore::remove(std::string_view id) {
  std::lock_guard lock(writer_mutex_);
  auto old = current_->share_by_id(id);
  if (!old) return false;
  auto next = std::make_shared<StoreSnapshot>(*current_);
  unindex(*next, *old);
  next->generation_ = next_generation_++;
  publish(std::move(next));
  return true;
}

}  // namespace egressd
