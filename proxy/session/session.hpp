#pragma once
// One connection: identify -> inspect -> decide -> relay or refuse. Runs on its worker's
// single-threaded io_context; ends with exactly one reason, logged and counted once.
#include <asio/awaitable.hpp>
#include <asio/ip/tcp.hpp>

#include "session/context.hpp"

namespace egressd {

// `peer` is the client's address as accept() returned it.
asio::awaitable<void> run_session(SessionContext& context, asio::ip::tcp::socket client,
                                  asio::ip::tcp::endpoint peer);

}  // namespace egressd
