#pragma once
// Builds TLS ClientHello bytes for tests, fuzz seeds and benchmarks.
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace egressd::testing {

using Bytes = std::vector<uint8_t>;

inline void put16(Bytes& out, size_t value) {
  out.push_back(static_cast<uint8_t>(value >> 8));
  out.push_back(static_cast<uint8_t>(value));
}

inline Bytes sni_extension_data(const std::string& name, uint8_t name_type = 0) {
  Bytes data;
  put16(data, name.size() + 3);
  data.push_back(name_type);
  put16(data, name.size());
  data.insert(data.end(), name.begin(), name.end());
  return data;
}

inline Bytes alpn_extension_data(const std::vector<std::string>& protocols) {
  Bytes list;
  for (const auto& p : protocols) {
    list.push_back(static_cast<uint8_t>(p.size()));
    list.insert(list.end(), p.begin(), p.end());
  }
  Bytes data;
  put16(data, list.size());
  data.insert(data.end(), list.begin(), list.end());
  return data;
}

struct HelloSpec {
  uint16_t legacy_version = 0x0303;
  size_t session_id_length = 32;
  size_t cipher_bytes = 4;
  std::vector<std::pair<uint16_t, Bytes>> extensions;
  bool omit_extensions_block = false;
};

inline HelloSpec hello_with_sni(const std::string& name) {
  HelloSpec spec;
  spec.extensions.push_back({0, sni_extension_data(name)});
  spec.extensions.push_back({16, alpn_extension_data({"h2", "http/1.1"})});
  spec.extensions.push_back({43, Bytes{4, 0x03, 0x04, 0x03, 0x03}});
  return spec;
}

// The handshake message: uint8 type 1, uint24 length, ClientHello body.
inline Bytes build_handshake(const HelloSpec& spec) {
  Bytes body;
  put16(body, spec.legacy_version);
  for (int i = 0; i < 32; ++i) body.push_back(static_cast<uint8_t>(i));
  body.push_back(static_cast<uint8_t>(spec.session_id_length));
  for (size_t i = 0; i < spec.session_id_length; ++i) body.push_back(0xaa);
  put16(body, spec.cipher_bytes);
  for (size_t i = 0; i < spec.cipher_bytes; ++i) body.push_back(i % 2 ? 0x01 : 0x13);
  body.push_back(1);
  body.push_back(0);
  if (!spec.omit_extensions_block) {
    Bytes extensions;
    for (const auto& [type, data] : spec.extensions) {
      put16(extensions, type);
      put16(extensions, data.size());
      extensions.insert(extensions.end(), data.begin(), data.end());
    }
    put16(body, extensions.size());
    body.insert(body.end(), extensions.begin(), extensions.end());
  }
  Bytes message{1, static_cast<uint8_t>(body.size() >> 16), static_cast<uint8_t>(body.size() >> 8),
                static_cast<uint8_t>(body.size())};
  message.insert(message.end(), body.begin(), body.end());
  return message;
}

// Wraps handshake bytes into TLS records of at most `record_size` bytes each.
inline Bytes frame_records(const Bytes& handshake, size_t record_size = 16384,
                           uint16_t version = 0x0301) {
  Bytes out;
  for (size_t offset = 0; offset < handshake.size(); offset += record_size) {
    size_t n = std::min(record_size, handshake.size() - offset);
    out.push_back(22);
    put16(out, version);
    put16(out, n);
    out.insert(out.end(), handshake.begin() + offset, handshake.begin() + offset + n);
  }
  return out;
}

// Takes the handshake message out of whole records (test fixtures captured from clients).
inline Bytes unframe_records(const Bytes& records) {
  Bytes handshake;
  for (size_t offset = 0; offset + 5 <= records.size();) {
    size_t n = size_t(records[offset + 3]) << 8 | records[offset + 4];
    if (offset + 5 + n > records.size()) break;
    handshake.insert(handshake.end(), records.begin() + offset + 5,
                     records.begin() + offset + 5 + n);
    offset += 5 + n;
  }
  return handshake;
}

}  // namespace egressd::testing
