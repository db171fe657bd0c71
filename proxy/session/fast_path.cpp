// Ports that are not inspected: decided by address at accept, then relayed.
#include <asio/experimental/as_tuple.hpp>
#include <asio/use_awaitable.hpp>
#include <asio/write.hpp>

#include "net/socket_options.hpp"
#include "session/connection.hpp"
#include "util/asio_tokens.hpp"

namespace egressd::session_detail {

asio::awaitable<void> Session::run_fast_path() {
  Decision decision = decide_now(nullptr);
  if (decision.verdict == Verdict::deny) co_return co_await deny(decision.reason);
  if (!co_await connect_upstream()) co_return;
  start_relay();
}

}  // namespace egressd::session_detail
