#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "../../support/pieces.hpp"
#include "inspect/http_request.hpp"

using namespace egressd;

namespace {

struct Run {
  std::vector<std::string> hosts;  // one per head: name, "ip:<addr>" or "-" for none
  bool refused = false;
  Reason reason = Reason::not_http;
  bool upgrade_pending = false;      // stopped at an upgrade request
  std::vector<size_t> message_ends;  // offsets right after each complete request
  bool ends_inside_head = false;
};

std::string describe(const RequestHead& head) {
  if (head.address) return "ip:" + head.address->to_string();
  return head.name.empty() ? "-" : head.name;
}

// Feeds `text` in pieces of `piece` bytes (0 = whole), collecting every head. With
// `decline_upgrades`, every upgrade request is answered "declined" and parsing goes on.
Run run(const std::string& text, size_t piece = 0, size_t max_head = 16384,
        bool decline_upgrades = false) {
  HttpRequestParser parser(max_head);
  Run result;
  testing::feed_in_pieces(
      parser, text, piece, [&](HttpRequestParser::Event event, size_t position) {
        if (event == HttpRequestParser::Event::head_complete) {
          result.hosts.push_back(describe(parser.head()));
          if (parser.inside_head()) {  // no body: the request ended with its head
            result.message_ends.push_back(position);
            if (parser.upgrade_pending()) event = HttpRequestParser::Event::upgrade_pending;
          }
        } else if (event == HttpRequestParser::Event::message_complete ||
                   event == HttpRequestParser::Event::upgrade_pending) {
          result.message_ends.push_back(position);
        }
        if (event == HttpRequestParser::Event::refused) {
          result.refused = true;
          result.reason = parser.refusal();
          return false;
        }
        if (event == HttpRequestParser::Event::upgrade_pending) {
          if (!decline_upgrades) {
            result.upgrade_pending = true;
            return false;
          }
          parser.upgrade_declined();
        }
        return true;
      });
  if (result.refused || result.upgrade_pending) return result;
  result.ends_inside_head = parser.inside_head();
  return result;
}

void same_in_any_pieces(const std::string& text, const std::vector<std::string>& hosts) {
  for (size_t piece : {0, 1, 2, 5, 13}) {
    CAPTURE(piece);
    Run r = run(text, piece);
    CHECK_FALSE(r.refused);
    CHECK(r.hosts == hosts);
  }
}

void refused(const std::string& text, Reason reason) {
  for (size_t piece : {0, 1}) {
    CAPTURE(text);
    CAPTURE(piece);
    Run r = run(text, piece);
    CHECK(r.refused);
    CHECK(to_string(r.reason) == to_string(reason));
  }
}

}  // namespace

TEST_CASE("HTTP: canonical Host of every request, in order") {
  same_in_any_pieces("GET / HTTP/1.1\r\nHost: Example.COM.\r\n\r\n", {"example.com"});
  same_in_any_pieces("GET / HTTP/1.1\r\nhost: api.example.com:8080\r\n\r\n", {"api.example.com"});
  same_in_any_pieces("GET / HTTP/1.1\r\nHOST:   spaced.example   \r\n\r\n", {"spaced.example"});
  same_in_any_pieces("GET / HTTP/1.1\r\nHost: [fd00:198::10]:80\r\n\r\n", {"ip:fd00:198::10"});
  same_in_any_pieces("GET / HTTP/1.1\r\nHost: 198.18.0.10\r\n\r\n", {"ip:198.18.0.10"});
  same_in_any_pieces("GET / HTTP/1.0\r\n\r\n", {"-"});
  same_in_any_pieces("GET http://abs.example/x HTTP/1.1\r\nHost: abs.example\r\n\r\n",
                     {"abs.example"});
  same_in_any_pieces("GET http://abs.example:80/x HTTP/1.0\r\n\r\n", {"abs.example"});
}

TEST_CASE("HTTP: pipelined requests, bodies and chunked encoding are skipped correctly") {
  std::string pipelined =
      "POST /a HTTP/1.1\r\nHost: one.example\r\nContent-Length: 11\r\n\r\nhello world"
      "POST /b HTTP/1.1\r\nHost: two.example\r\nTransfer-Encoding: chunked\r\n\r\n"
      "5\r\nHost:\r\n1b\r\nGET / HTTP/1.1\r\nHost: x.y\r\n\r\n0\r\n\r\n"
      "GET /c HTTP/1.1\r\nHost: three.example\r\n\r\n";
  same_in_any_pieces(pipelined, {"one.example", "two.example", "three.example"});
  // A body that looks like a request head is never taken for one.
  same_in_any_pieces(
      "POST / HTTP/1.1\r\nHost: a.example\r\nContent-Length: 37\r\n\r\n"
      "GET / HTTP/1.1\r\nHost: evil.example\r\n\r\n"
      "GET / HTTP/1.1\r\nHost: b.example\r\n\r\n",
      {"a.example", "b.example"});
}

TEST_CASE("HTTP: keep-alive Host switch is seen") {
  same_in_any_pieces(
      "GET / HTTP/1.1\r\nHost: allowed.example\r\n\r\nGET / HTTP/1.1\r\nHost: "
      "other.example\r\n\r\n",
      {"allowed.example", "other.example"});
}

TEST_CASE("HTTP: refusals") {
  refused("GET / HTTP/1.1\r\n\r\n", Reason::malformed_host);  // no Host in 1.1
  refused("GET / HTTP/1.1\r\nHost: a.example\r\nHost: b.example\r\n\r\n", Reason::malformed_host);
  refused("GET / HTTP/1.1\r\nHost: a.example\r\nhost: a.example\r\n\r\n", Reason::malformed_host);
  refused("GET / HTTP/1.1\r\nHost: a b.example\r\n\r\n", Reason::malformed_host);
  refused("GET / HTTP/1.1\r\nHost: a_b.example\r\n\r\n", Reason::malformed_host);
  refused("GET / HTTP/1.1\r\nHost: \r\n\r\n", Reason::malformed_host);
  refused("GET / HTTP/1.1\r\nHost: a..example\r\n\r\n", Reason::malformed_host);
  refused("GET / HTTP/1.1\r\nHost: a.example:99999\r\n\r\n", Reason::malformed_host);
  refused("GET / HTTP/1.1\r\nHost: a.example:x\r\n\r\n", Reason::malformed_host);
  refused("GET / HTTP/1.1\r\nHost: [fd00::1\r\n\r\n", Reason::malformed_host);
  refused(std::string("GET / HTTP/1.1\r\nHost: a\x01.example\r\n\r\n"), Reason::malformed_host);
  refused("GET http://other.example/ HTTP/1.1\r\nHost: a.example\r\n\r\n", Reason::malformed_host);
  refused("GET http://user@a.example/ HTTP/1.1\r\nHost: a.example\r\n\r\n", Reason::malformed_host);
  refused(
      "GET / HTTP/1.1\r\nHost: a.example\r\nContent-Length: 1\r\nTransfer-Encoding: "
      "chunked\r\n\r\n",
      Reason::malformed_host);  // request smuggling shape
  refused("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", Reason::not_http);
  refused("\x16\x03\x01\x00\x10", Reason::not_http);
  refused("SSH-2.0-OpenSSH_9.2\r\n", Reason::not_http);
  refused("GET / HTTP/2.0\r\nHost: a.example\r\n\r\n", Reason::not_http);
  refused("CONNECT a.example:443 HTTP/1.1\r\nHost: a.example:443\r\n\r\n", Reason::not_http);
  // The second request of a keep-alive connection is checked as strictly as the first.
  Run r = run("GET / HTTP/1.1\r\nHost: a.example\r\n\r\nGET / HTTP/1.1\r\n\r\n");
  CHECK(r.hosts == std::vector<std::string>{"a.example"});
  CHECK(r.refused);
  CHECK(r.reason == Reason::malformed_host);
}

TEST_CASE("HTTP: the head cap refuses endless heads without buffering them") {
  std::string big =
      "GET / HTTP/1.1\r\nHost: a.example\r\nX-Fill: " + std::string(5000, 'a') + "\r\n\r\n";
  Run capped = run(big, 0, 1024);
  CHECK(capped.refused);
  CHECK(capped.reason == Reason::malformed_host);
  Run capped_pieces = run(big, 100, 1024);
  CHECK(capped_pieces.refused);
  CHECK(run(big, 0, 16384).hosts == std::vector<std::string>{"a.example"});
  // Bodies do not count towards the head cap.
  std::string body_then_head =
      "POST / HTTP/1.1\r\nHost: a.example\r\nContent-Length: 4000\r\n\r\n" +
      std::string(4000, 'b') + "GET / HTTP/1.1\r\nHost: b.example\r\n\r\n";
  CHECK(run(body_then_head, 0, 1024).hosts == std::vector<std::string>{"a.example", "b.example"});
  CHECK(run(body_then_head, 7, 1024).hosts == std::vector<std::string>{"a.example", "b.example"});
}

TEST_CASE("HTTP: a partial head is held back; an upgrade waits for the origin's answer") {
  Run partial = run("GET / HTTP/1.1\r\nHost: a.example\r\n\r\nGET / HTT");
  CHECK(partial.hosts.size() == 1);
  CHECK(partial.ends_inside_head);
  Run body = run("POST / HTTP/1.1\r\nHost: a.example\r\nContent-Length: 10\r\n\r\nabc");
  CHECK_FALSE(body.ends_inside_head);
  Run upgrade = run(
      "GET /ws HTTP/1.1\r\nHost: ws.example\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"
      "\x81\x85"
      "binary-frames");
  CHECK(upgrade.hosts == std::vector<std::string>{"ws.example"});
  CHECK(upgrade.upgrade_pending);
  // Declined (the origin answered 200, not 101): the bytes after it are the next request and
  // are judged like any other, whatever the Upgrade token was.
  for (const char* token : {"websocket", "h2c", "foo"}) {
    CAPTURE(token);
    std::string smuggle =
        std::string("GET / HTTP/1.1\r\nHost: ok.example\r\nConnection: Upgrade\r\n") +
        "Upgrade: " + token + "\r\n\r\nGET / HTTP/1.1\r\nHost: evil.example\r\n\r\n";
    for (size_t piece : {0, 1, 7}) {
      CAPTURE(piece);
      Run stopped = run(smuggle, piece);
      CHECK(stopped.upgrade_pending);
      CHECK(stopped.hosts == std::vector<std::string>{"ok.example"});
      Run declined = run(smuggle, piece, 16384, true);
      CHECK_FALSE(declined.refused);
      CHECK(declined.hosts == std::vector<std::string>{"ok.example", "evil.example"});
    }
  }
}

TEST_CASE("HTTP: every request ends with message_complete right after its last body byte") {
  // The session relays bytes up to a message end at once: a body's last bytes never wait for
  // the next request (curl -d against an origin that reads the body before answering).
  std::string first = "POST /a HTTP/1.1\r\nHost: a.example\r\nContent-Length: 5\r\n\r\nhello";
  std::string chunked =
      "POST /b HTTP/1.1\r\nHost: a.example\r\nTransfer-Encoding: chunked\r\n\r\n"
      "5\r\nhello\r\n0\r\n\r\n";
  std::string expect =
      "PUT /c HTTP/1.1\r\nHost: a.example\r\nExpect: 100-continue\r\n"
      "Content-Length: 3\r\n\r\nabc";
  std::string get = "GET /d HTTP/1.1\r\nHost: b.example\r\n\r\n";
  std::string all = first + chunked + expect + get;
  std::vector<size_t> ends{first.size(), first.size() + chunked.size(),
                           first.size() + chunked.size() + expect.size(), all.size()};
  for (size_t piece : {0, 1, 3, 16}) {
    CAPTURE(piece);
    Run r = run(all, piece);
    CHECK_FALSE(r.refused);
    CHECK(r.hosts == std::vector<std::string>{"a.example", "a.example", "a.example", "b.example"});
    CHECK(r.message_ends == ends);
    CHECK(r.ends_inside_head);
  }
}
