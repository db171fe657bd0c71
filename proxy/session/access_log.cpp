#include "session/access_log.hpp"

#include <nlohmann/json.hpp>

#include <chrono>
#include <ctime>

namespace egressd {
namespace {

std::string utc_now() {
  auto now = std::chrono::system_clock::now();
  auto seconds = std::chrono::system_clock::to_time_t(now);
  auto millis =
      std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count() % 1000;
  std::tm tm{};
  gmtime_r(&seconds, &tm);
  char buffer[40];
  std::snprintf(buffer, sizeof(buffer), "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
                tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                static_cast<int>(millis));
  return buffer;
}

}  // namespace

std::string access_log_line(const AccessRecord& r) {
  nlohmann::ordered_json line = {
      {"ts", utc_now()},
      {"sandbox",
       r.sandbox.empty() ? nlohmann::ordered_json(nullptr) : nlohmann::ordered_json(r.sandbox)},
      {"src", r.src},
      {"dst", r.dst},
      {"port", r.port},
      {"proto", r.proto},
      {"name", r.name.empty() ? nlohmann::ordered_json(nullptr) : nlohmann::ordered_json(r.name)},
      {"verdict", to_string(r.verdict)},
      {"reason", to_string(r.reason)},
      {"rule", r.rule.empty() ? nlohmann::ordered_json(nullptr) : nlohmann::ordered_json(r.rule)},
      {"bytes_up", r.bytes_up},
      {"bytes_down", r.bytes_down},
      {"duration_ms", static_cast<int64_t>(r.duration_ms)},
  };
  if (r.ech) line["ech"] = true;
  if (!r.dialed.empty()) line["dialed"] = r.dialed;
  return line.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

bool AccessLog::open(const std::string& target) {
  std::lock_guard lock(mutex_);
  target_ = target;
  if (target == "-") {
    file_ = stdout;
  } else {
    file_ = std::fopen(target.c_str(), "ae");
    if (!file_) return false;
  }
  std::setvbuf(file_, nullptr, _IOFBF, 1 << 16);
  return true;
}

void AccessLog::write(const AccessRecord& record) {
  std::string line = access_log_line(record);
  line.push_back('\n');
  std::lock_guard lock(mutex_);
  if (file_) std::fwrite(line.data(), 1, line.size(), file_);
}

void AccessLog::flush() {
  std::lock_guard lock(mutex_);
  if (file_) std::fflush(file_);
}

bool AccessLog::reopen() {
  std::lock_guard lock(mutex_);
  if (target_ == "-" || target_.empty()) return true;
  FILE* fresh = std::fopen(target_.c_str(), "ae");
  if (!fresh) return false;
  if (file_) std::fclose(file_);
  file_ = fresh;
  std::setvbuf(file_, nullptr, _IOFBF, 1 << 16);
  return true;
}

AccessLog::~AccessLog() {
  std::lock_guard lock(mutex_);
  if (file_ && file_ != stdout) std::fclose(file_);
  if (file_ == stdout) std::fflush(stdout);
}

}  // namespace egressd
