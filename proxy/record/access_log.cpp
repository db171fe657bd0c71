#include "record/access_log.hpp"

#include "core/text.hpp"

#include <charconv>
#include <chrono>
#include <ctime>

#include <unistd.h>

#include <cerrno>

namespace egressd {
namespace {

void append_string(std::string& out, std::string_view text) {
  append_json_string(out, text);
}

void append_field(std::string& out, const char* key, std::string_view value,
                  bool null_when_empty = false) {
  out += ",\"";
  out += key;
  out += "\":";
  if (null_when_empty && value.empty()) {
    out += "null";
  } else {
    append_string(out, value);
  }
}

void append_number(std::string& out, const char* key, uint64_t value) {
  out += ",\"";
  out += key;
  out += "\":";
  out += std::to_string(value);
}

}  // namespace

// Built by hand: this runs once per connection on the data path.
std::string access_log_line(const AccessRecord& r) {
  std::string out;
  out.reserve(320);
  out += "{\"ts\":";
  append_string(out, utc_timestamp(std::chrono::system_clock::now()));
  if (r.id) append_number(out, "id", r.id);
  if (r.start.time_since_epoch().count() != 0) {
    out += ",\"start\":";
    append_string(out, utc_timestamp(r.start));
  }
  append_field(out, "sandbox", r.sandbox, true);
  append_field(out, "src", r.src);
  append_field(out, "dst", r.dst);
  append_number(out, "port", r.port);
  append_field(out, "proto", r.proto);
  append_field(out, "name", r.name, true);
  append_field(out, "verdict", to_string(r.verdict));
  append_field(out, "reason", to_string(r.reason));
  append_field(out, "rule", r.rule, true);
  append_number(out, "bytes_up", r.bytes_up);
  append_number(out, "bytes_down", r.bytes_down);
  append_number(out, "duration_ms", static_cast<uint64_t>(r.duration_ms));
  if (r.connect_ms) {
    char text[32];
    auto [end, error] =
        std::to_chars(text, text + sizeof(text), *r.connect_ms, std::chars_format::fixed, 3);
    out += ",\"connect_ms\":";
    if (error == std::errc())
      out.append(text, end);
    else
      out += '0';
  }
  if (r.would_deny) append_field(out, "would_deny", to_string(*r.would_deny));
  if (r.ech) out += ",\"ech\":true";
  if (r.intercepted) out += ",\"intercepted\":true";
  if (r.kernel) out += ",\"kernel\":true";
  if (!r.dialed.empty()) append_field(out, "dialed", r.dialed);
  if (!r.via.empty()) append_field(out, "via", r.via);
  if (!r.qtype.empty()) {
    append_field(out, "qtype", r.qtype);
    out += ",\"answers\":[";
    for (size_t i = 0; i < r.answers.size(); ++i) {
      if (i) out += ',';
      append_string(out, r.answers[i]);
    }
    out += ']';
  }
  out += '}';
  return out;
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
  return true;
}

void AccessLog::write(const AccessRecord& record) {
  std::string line = access_log_line(record);
  line.push_back('\n');
  std::lock_guard lock(mutex_);
  pending_ += line;
  if (pending_.size() >= (1u << 16)) write_pending();
}

// Whole lines only, in one write(2) each time on an O_APPEND file: two processes sharing the
// log (a draining egressd and its --takeover successor) never tear each other's lines, as
// stdio's buffer, flushed when full in the middle of a line, did.
void AccessLog::write_pending() {
  if (!file_ || pending_.empty()) return;
  int fd = fileno(file_);
  size_t done = 0;
  while (done < pending_.size()) {
    ssize_t n = ::write(fd, pending_.data() + done, pending_.size() - done);
    if (n <= 0) {
      if (n < 0 && errno == EINTR) continue;
      break;  // a full disk: the lines are dropped rather than held forever
    }
    done += static_cast<size_t>(n);
  }
  pending_.clear();
}

void AccessLog::flush() {
  std::lock_guard lock(mutex_);
  write_pending();
}

bool AccessLog::reopen() {
  std::lock_guard lock(mutex_);
  if (target_ == "-" || target_.empty()) return true;
  FILE* fresh = std::fopen(target_.c_str(), "ae");
  if (!fresh) return false;
  write_pending();
  if (file_) std::fclose(file_);
  file_ = fresh;
  return true;
}

AccessLog::~AccessLog() {
  std::lock_guard lock(mutex_);
  write_pending();
  if (file_ && file_ != stdout) std::fclose(file_);
}

}  // namespace egressd
