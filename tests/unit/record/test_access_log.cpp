#include <doctest/doctest.h>

#include <nlohmann/json.hpp>

#include <chrono>

#include "core/text.hpp"
#include "record/access_log.hpp"

using namespace egressd;

TEST_CASE("Access log lines are JSON with DESIGN.md's fields, in order") {
  AccessRecord r;
  r.sandbox = "demo";
  r.src = "10.200.1.2:40000";
  r.dst = "198.18.0.10";
  r.port = 443;
  r.proto = "tls";
  r.name = "api.github.com";
  r.verdict = Verdict::allow;
  r.reason = Reason::allowed_domain;
  r.rule = "*.github.com";
  r.bytes_up = 748;
  r.bytes_down = 1566;
  r.duration_ms = 11.7;
  auto line = nlohmann::ordered_json::parse(access_log_line(r));
  std::vector<std::string> keys;
  for (const auto& [key, value] : line.items()) keys.push_back(key);
  CHECK(keys == std::vector<std::string>{"ts", "sandbox", "src", "dst", "port", "proto", "name",
                                         "verdict", "reason", "rule", "bytes_up", "bytes_down",
                                         "duration_ms"});
  CHECK(line["rule"] == "*.github.com");
  CHECK(line["port"] == 443);
  CHECK(line["duration_ms"] == 11);
  CHECK(line["ts"].get<std::string>().size() == 24);
  AccessRecord unknown;
  unknown.reason = Reason::unknown_source;
  unknown.dialed = "198.18.0.11";
  unknown.ech = true;
  unknown.name = std::string("a\"b\\c\x01", 6);  // never produced, but must not break the line
  auto other = nlohmann::json::parse(access_log_line(unknown));
  CHECK(other["sandbox"].is_null());
  CHECK(other["rule"].is_null());
  CHECK(other["name"] == std::string("a\"b\\c\x01", 6));
  CHECK(other["dialed"] == "198.18.0.11");
  CHECK(other["ech"] == true);
}

TEST_CASE("Timestamps are UTC with milliseconds, also within one cached second") {
  using namespace std::chrono;
  const sys_time<milliseconds> base =
      sys_days{year{2026} / 12 / 2} + hours{6} + minutes{41} + seconds{9};
  CHECK(utc_timestamp(base) == "2026-12-02T06:41:09.000Z");
  CHECK(utc_timestamp(base + milliseconds{7}) == "2026-12-02T06:41:09.007Z");
  CHECK(utc_timestamp(base + milliseconds{999}) == "2026-12-02T06:41:09.999Z");
  CHECK(utc_timestamp(base + milliseconds{1042}) == "2026-12-02T06:41:10.042Z");
  CHECK(utc_timestamp(base) == "2026-12-02T06:41:09.000Z");  // back again: not the cache's
  CHECK(utc_timestamp(sys_days{year{1999} / 12 / 31} + hours{23} + minutes{59} + seconds{59} +
                      milliseconds{120}) == "1999-12-31T23:59:59.120Z");
}

TEST_CASE("connect_ms has three decimals") {
  AccessRecord r;
  r.connect_ms = 0.4567;
  CHECK(access_log_line(r).find(",\"connect_ms\":0.457") != std::string::npos);
  r.connect_ms = 1234.0;
  CHECK(access_log_line(r).find(",\"connect_ms\":1234.000") != std::string::npos);
}
