#include <doctest/doctest.h>

#include <cstring>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "inspect/http_gate.hpp"
#include "inspect/request_edit.hpp"

using namespace egressd;

namespace {

void give(HttpGate& gate, const std::string& bytes) {
  size_t at = 0;
  while (at < bytes.size()) {  // the gate grows its buffer while it holds a body
    auto space = gate.free_space();
    size_t n = std::min(space.size(), bytes.size() - at);
    REQUIRE(n > 0);
    std::memcpy(space.data(), bytes.data() + at, n);
    gate.received(n);
    at += n;
    if (at < bytes.size()) REQUIRE(gate.next() == HttpGate::Step::read_more);
  }
}

std::string drain(HttpGate& gate) {
  std::string out;
  while (gate.next() == HttpGate::Step::forward) {
    auto bytes = gate.forwardable();
    out.append(reinterpret_cast<const char*>(bytes.data()), bytes.size());
    gate.forwarded();
  }
  return out;
}

RequestEdit edit_of(std::vector<std::pair<std::string, std::string>> headers,
                    std::vector<std::pair<std::string, std::string>> body = {}) {
  return RequestEdit{std::move(headers), std::move(body)};
}

}  // namespace

// Parses one request head and returns it rewritten with `edit`.
std::string reparsed(const std::string& head, const RequestEdit& edit,
                     std::optional<size_t> length = std::nullopt) {
  HttpRequestParser parser;
  size_t used = 0;
  auto event = parser.feed({reinterpret_cast<const uint8_t*>(head.data()), head.size()}, used);
  REQUIRE(event == HttpRequestParser::Event::head_complete);
  return edit_head(parser.parsed_head(), edit, length);
}

TEST_CASE("edit_head: written from the parsed head; edited headers replace same-named ones") {
  std::string head =
      "\r\nGET /x?q=1 HTTP/1.1\r\nHost: a.example\r\nauthorization: Bearer fake\r\n"
      "X-Other:  1 \r\nAUTHORIZATION: again\r\nAccept: */*\r\n\r\n";
  CHECK(reparsed(head, edit_of({{"Authorization", "Bearer real"}})) ==
        "GET /x?q=1 HTTP/1.1\r\nHost: a.example\r\nX-Other: 1\r\nAccept: */*\r\n"
        "Authorization: Bearer real\r\n\r\n");
  CHECK(reparsed("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n", edit_of({}),
                 12) == "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 12\r\n\r\n");
  CHECK(reparsed("GET / HTTP/1.0\r\nX-Empty:\r\n\r\n", edit_of({{"A", "b"}})) ==
        "GET / HTTP/1.0\r\nX-Empty: \r\nA: b\r\n\r\n");
}

TEST_CASE("edit_json_body: top-level fields set; not an object: untouched") {
  RequestEdit edit = edit_of({}, {{"api_key", "sk\"1"}});
  CHECK(nlohmann::json::parse(*edit_json_body(R"({"a":[1,{"b":2}],"api_key":"fake"})", edit)) ==
        nlohmann::json::parse(R"({"a":[1,{"b":2}],"api_key":"sk\"1"})"));
  CHECK_FALSE(edit_json_body("[1,2]", edit));
  CHECK_FALSE(edit_json_body("not json", edit));
  CHECK_FALSE(edit_json_body("", edit));
}

TEST_CASE("HttpGate edits: heads of every pipelined request, bodies held only for JSON edits") {
  HttpGate gate(4096);
  RequestEdit headers = edit_of({{"Authorization", "Bearer real"}});
  give(gate,
       "GET /1 HTTP/1.1\r\nHost: a.example\r\nAuthorization: fake\r\n\r\n"
       "POST /2 HTTP/1.1\r\nHost: a.example\r\nContent-Length: 3\r\n\r\nabc");
  // The second head is parsed before the first is forwarded (it has no body): each head is
  // edited where it stands.
  REQUIRE(gate.next() == HttpGate::Step::decide);
  gate.allow(&headers);
  REQUIRE(gate.next() == HttpGate::Step::decide);
  CHECK(gate.head().name == "a.example");
  gate.allow(&headers);
  CHECK(drain(gate) ==
        "GET /1 HTTP/1.1\r\nHost: a.example\r\nAuthorization: Bearer real\r\n\r\n"
        "POST /2 HTTP/1.1\r\nHost: a.example\r\nContent-Length: 3\r\nAuthorization: Bearer "
        "real\r\n\r\nabc");

  // A chunked JSON body is held, edited, and sent with a Content-Length.
  RequestEdit body = edit_of({{"X-A", "1"}}, {{"api_key", "sk"}});
  HttpGate held(4096);
  give(held,
       "POST /j HTTP/1.1\r\nHost: a.example\r\nContent-Type: application/json\r\n"
       "Transfer-Encoding: chunked\r\n\r\n5\r\n{\"n\":\r\n");
  REQUIRE(held.next() == HttpGate::Step::decide);
  held.allow(&body);
  CHECK(held.next() == HttpGate::Step::read_more);  // nothing goes before the body has ended
  give(held, "2\r\n1}\r\n0\r\n\r\n");
  std::string out = drain(held);
  std::string expected_body = R"({"n":1,"api_key":"sk"})";
  CHECK(out ==
        "POST /j HTTP/1.1\r\nHost: a.example\r\nContent-Type: application/json\r\nX-A: "
        "1\r\nContent-Length: " +
            std::to_string(expected_body.size()) + "\r\n\r\n" + expected_body);

  // Not JSON, or a client waiting for 100-continue: the body goes as it arrives.
  HttpGate text(4096);
  give(text, "POST / HTTP/1.1\r\nHost: a.example\r\nContent-Length: 4\r\n\r\nab");
  REQUIRE(text.next() == HttpGate::Step::decide);
  text.allow(&body);
  CHECK(drain(text).ends_with("\r\n\r\nab"));
  HttpGate expect(4096);
  give(expect,
       "POST / HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\nExpect: 100-continue\r\n"
       "Content-Length: 2\r\n\r\n");
  REQUIRE(expect.next() == HttpGate::Step::decide);
  expect.allow(&body);
  CHECK(drain(expect).find("X-A: 1") != std::string::npos);
}

TEST_CASE("HttpGate edits: a body too large to hold goes unedited, headers still edited") {
  HttpGate gate(4096);
  RequestEdit body = edit_of({{"X-A", "1"}}, {{"k", "v"}});
  size_t size = HttpGate::kMaxHeldBody + 10000;
  std::string head =
      "POST / HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\nContent-Length: " +
      std::to_string(size) + "\r\n\r\n";
  give(gate, head);
  REQUIRE(gate.next() == HttpGate::Step::decide);
  gate.allow(&body);
  std::string sent;
  std::string chunk(8192, 'x');
  size_t given = 0;
  while (given < size) {
    auto space = gate.free_space();
    size_t n = std::min({space.size(), chunk.size(), size - given});
    std::memcpy(space.data(), chunk.data(), n);
    gate.received(n);
    given += n;
    sent += drain(gate);
    CHECK(gate.free_space().size() > 0);
  }
  sent += drain(gate);
  CHECK(sent.starts_with("POST / HTTP/1.1\r\nHost: a\r\n"));
  CHECK(sent.find("X-A: 1\r\n") != std::string::npos);
  CHECK(sent.find("\"k\"") == std::string::npos);
  CHECK(sent.size() == reparsed(head, body).size() + size);
}
