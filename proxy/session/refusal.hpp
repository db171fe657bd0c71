#pragma once
// Protocol-appropriate refusals (DESIGN.md "What a connection gets"): a TLS fatal alert
// access_denied on TLS ports, 403 with X-Egress-Denied on HTTP ports, RST elsewhere.
#include <asio/awaitable.hpp>
#include <asio/ip/tcp.hpp>

#include <string>

#include "core/reason.hpp"

namespace egressd {

enum class Proto : uint8_t { tcp, tls, http };
const char* to_string(Proto proto);

std::string http_forbidden(Reason reason, std::string host);

// Sends the refusal for `proto` and closes the socket (RST for plain TCP).
asio::awaitable<void> refuse(asio::ip::tcp::socket& client, Proto proto, Reason reason,
                             std::string host);

}  // namespace egressd
