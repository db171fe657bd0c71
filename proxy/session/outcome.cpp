#include <chrono>

#include "session/context.hpp"

namespace egressd {

namespace {

void note_denial(DenialLog& denials, const AccessRecord& record, const IpAddress& destination) {
  if (record.verdict == Verdict::deny || record.would_deny) {  // unknown sources under ""
    denials.record(record.sandbox,
                   Denial{std::chrono::system_clock::now(), destination, record.port, record.name,
                          record.reason, record.rule, record.would_deny, record.src, record.sandbox,
                          record.proto, record.qtype});
  }
}

}  // namespace

void OutcomeSink::finished(const AccessRecord& record, const IpAddress& destination) {
  metrics_.connection_finished(record.reason);
  access_log_.write(record);
  note_denial(denials_, record, destination);
}

void OutcomeSink::dns_finished(const AccessRecord& record, const IpAddress& destination,
                               double seconds) {
  metrics_.dns_request(record.verdict, record.reason, seconds);
  access_log_.write(record);
  note_denial(denials_, record, destination);
}

}  // namespace egressd
