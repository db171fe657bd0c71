#pragma once
// An immutable value published to many reader threads: writers swap a shared_ptr under a
// mutex and bump a version; each reader keeps a Reader that re-reads only when the version
// moved, so the hot path is one atomic load.
#include <atomic>
#include <memory>
#include <mutex>

namespace egressd {

template <typename T>
class Published {
 public:
  explicit Published(std::shared_ptr<const T> initial) : value_(std::move(initial)) {}

  void publish(std::shared_ptr<const T> next) {
    std::lock_guard lock(mutex_);
    value_ = std::move(next);
    version_.fetch_add(1, std::memory_order_release);
  }
  std::shared_ptr<const T> load() const {
    std::lock_guard lock(mutex_);
    return value_;
  }
  uint64_t version() const { return version_.load(std::memory_order_acquire); }

  class Reader {
   public:
    explicit Reader(const Published& source) : source_(source) {}
    const T& get() {
      uint64_t version = source_.version();
      if (!value_ || version != seen_) {
        value_ = source_.load();
        seen_ = version;
      }
      return *value_;
    }
    std::shared_ptr<const T> share() {
      get();
      return value_;
    }

   private:
    const Published& source_;
    uint64_t seen_ = 0;
    std::shared_ptr<const T> value_;
  };

 private:
  mutable std::mutex mutex_;
  std::shared_ptr<const T> value_;
  std::atomic<uint64_t> version_{1};
};

}  // namespace egressd
