#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "../../support/read_requests.hpp"

using namespace egressd;

namespace {

testing::ReadRequests read_all(const std::string& bytes, size_t piece) {
  return testing::read_requests(bytes, piece ? piece : bytes.size() + 1);
}

}  // namespace

TEST_CASE("RequestReader: pipelined requests read alike whole and one byte at a time") {
  std::string two =
      "PUT /v1/sandboxes/a HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}"
      "GET /v1/sandboxes HTTP/1.1\r\nX-Thing: y\r\n\r\n";
  for (size_t piece : {0, 1, 3, 7}) {
    auto read = read_all(two, piece);
    REQUIRE(read.requests.size() == 2);
    CHECK(read.requests[0].method == "PUT");
    CHECK(read.requests[0].target == "/v1/sandboxes/a");
    CHECK(read.requests[0].headers.at("content-length") == "2");
    CHECK(read.requests[0].body == "{}");
    CHECK(read.requests[1].method == "GET");
    CHECK(read.requests[1].headers.at("x-thing") == "y");
    CHECK(read.requests[1].body.empty());
  }
}

TEST_CASE("RequestReader: the caps and malformed input are outcomes, not crashes") {
  std::string many = "GET / HTTP/1.1\r\n";
  for (int i = 0; i <= 100; ++i) many += "H" + std::to_string(i) + ": v\r\n";
  CHECK(read_all(many + "\r\n", 0).last == RequestReader::Outcome::head_too_large);
  std::string long_head = "GET /" + std::string(70000, 'a') + " HTTP/1.1\r\n\r\n";
  CHECK(read_all(long_head, 4096).last == RequestReader::Outcome::head_too_large);
  CHECK(read_all("PUT / HTTP/1.1\r\nContent-Length: 1048577\r\n\r\n", 0).last ==
        RequestReader::Outcome::body_too_large);
  std::string chunked = "PUT / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n";
  for (int i = 0; i < 17; ++i) chunked += "10000\r\n" + std::string(0x10000, 'x') + "\r\n";
  CHECK(read_all(chunked, 65536).last == RequestReader::Outcome::body_too_large);
  CHECK(read_all("\x01\x02 garbage\r\n\r\n", 0).last == RequestReader::Outcome::malformed);
  CHECK(RequestReader::refusal(RequestReader::Outcome::head_too_large).status == 431);
  CHECK(RequestReader::refusal(RequestReader::Outcome::body_too_large).status == 413);
  CHECK(RequestReader::refusal(RequestReader::Outcome::malformed).status == 400);
}
