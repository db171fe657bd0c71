#pragma once
// egressd's own log lines (not the access log): "egressd: message" on stderr, or with
// --log-format json one object per line ({"ts","level","msg"}) for log pipelines.
#include <string_view>

namespace egressd {

enum class LogFormat : bool { text, json };
void set_log_format(LogFormat format);
void log_line(std::string_view message);

}  // namespace egressd
