#pragma once
// Incremental TLS ClientHello parser: fed the first bytes of a connection as they arrive,
// it reassembles the handshake message across TCP segments and TLS records and extracts the
// SNI strictly. Pure: no I/O, no logging; memory bounded by max_bytes (the reassembly buffer).
#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "core/reason.hpp"
#include "inspect/parse_status.hpp"

namespace egressd {

struct ClientHelloFacts {
  std::string name;                // canonical SNI (the outer SNI when ECH is offered)
  std::vector<std::string> alpn;   // in the client's order, GREASE removed
  std::vector<uint16_t> versions;  // supported_versions, GREASE removed; empty for <= TLS 1.2
  uint16_t legacy_version = 0;
  bool ech = false;  // encrypted_client_hello (0xfe0d) offered
};

class ClientHelloParser {
 public:
  explicit ClientHelloParser(size_t max_bytes = 16384) : max_bytes_(max_bytes) {}

  // Feeds the next bytes; once done or refused, further calls return the same status and
  // bytes after the hello's last record are not examined (they are the session's to relay).
  ParseStatus feed(std::span<const uint8_t> bytes);

  ParseStatus status() const { return status_; }
  Reason refusal() const { return refusal_; }  // valid when refused
  const ClientHelloFacts& facts() const { return facts_; }
  size_t bytes_seen() const { return consumed_; }  // raw bytes up to the end of the hello

 private:
  ParseStatus refuse(Reason reason);
  ParseStatus parse_hello();

  size_t max_bytes_;
  ParseStatus status_ = ParseStatus::need_more;
  Reason refusal_ = Reason::malformed_tls;
  size_t consumed_ = 0;  // raw bytes consumed
  std::array<uint8_t, 5> header_{};
  size_t header_filled_ = 0;
  size_t record_remaining_ = 0;  // body bytes left in the current record
  size_t records_ = 0;
  std::vector<uint8_t> handshake_;  // record bodies concatenated (the reassembly buffer)
  ClientHelloFacts facts_;
};

// TLS alert record: fatal access_denied (49), as sent to refused clients. The record
// version is TLS 1.0 (0x0301), which every client accepts before the version is negotiated.
inline constexpr std::array<uint8_t, 7> kTlsAccessDeniedAlert = {0x15, 0x03, 0x01, 0x00,
                                                                 0x02, 0x02, 0x31};

}  // namespace egressd
