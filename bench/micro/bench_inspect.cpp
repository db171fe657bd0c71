// Parse throughput: a 1.8 KB (post-quantum-sized) ClientHello whole and in 1-byte pieces, and
// HTTP request heads. Target (issue 2/7): <= 1 us per whole hello.
#include <benchmark/benchmark.h>

#include <string>

#include "../../tests/support/tls_builder.hpp"
#include "inspect/client_hello.hpp"
#include "inspect/http_request.hpp"

using namespace egressd;
using namespace egressd::testing;

namespace {

Bytes big_hello() {
  HelloSpec spec = hello_with_sni("api.svc1.team53.example.com");
  spec.cipher_bytes = 34;
  spec.extensions.push_back({51, Bytes(1216 + 6 + 36, 0x42)});  // X25519MLKEM768 + X25519 shares
  spec.extensions.push_back({13, Bytes(20, 4)});
  spec.extensions.push_back({21, Bytes(300, 0)});
  return frame_records(build_handshake(spec));
}

void BM_client_hello_whole(benchmark::State& state) {
  Bytes hello = big_hello();
  for (auto _ : state) {
    ClientHelloParser parser;
    benchmark::DoNotOptimize(parser.feed(hello));
  }
  state.SetBytesProcessed(state.iterations() * hello.size());
  state.counters["hello_bytes"] = static_cast<double>(hello.size());
}

void BM_client_hello_1_byte_pieces(benchmark::State& state) {
  Bytes hello = big_hello();
  for (auto _ : state) {
    ClientHelloParser parser;
    for (size_t i = 0; i < hello.size(); ++i) parser.feed(std::span(hello.data() + i, 1));
    benchmark::DoNotOptimize(parser.status());
  }
  state.SetBytesProcessed(state.iterations() * hello.size());
}

void BM_http_request_head(benchmark::State& state) {
  std::string head =
      "GET /simple/requests/ HTTP/1.1\r\nHost: pypi.org\r\nUser-Agent: pip/23.2.1 CPython/3.11\r\n"
      "Accept: application/vnd.pypi.simple.v1+json\r\nAccept-Encoding: gzip, "
      "deflate\r\nConnection: keep-alive\r\n\r\n";
  std::span<const uint8_t> bytes(reinterpret_cast<const uint8_t*>(head.data()), head.size());
  for (auto _ : state) {
    HttpRequestParser parser;
    size_t used = 0;
    benchmark::DoNotOptimize(parser.feed(bytes, used));
  }
  state.SetBytesProcessed(state.iterations() * head.size());
}

BENCHMARK(BM_client_hello_whole)->Repetitions(5)->ReportAggregatesOnly(true);
BENCHMARK(BM_client_hello_1_byte_pieces)->Repetitions(5)->ReportAggregatesOnly(true);
BENCHMARK(BM_http_request_head)->Repetitions(5)->ReportAggregatesOnly(true);

}  // namespace

BENCHMARK_MAIN();
