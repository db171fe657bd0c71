#include "inspect/client_hello.hpp"

#include <bitset>

#include "core/hostname.hpp"

namespace egressd {
namespace {

// Record layer (RFC 8446 5.1):       Handshake (4.1.2):
//   uint8  type = 22 (handshake)       uint8  msg_type = 1 (client_hello)
//   uint16 legacy_record_version       uint24 length
//   uint16 length (<= 2^14)            ClientHello body
//   opaque fragment[length]
constexpr uint8_t kHandshake = 22;
constexpr uint8_t kClientHello = 1;
constexpr size_t kMaxRecord = 1 << 14;

constexpr uint16_t kServerName = 0;
constexpr uint16_t kAlpn = 16;
constexpr uint16_t kSupportedVersions = 43;
constexpr uint16_t kEncryptedClientHello = 0xfe0d;

bool is_grease(uint16_t value) {
  return (value & 0x0f0f) == 0x0a0a && (value >> 8) == (value & 0xff);
}

// A bounds-checked reader: every length is checked before it is read.
class Reader {
 public:
  Reader(const uint8_t* data, size_t size) : data_(data), size_(size) {}
  bool u8(uint8_t& out) {
    if (size_ < 1) return false;
    out = data_[0];
    advance(1);
    return true;
  }
  bool u16(uint16_t& out) {
    if (size_ < 2) return false;
    out = static_cast<uint16_t>(data_[0] << 8 | data_[1]);
    advance(2);
    return true;
  }
  bool bytes(size_t n, Reader& out) {
    if (size_ < n) return false;
    out = Reader(data_, n);
    advance(n);
    return true;
  }
  bool skip(size_t n) {
    if (size_ < n) return false;
    advance(n);
    return true;
  }
  // A vector with an 8- or 16-bit length prefix.
  bool vector8(Reader& out) {
    uint8_t n;
    return u8(n) && bytes(n, out);
  }
  bool vector16(Reader& out) {
    uint16_t n;
    return u16(n) && bytes(n, out);
  }
  size_t size() const { return size_; }
  const uint8_t* data() const { return data_; }

 private:
  void advance(size_t n) {
    data_ += n;
    size_ -= n;
  }
  const uint8_t* data_;
  size_t size_;
};

}  // namespace

ParseStatus ClientHelloParser::refuse(Reason reason) {
  refusal_ = reason;
  status_ = ParseStatus::refused;
  return status_;
}

ParseStatus ClientHelloParser::feed(std::span<const uint8_t> bytes) {
  size_t i = 0;
  while (status_ == ParseStatus::need_more && i < bytes.size()) {
    if (consumed_ >= max_bytes_) return refuse(Reason::hello_too_large);
    if (record_remaining_ == 0) {
      header_[header_filled_++] = bytes[i++];
      ++consumed_;
      if (header_filled_ == 1 && header_[0] != kHandshake) {
        // First byte of the connection: SSLv2-compatible hellos (high bit set) are TLS-ish
        // but refused as malformed; anything else is not TLS at all.
        if (records_ == 0)
          return refuse((header_[0] & 0x80) ? Reason::malformed_tls : Reason::not_tls);
        return refuse(Reason::malformed_tls);  // content type changed before the hello ended
      }
      if (header_filled_ == 3 && (header_[1] != 3 || (records_ == 0 && header_[2] > 3))) {
        return refuse(records_ == 0 ? Reason::not_tls : Reason::malformed_tls);
      }
      if (header_filled_ < 5) continue;
      record_remaining_ = static_cast<size_t>(header_[3] << 8 | header_[4]);
      header_filled_ = 0;
      ++records_;
      if (record_remaining_ == 0 || record_remaining_ > kMaxRecord)
        return refuse(Reason::malformed_tls);
      continue;
    }
    size_t take = std::min(record_remaining_, bytes.size() - i);
    take = std::min(take, max_bytes_ - consumed_);
    handshake_.insert(handshake_.end(), bytes.data() + i, bytes.data() + i + take);
    i += take;
    consumed_ += take;
    record_remaining_ -= take;
    if (handshake_.size() >= 4) {
      if (handshake_[0] != kClientHello) return refuse(Reason::malformed_tls);
      size_t length = size_t(handshake_[1]) << 16 | size_t(handshake_[2]) << 8 | handshake_[3];
      // Record headers add at least 5 bytes per 2^14; refuse as soon as the cap is certain.
      if (4 + length + 5 > max_bytes_) return refuse(Reason::hello_too_large);
      if (handshake_.size() >= 4 + length) {
        // The hello must end exactly at the end of a record: no other message may share it.
        if (handshake_.size() != 4 + length || record_remaining_ != 0)
          return refuse(Reason::malformed_tls);
        return parse_hello();
      }
    }
  }
  return status_;
}

ParseStatus ClientHelloParser::parse_hello() {
  // ClientHello (RFC 8446 4.1.2):
  //   uint16 legacy_version; opaque random[32]; opaque legacy_session_id<0..32>;
  //   CipherSuite cipher_suites<2..2^16-2>; opaque legacy_compression_methods<1..2^8-1>;
  //   Extension extensions<8..2^16-1>   (each: uint16 type, opaque data<0..2^16-1>)
  Reader hello(handshake_.data() + 4, handshake_.size() - 4);
  Reader session_id(nullptr, 0), ciphers(nullptr, 0), compression(nullptr, 0),
      extensions(nullptr, 0);
  if (!hello.u16(facts_.legacy_version) || !hello.skip(32) || !hello.vector8(session_id) ||
      session_id.size() > 32 || !hello.vector16(ciphers) || ciphers.size() < 2 ||
      ciphers.size() % 2 || !hello.vector8(compression) || compression.size() < 1) {
    return refuse(Reason::malformed_tls);
  }
  if (facts_.legacy_version < 0x0300 || facts_.legacy_version > 0x0303)
    return refuse(Reason::malformed_tls);
  if (hello.size() == 0) return refuse(Reason::no_sni);  // no extensions at all
  if (!hello.vector16(extensions) || hello.size() != 0) return refuse(Reason::malformed_tls);

  std::bitset<65536> seen;
  bool have_name = false;
  while (extensions.size() > 0) {
    uint16_t type;
    Reader body(nullptr, 0);
    if (!extensions.u16(type) || !extensions.vector16(body)) return refuse(Reason::malformed_tls);
    if (is_grease(type)) continue;
    if (seen.test(type)) return refuse(Reason::malformed_tls);  // RFC 8446 4.2: one of each
    seen.set(type);
    if (type == kServerName) {
      // ServerNameList: uint16 length, then exactly one entry: uint8 type 0, opaque name<1..2^16-1>
      Reader list(nullptr, 0), name(nullptr, 0);
      uint8_t name_type;
      if (!body.vector16(list) || body.size() != 0) return refuse(Reason::malformed_tls);
      if (list.size() == 0) return refuse(Reason::no_sni);
      if (!list.u8(name_type) || name_type != 0 || !list.vector16(name) || list.size() != 0) {
        return refuse(Reason::malformed_tls);
      }
      if (name.size() == 0) return refuse(Reason::no_sni);
      std::string_view text(reinterpret_cast<const char*>(name.data()), name.size());
      auto canonical = Hostname::parse(text);  // refuses NUL, non-LDH, IP literals, long names
      if (std::holds_alternative<std::string>(canonical)) return refuse(Reason::malformed_tls);
      facts_.name = std::get<Hostname>(canonical).str();
      have_name = true;
    } else if (type == kAlpn) {
      // ProtocolNameList: uint16 length, entries opaque<1..2^8-1>
      Reader list(nullptr, 0);
      if (!body.vector16(list) || body.size() != 0 || list.size() == 0)
        return refuse(Reason::malformed_tls);
      while (list.size() > 0) {
        Reader protocol(nullptr, 0);
        if (!list.vector8(protocol) || protocol.size() == 0) return refuse(Reason::malformed_tls);
        if (protocol.size() == 2 &&
            is_grease(static_cast<uint16_t>(protocol.data()[0] << 8 | protocol.data()[1])))
          continue;
        facts_.alpn.emplace_back(reinterpret_cast<const char*>(protocol.data()), protocol.size());
      }
    } else if (type == kSupportedVersions) {
      Reader list(nullptr, 0);
      if (!body.vector8(list) || body.size() != 0 || list.size() < 2 || list.size() % 2) {
        return refuse(Reason::malformed_tls);
      }
      uint16_t version;
      while (list.u16(version)) {
        if (!is_grease(version)) facts_.versions.push_back(version);
      }
    } else if (type == kEncryptedClientHello) {
      facts_.ech = true;
    }
  }
  if (!have_name) return refuse(Reason::no_sni);
  status_ = ParseStatus::done;
  return status_;
}

}  // namespace egressd
