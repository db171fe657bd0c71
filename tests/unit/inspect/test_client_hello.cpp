#include <doctest/doctest.h>

#include <string>

#include "../../support/capture.hpp"
#include "../../support/tls_builder.hpp"
#include "inspect/client_hello.hpp"

using namespace egressd;
using namespace egressd::testing;

namespace {

struct Outcome {
  ParseStatus status;
  Reason reason;
  ClientHelloFacts facts;
  size_t feeds_until_final;
};

// Feeds `bytes` in pieces of `piece` bytes (0 = whole).
Outcome parse(const Bytes& bytes, size_t piece = 0, size_t max_bytes = 16384) {
  ClientHelloParser parser(max_bytes);
  size_t feeds = 0;
  if (piece == 0) piece = bytes.size() ? bytes.size() : 1;
  for (size_t offset = 0; offset < bytes.size() && parser.status() == ParseStatus::need_more;
       offset += piece) {
    parser.feed(std::span(bytes.data() + offset, std::min(piece, bytes.size() - offset)));
    ++feeds;
  }
  return Outcome{parser.status(), parser.refusal(), parser.facts(), feeds};
}

void check_same_everywhere(const Bytes& records, const char* expected_name) {
  Outcome whole = parse(records);
  REQUIRE(whole.status == ParseStatus::done);
  CHECK(whole.facts.name == expected_name);
  Bytes handshake = unframe_records(records);
  for (size_t piece : {1, 2, 3, 7, 100}) {
    Outcome split = parse(records, piece);
    CAPTURE(piece);
    CHECK(split.status == ParseStatus::done);
    CHECK(split.facts.name == whole.facts.name);
    CHECK(split.facts.alpn == whole.facts.alpn);
    CHECK(split.facts.versions == whole.facts.versions);
  }
  for (size_t record_size : {1, 5, 64, 512}) {
    CAPTURE(record_size);
    Bytes reframed = frame_records(handshake, record_size);
    for (size_t piece : {0, 1, 9}) {
      Outcome split = parse(reframed, piece);
      CHECK(split.status == ParseStatus::done);
      CHECK(split.facts.name == whole.facts.name);
      CHECK(split.facts.alpn == whole.facts.alpn);
    }
  }
}

}  // namespace

TEST_CASE(
    "Real clients: openssl s_client, curl and Python ssl hellos give the same answer in any "
    "framing") {
  struct Client {
    const char* command;
    const char* name;
    bool expect_alpn_h2;
  };
  const Client clients[] = {
      {"openssl s_client -connect 127.0.0.1:{PORT} -servername api.github.com </dev/null "
       ">/dev/null 2>&1",
       "api.github.com", false},
      {"openssl s_client -connect 127.0.0.1:{PORT} -servername Files.PythonHosted.ORG -alpn "
       "h2,http/1.1 "
       "-tls1_2 </dev/null >/dev/null 2>&1",
       "files.pythonhosted.org", true},
      {"openssl s_client -connect 127.0.0.1:{PORT} -servername a.very.deep.name.example.com "
       "-tls1_3 "
       "</dev/null >/dev/null 2>&1",
       "a.very.deep.name.example.com", false},
      {"curl -sk --max-time 3 --resolve pypi.org:{PORT}:127.0.0.1 https://pypi.org:{PORT}/ "
       ">/dev/null 2>&1",
       "pypi.org", true},
      {"python3 -c \"import socket,ssl; c=ssl.create_default_context(); c.check_hostname=False; "
       "c.verify_mode=ssl.CERT_NONE; c.set_alpn_protocols(['http/1.1']); "
       "s=c.wrap_socket(socket.create_connection(('127.0.0.1',{PORT})),server_hostname='registry."
       "npmjs.org')\" "
       ">/dev/null 2>&1",
       "registry.npmjs.org", false},
  };
  for (const Client& client : clients) {
    CAPTURE(client.command);
    Bytes hello = capture_first_bytes(client.command);
    REQUIRE_MESSAGE(hello.size() > 50, "no hello captured from the client");
    check_same_everywhere(hello, client.name);
    Outcome whole = parse(hello);
    if (client.expect_alpn_h2) CHECK(whole.facts.alpn.front() == "h2");
    CHECK_FALSE(whole.facts.ech);
  }
}

TEST_CASE("A post-quantum-sized hello (~1.8 KB over several segments) is normal") {
  HelloSpec spec = hello_with_sni("big.example.org");
  spec.extensions.push_back({51, Bytes(1216 + 6, 0x42)});  // an X25519MLKEM768-sized key_share
  spec.extensions.push_back({21, Bytes(400, 0)});          // padding
  Bytes records = frame_records(build_handshake(spec));
  CHECK(records.size() > 1700);
  check_same_everywhere(records, "big.example.org");
}

TEST_CASE("Facts: ALPN, versions, ECH, GREASE ignored") {
  HelloSpec spec = hello_with_sni("ech.example");
  spec.extensions.insert(spec.extensions.begin(), {0x0a0a, Bytes{}});  // GREASE extension
  spec.extensions.push_back({0x1a1a, Bytes{0}});                       // another GREASE
  spec.extensions.push_back({0xfe0d, Bytes{0, 1, 2, 3}});
  spec.extensions[2].second = alpn_extension_data({"\x3a\x3a", "h2"});
  spec.extensions[3].second = Bytes{6, 0x2a, 0x2a, 0x03, 0x04, 0x03, 0x03};
  Outcome o = parse(frame_records(build_handshake(spec)));
  REQUIRE(o.status == ParseStatus::done);
  CHECK(o.facts.name == "ech.example");
  CHECK(o.facts.ech);
  CHECK(o.facts.alpn == std::vector<std::string>{"h2"});
  CHECK(o.facts.versions == std::vector<uint16_t>{0x0304, 0x0303});
}

TEST_CASE("Refusals, each with its reason") {
  auto refused_with = [](const Bytes& bytes, Reason reason, size_t max = 16384) {
    for (size_t piece : {0, 1}) {
      Outcome o = parse(bytes, piece, max);
      CAPTURE(piece);
      CHECK(o.status == ParseStatus::refused);
      CHECK(to_string(o.reason) == to_string(reason));
    }
  };
  auto with_sni_data = [](Bytes data) {
    HelloSpec spec;
    spec.extensions.push_back({0, std::move(data)});
    return frame_records(build_handshake(spec));
  };
  auto with_name = [&](const std::string& name) { return with_sni_data(sni_extension_data(name)); };

  SUBCASE("no SNI") {
    HelloSpec spec;
    spec.extensions.push_back({16, alpn_extension_data({"h2"})});
    refused_with(frame_records(build_handshake(spec)), Reason::no_sni);
    HelloSpec bare;
    bare.omit_extensions_block = true;
    refused_with(frame_records(build_handshake(bare)), Reason::no_sni);
    refused_with(with_sni_data(Bytes{0, 0}), Reason::no_sni);  // empty list
    refused_with(with_name(""), Reason::no_sni);               // empty name
  }
  SUBCASE("strict SNI") {
    refused_with(with_name(std::string("a\0b.example", 11)), Reason::malformed_tls);
    refused_with(with_name("a b.example"), Reason::malformed_tls);
    refused_with(with_name("under_score.example"), Reason::malformed_tls);
    refused_with(with_name("198.18.0.1"), Reason::malformed_tls);
    refused_with(with_name("fd00::1"), Reason::malformed_tls);
    refused_with(with_name(std::string(64, 'a') + ".example"), Reason::malformed_tls);
    std::string long_name;
    while (long_name.size() < 260) long_name += "abcdefgh.";
    refused_with(with_name(long_name + "com"), Reason::malformed_tls);
    refused_with(with_name("caf\xc3\xa9.example"), Reason::malformed_tls);
    refused_with(with_sni_data(sni_extension_data("a.example", 1)),
                 Reason::malformed_tls);          // not host_name
    Bytes two = sni_extension_data("a.example");  // two entries in one list
    Bytes second = sni_extension_data("b.example");
    two.insert(two.end(), second.begin() + 2, second.end());
    size_t list = two.size() - 2;
    two[0] = static_cast<uint8_t>(list >> 8), two[1] = static_cast<uint8_t>(list);
    refused_with(with_sni_data(two), Reason::malformed_tls);
    Bytes trailing = sni_extension_data("a.example");
    trailing.push_back(0);  // byte after the list
    refused_with(with_sni_data(trailing), Reason::malformed_tls);
    HelloSpec duplicated = hello_with_sni("a.example");
    duplicated.extensions.push_back({0, sni_extension_data("b.example")});
    refused_with(frame_records(build_handshake(duplicated)), Reason::malformed_tls);
    Bytes overlong = sni_extension_data("a.example");
    overlong[4] = 200;  // name length past the extension
    refused_with(with_sni_data(overlong), Reason::malformed_tls);
  }
  SUBCASE("record layer") {
    Bytes good = frame_records(build_handshake(hello_with_sni("a.example")));
    refused_with(Bytes{'G', 'E', 'T', ' ', '/', ' ', 'H'}, Reason::not_tls);
    refused_with(Bytes{'P', 'R', 'I', ' ', '*'}, Reason::not_tls);
    Bytes sslv2{0x80, 0x2e, 0x01, 0x03, 0x01, 0x00, 0x15};
    refused_with(sslv2, Reason::malformed_tls);
    Bytes bad_version = good;
    bad_version[2] = 0x04;  // 0x0304 is not a valid first record version
    refused_with(bad_version, Reason::not_tls);
    Bytes alert_first = good;
    alert_first[0] = 21;
    refused_with(alert_first, Reason::not_tls);
    Bytes handshake = build_handshake(hello_with_sni("a.example"));
    Bytes split = frame_records(handshake, 20);
    split[25] = 23;  // second record is application data
    refused_with(split, Reason::malformed_tls);
    Bytes empty_record{22, 3, 1, 0, 0};
    refused_with(empty_record, Reason::malformed_tls);
    Bytes server_hello = good;
    server_hello[5] = 2;
    refused_with(server_hello, Reason::malformed_tls);
    Bytes truncated_body = build_handshake(hello_with_sni("a.example"));
    truncated_body[3] -= 10;  // handshake length shorter than the extensions say
    refused_with(frame_records(truncated_body), Reason::malformed_tls);
    HelloSpec bad_ciphers = hello_with_sni("a.example");
    bad_ciphers.cipher_bytes = 3;
    refused_with(frame_records(build_handshake(bad_ciphers)), Reason::malformed_tls);
    HelloSpec long_session = hello_with_sni("a.example");
    long_session.session_id_length = 33;
    refused_with(frame_records(build_handshake(long_session)), Reason::malformed_tls);
  }
  SUBCASE("size cap") {
    HelloSpec huge = hello_with_sni("a.example");
    huge.extensions.push_back({21, Bytes(20000, 0)});
    Bytes handshake = build_handshake(huge);
    refused_with(frame_records(handshake), Reason::hello_too_large);
    HelloSpec medium = hello_with_sni("a.example");
    medium.extensions.push_back({21, Bytes(3000, 0)});
    Bytes records = frame_records(build_handshake(medium));
    refused_with(records, Reason::hello_too_large, 2048);
    CHECK(parse(records, 0, 16384).status == ParseStatus::done);
  }
}

TEST_CASE("Bytes after the hello are left to the session; need_more until complete") {
  Bytes records = frame_records(build_handshake(hello_with_sni("a.example")));
  size_t hello_size = records.size();
  records.insert(records.end(), {23, 3, 3, 0, 1, 0xff});  // early data
  ClientHelloParser parser;
  CHECK(parser.feed(std::span(records.data(), hello_size - 1)) == ParseStatus::need_more);
  CHECK(parser.feed(std::span(records.data() + hello_size - 1, records.size() - hello_size + 1)) ==
        ParseStatus::done);
  CHECK(parser.bytes_seen() == hello_size);
  CHECK(parser.facts().name == "a.example");
}
