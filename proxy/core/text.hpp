#pragma once
// Small text helpers for the JSON lines egressd writes by hand (the access log on the data
// path, its own log lines): a JSON string literal, and a UTC timestamp with milliseconds.
#include <chrono>
#include <string>
#include <string_view>

namespace egressd {

// Appends `text` as a JSON string literal: quotes, backslashes and control bytes escaped, so
// a line can never be broken.
void append_json_string(std::string& out, std::string_view text);
// "2026-12-02T03:41:07.412Z"
std::string utc_timestamp(std::chrono::system_clock::time_point time);

}  // namespace egressd
