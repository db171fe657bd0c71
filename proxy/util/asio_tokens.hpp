#pragma once
// Completion token for the data path: errors come back as values, never as exceptions.
#include <asio/experimental/as_tuple.hpp>
#include <asio/use_awaitable.hpp>

namespace egressd {

inline constexpr auto use_nothrow = asio::experimental::as_tuple(asio::use_awaitable);

}  // namespace egressd
