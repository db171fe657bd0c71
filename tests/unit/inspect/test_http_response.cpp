#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "../../support/pieces.hpp"
#include "inspect/http_response.hpp"

using namespace egressd;

namespace {

struct Run {
  std::vector<std::string> events;  // "answered@N", "switched@N", "malformed"
};

Run run(HttpResponseParser& parser, const std::string& text, size_t piece) {
  Run result;
  testing::feed_in_pieces(parser, text, piece, [&](HttpResponseParser::Event event, size_t at) {
    if (event == HttpResponseParser::Event::answered)
      result.events.push_back("answered@" + std::to_string(at));
    if (event == HttpResponseParser::Event::switched)
      result.events.push_back("switched@" + std::to_string(at));
    if (event == HttpResponseParser::Event::malformed) result.events.push_back("malformed");
    return event != HttpResponseParser::Event::switched &&
           event != HttpResponseParser::Event::malformed;
  });
  return result;
}

}  // namespace

TEST_CASE("HTTP responses: each final answer is counted; 1xx interim; HEAD has no body") {
  std::string r1 = "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello";
  std::string r2 = "HTTP/1.1 200 OK\r\nContent-Length: 12\r\n\r\n";  // answer to HEAD: no body
  std::string r3 = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n";
  std::string all = r1 + r2 + r3;
  for (size_t piece : {0, 1, 4, 9}) {
    CAPTURE(piece);
    HttpResponseParser parser;
    parser.request_sent(false, false);
    parser.request_sent(true, false);
    parser.request_sent(false, false);
    Run r = run(parser, all, piece);
    CHECK(r.events == std::vector<std::string>{"answered@" + std::to_string(r1.size()),
                                               "answered@" + std::to_string(r1.size() + r2.size()),
                                               "answered@" + std::to_string(all.size())});
    CHECK(parser.outstanding() == 0);
    CHECK(parser.between_messages());
  }
}

TEST_CASE("HTTP responses: only a 101 to an upgrade request switches") {
  std::string switching =
      "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n";
  for (size_t piece : {0, 1, 7}) {
    CAPTURE(piece);
    HttpResponseParser parser;
    parser.request_sent(false, false);
    parser.request_sent(false, true);
    std::string first = "HTTP/1.1 204 No Content\r\n\r\n";
    Run r = run(parser, first + switching + "\x81\x05hello", piece);
    CHECK(r.events ==
          std::vector<std::string>{"answered@" + std::to_string(first.size()),
                                   "switched@" + std::to_string(first.size() + switching.size())});
  }
  // A 101 while the oldest request did not ask for it: nothing after it can be trusted.
  HttpResponseParser unasked;
  unasked.request_sent(false, false);
  CHECK(run(unasked, switching, 0).events == std::vector<std::string>{"malformed"});
  // An upgrade request declined with a 200: answered, and parsing goes on.
  HttpResponseParser declined;
  declined.request_sent(false, true);
  declined.request_sent(false, false);
  std::string ok = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nno";
  CHECK(run(declined, ok + ok, 3).events ==
        std::vector<std::string>{"answered@" + std::to_string(ok.size()),
                                 "answered@" + std::to_string(2 * ok.size())});
  HttpResponseParser garbage;
  garbage.request_sent(false, false);
  CHECK(run(garbage, "SSH-2.0-OpenSSH\r\n", 0).events == std::vector<std::string>{"malformed"});
}
