#include "core/log.hpp"

#include <atomic>
#include <chrono>
#include <cstdio>
#include <string>

#include "core/text.hpp"

namespace egressd {
namespace {

std::atomic<LogFormat> g_format{LogFormat::text};

}  // namespace

void set_log_format(LogFormat format) {
  g_format.store(format);
}

void log_line(std::string_view message) {
  std::string line;
  if (g_format.load() == LogFormat::json) {
    line = "{\"ts\":";
    append_json_string(line, utc_timestamp(std::chrono::system_clock::now()));
    line += ",\"level\":\"info\",\"msg\":";
    append_json_string(line, message);
    line += "}\n";
  } else {
    line = "egressd: " + std::string(message) + "\n";
  }
  std::fwrite(line.data(), 1, line.size(), stderr);  // one write per line: lines never interleave
  std::fflush(stderr);
}

}  // namespace egressd
