#include <chrono>

#include "session/context.hpp"

namespace egressd {

void OutcomeSink::finished(const AccessRecord& record, const IpAddress& destination) {
  metrics_.connection_finished(record.reason);
  access_log_.write(record);
  if (record.verdict == Verdict::deny || record.would_deny) {  // unknown sources under ""
    denials_.record(record.sandbox,
                    Denial{std::chrono::system_clock::now(), destination, record.port, record.name,
                           record.reason, record.rule, record.would_deny, record.src});
  }
}

}  // namespace egressd
