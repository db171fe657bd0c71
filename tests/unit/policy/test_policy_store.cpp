#include <doctest/doctest.h>

#include <chrono>
#include <future>
#include <thread>

#include "policy/policy_store.hpp"

using namespace egressd;

namespace {

SandboxSpec spec(std::string id, std::vector<std::string> sources,
                 std::vector<std::string> allow = {}) {
  SandboxSpec s;
  s.id = std::move(id);
  s.sources = std::move(sources);
  s.allow = std::move(allow);
  return s;
}

const Sandbox* by_source(const PolicyStore& store, const char* ip) {
  return store.snapshot()->find_by_source(*IpAddress::parse(ip));
}

}  // namespace

TEST_CASE("Store: put, lookups by id and by source, v4 and v6, exact and CIDR") {
  PolicyStore store;
  REQUIRE(std::holds_alternative<std::shared_ptr<const Sandbox>>(
      store.put(spec("a", {"10.200.1.2", "fd00:200::2"}))));
  REQUIRE(std::holds_alternative<std::shared_ptr<const Sandbox>>(
      store.put(spec("b", {"10.200.2.0/24", "fd00:200:1::/64"}))));
  CHECK(store.snapshot()->size() == 2);
  CHECK(by_source(store, "10.200.1.2")->id == "a");
  CHECK(by_source(store, "fd00:200::2")->id == "a");
  CHECK(by_source(store, "10.200.2.77")->id == "b");
  CHECK(by_source(store, "fd00:200:1::abcd")->id == "b");
  CHECK(by_source(store, "::ffff:10.200.2.1") == nullptr);  // callers unmap first
  CHECK(store.snapshot()->find_by_source(IpAddress::parse("::ffff:10.200.2.1")->unmapped())->id ==
        "b");
  CHECK(by_source(store, "10.200.1.3") == nullptr);
  CHECK(by_source(store, "10.200.3.1") == nullptr);
  CHECK(store.snapshot()->find_by_id("a")->sources.size() == 2);
  CHECK(store.snapshot()->find_by_id("nope") == nullptr);
}

TEST_CASE("Store: replacing one sandbox keeps the others and old snapshots") {
  PolicyStore store;
  store.put(spec("a", {"10.200.1.2"}, {"pypi.org"}));
  store.put(spec("b", {"10.200.1.3"}, {"github.com"}));
  auto before = store.snapshot();
  auto b_before = before->share_by_id("b");
  auto a1 = before->find_by_id("a")->generation;
  store.put(spec("a", {"10.200.1.4"}, {"example.org"}));
  auto after = store.snapshot();
  CHECK(after->find_by_id("a")->generation > a1);
  CHECK(after->share_by_id("b") == b_before);  // not rebuilt
  CHECK(after->find_by_source(*IpAddress::parse("10.200.1.2")) == nullptr);
  CHECK(after->find_by_source(*IpAddress::parse("10.200.1.4"))->id == "a");
  // The old snapshot is unchanged for readers still holding it.
  CHECK(before->find_by_source(*IpAddress::parse("10.200.1.2"))->id == "a");
  CHECK(before->find_by_id("a")->policy->rule_texts(true) == std::vector<std::string>{"pypi.org"});
  CHECK(store.remove("a"));
  CHECK_FALSE(store.remove("a"));
  CHECK(store.snapshot()->size() == 1);
  CHECK(by_source(store, "10.200.1.4") == nullptr);
}

TEST_CASE("Store: overlapping sources are refused and nothing changes") {
  PolicyStore store;
  store.put(spec("a", {"10.200.1.0/24"}));
  store.put(spec("b", {"10.200.2.5"}));
  auto generation = store.snapshot()->generation();
  struct Row {
    std::vector<std::string> sources;
    const char* field;
  };
  const Row rows[] = {
      {{"10.200.1.9"}, "sources[0]"},     // inside a's prefix
      {{"10.200.0.0/16"}, "sources[0]"},  // covers both
      {{"10.200.9.9", "10.200.2.5"}, "sources[1]"},
  };
  for (const Row& row : rows) {
    auto result = store.put(spec("c", row.sources));
    REQUIRE(std::holds_alternative<PolicyStore::PutError>(result));
    CHECK(std::get<PolicyStore::PutError>(result).kind == PolicyStore::PutError::Kind::conflict);
    CHECK(std::get<PolicyStore::PutError>(result).error.field == row.field);
  }
  auto self = store.put(spec("c", {"10.200.7.0/24", "10.200.7.7"}));
  REQUIRE(std::holds_alternative<PolicyStore::PutError>(self));
  CHECK(std::get<PolicyStore::PutError>(self).kind == PolicyStore::PutError::Kind::invalid);
  CHECK(store.snapshot()->generation() == generation);
  CHECK(store.snapshot()->size() == 2);
  // A sandbox may keep or move its own sources.
  CHECK(std::holds_alternative<std::shared_ptr<const Sandbox>>(
      store.put(spec("a", {"10.200.1.0/25"}))));
  CHECK(std::holds_alternative<std::shared_ptr<const Sandbox>>(
      store.put(spec("c", {"10.200.1.128/25"}))));
}

TEST_CASE("Store: bad specs and If-Match") {
  PolicyStore store;
  auto bad_id = store.put(spec("../etc", {}));
  CHECK(std::get<PolicyStore::PutError>(bad_id).error.field == "id");
  auto bad_rule = store.put(spec("a", {"10.200.1.2"}, {"ok.example", "*.com"}));
  CHECK(std::get<PolicyStore::PutError>(bad_rule).error.field == "egress.allow[1]");
  CHECK(store.snapshot()->size() == 0);
  auto first = std::get<std::shared_ptr<const Sandbox>>(store.put(spec("a", {"10.200.1.2"})));
  auto stale = store.put(spec("a", {"10.200.1.2"}), first->generation + 100);
  CHECK(std::get<PolicyStore::PutError>(stale).kind ==
        PolicyStore::PutError::Kind::generation_mismatch);
  CHECK(std::holds_alternative<std::shared_ptr<const Sandbox>>(
      store.put(spec("a", {"10.200.1.2"}), first->generation)));
}

TEST_CASE("Store: replace_all is all or nothing") {
  PolicyStore store;
  store.put(spec("keep", {"10.200.1.2"}));
  auto error = store.replace_all({spec("x", {"10.200.1.5"}), spec("x", {"10.200.1.6"})});
  REQUIRE(error);
  CHECK(error->error.field == "sandboxes[1].id");
  CHECK(store.snapshot()->find_by_id("keep") != nullptr);
  CHECK_FALSE(store.replace_all({spec("x", {"10.200.1.5"}), spec("y", {"10.200.1.6"})}));
  CHECK(store.snapshot()->find_by_id("keep") == nullptr);
  CHECK(by_source(store, "10.200.1.6")->id == "y");
}

TEST_CASE("Store: readers on other threads see whole snapshots while a writer replaces") {
  PolicyStore store;
  store.put(spec("a", {"10.200.1.2"}, {"v0.example"}));
  std::atomic<bool> stop{false};
  std::atomic<long> reads{0}, torn{0};
  std::vector<std::thread> readers;
  for (int t = 0; t < 2; ++t) {
    readers.emplace_back([&] {
      SnapshotReader reader(store);
      while (!stop.load()) {
        const Sandbox* a = reader.get()->find_by_source(*IpAddress::parse("10.200.1.2"));
        if (!a || a->policy->rule_texts(true).size() != 1) ++torn;
        ++reads;
      }
    });
  }
  for (int i = 0; i < 2000; ++i)
    store.put(spec("a", {"10.200.1.2"}, {"v" + std::to_string(i) + ".example"}));
  stop = true;
  for (auto& t : readers) t.join();
  CHECK(torn.load() == 0);
  CHECK(reads.load() > 0);
}

TEST_CASE("Store: readers are not held up by a writer's slow durable write") {
  // The control API fsyncs the state file in before_publish, under the writer lock; a data-path
  // reader that needs the snapshot meanwhile must get it at once (the previous one).
  auto store = std::make_shared<PolicyStore>();
  REQUIRE(std::holds_alternative<std::shared_ptr<const Sandbox>>(
      store->put(spec("a", {"10.200.1.2"}, {"a.example"}))));
  bool reader_done_inside = false;
  auto result = store->put(
      spec("a", {"10.200.1.2"}, {"b.example"}), std::nullopt, std::nullopt, [&](const Sandbox&) {
        auto found = std::make_shared<std::promise<bool>>();
        auto answer = found->get_future();
        // Detached, owning what it uses: if it blocks, the test fails instead of hanging.
        std::thread([store, found] {
          SnapshotReader reader(*store);
          found->set_value(reader.get()->find_by_id("a") != nullptr);
        }).detach();
        reader_done_inside =
            answer.wait_for(std::chrono::seconds(10)) == std::future_status::ready && answer.get();
        return std::string();
      });
  REQUIRE(std::holds_alternative<std::shared_ptr<const Sandbox>>(result));
  CHECK(reader_done_inside);
  CHECK(store->snapshot()->find_by_id("a")->policy->rule_texts(true) ==
        std::vector<std::string>{"b.example"});
}
