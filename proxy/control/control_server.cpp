#include "control/control_server.hpp"

#include "core/log.hpp"
#include "util/asio_tokens.hpp"

#include <sys/stat.h>

#include <future>

#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/experimental/as_tuple.hpp>
#include <asio/local/stream_protocol.hpp>
#include <asio/steady_timer.hpp>
#include <asio/use_awaitable.hpp>
#include <asio/write.hpp>
#include <filesystem>
#include <iostream>

#include "control/check.hpp"
#include "control/request_reader.hpp"

namespace egressd {
namespace {

using asio::local::stream_protocol;

const char* status_text(int status) {
  switch (status) {
    case 200:
      return "OK";
    case 204:
      return "No Content";
    case 400:
      return "Bad Request";
    case 404:
      return "Not Found";
    case 405:
      return "Method Not Allowed";
    case 409:
      return "Conflict";
    case 413:
      return "Payload Too Large";
    case 431:
      return "Request Header Fields Too Large";
    case 503:
      return "Service Unavailable";
    case 500:
      return "Internal Server Error";
    default:
      return "Status";
  }
}

// Holds one of the server's client slots for as long as a client is served, released on
// every way out of serve_client (return, error, exception).
class ClientSlot {
 public:
  explicit ClientSlot(size_t& clients) : clients_(clients) { ++clients_; }
  ~ClientSlot() { --clients_; }
  ClientSlot(const ClientSlot&) = delete;
  ClientSlot& operator=(const ClientSlot&) = delete;

 private:
  size_t& clients_;
};

void control_log(const std::string& message) {
  log_line("control: " + message);
}

// The handler's answer; whatever it throws becomes an answer too and changes nothing (the
// store is only written by apply(), after validation).
ControlResponse answer(ControlApi& api, const ControlRequest& request) {
  try {
    return api.handle(request);
  } catch (const nlohmann::json::type_error& e) {  // a body field of the wrong JSON type
    return ControlResponse{
        400, error_body("a field of the body has the wrong type", "").dump(), {}};
  } catch (const std::exception& e) {
    control_log(request.method + " " + request.target.substr(0, 200) +
                ": internal error: " + e.what());
  } catch (...) {
    control_log(request.method + " " + request.target.substr(0, 200) + ": internal error");
  }
  return ControlResponse{500, R"({"error":"internal"})", {}};
}

asio::awaitable<void> serve_client(ControlApi& api, stream_protocol::socket socket,
                                   size_t& clients) {
  ClientSlot slot(clients);
  RequestReader reader;
  std::vector<char> buffer(16384);
  std::string pending;  // bytes read but not yet parsed (after a paused message)
  asio::steady_timer timer(socket.get_executor());
  bool timed_out = false;
  // Cancels the socket's operations after `limit`: an idle client, or one that reads nothing.
  auto arm = [&](std::chrono::seconds limit) {
    timer.expires_after(limit);
    timer.async_wait([&](const asio::error_code& e) {
      if (e) return;
      timed_out = true;
      asio::error_code ignored;
      socket.cancel(ignored);
    });
  };
  auto send = [&](const std::string& text) -> asio::awaitable<bool> {
    arm(ControlServer::kWriteTimeout);
    auto [error, written] = co_await asio::async_write(socket, asio::buffer(text), use_nothrow);
    timer.cancel();
    co_return !error && !timed_out;
  };
  for (;;) {
    arm(ControlServer::kIdleTimeout);
    RequestReader::Outcome outcome = RequestReader::Outcome::need_more;
    while (outcome == RequestReader::Outcome::need_more) {
      if (pending.empty()) {
        auto [error, n] = co_await socket.async_read_some(asio::buffer(buffer), use_nothrow);
        if (error) {
          timer.cancel();
          co_return;
        }
        pending.assign(buffer.data(), n);
      }
      auto step = reader.feed(pending);
      pending.erase(0, step.used);
      outcome = step.outcome;
    }
    if (outcome != RequestReader::Outcome::complete) {
      timer.cancel();
      co_await send(http_response_text(RequestReader::refusal(outcome), false));
      co_return;
    }
    timer.cancel();
    bool keep_alive = reader.keep_alive();
    ControlResponse response = answer(api, reader.request());
    if (!co_await send(http_response_text(response, keep_alive)) || !keep_alive) break;
    reader.next();
  }
}

}  // namespace

std::string http_response_text(const ControlResponse& response, bool keep_alive) {
  bool json = response.content_type == "application/json";
  std::string text =
      "HTTP/1.1 " + std::to_string(response.status) + " " + status_text(response.status) + "\r\n";
  if (response.status != 204) {
    text += "Content-Type: " + response.content_type +
            "\r\nContent-Length: " + std::to_string(response.body.size() + (json ? 1 : 0)) + "\r\n";
  }
  for (const auto& [name, value] : response.headers) text += name + ": " + value + "\r\n";
  text += keep_alive ? "Connection: keep-alive\r\n\r\n" : "Connection: close\r\n\r\n";
  if (response.status != 204) text += json ? response.body + "\n" : response.body;
  return text;
}

struct ControlServer::State {
  explicit State(asio::io_context& io) : acceptor(io) {}
  stream_protocol::acceptor acceptor;
};

std::string ControlServer::start(int inherited) {
  state_ = std::make_unique<State>(io_);
  asio::error_code error;
  if (inherited >= 0) {
    state_->acceptor.assign(stream_protocol(), inherited, error);
    if (error) return "cannot serve the inherited control socket: " + error.message();
  } else {
    namespace fs = std::filesystem;
    std::error_code fs_error;
    fs::path parent = fs::path(path_).parent_path();
    if (!parent.empty()) fs::create_directories(parent, fs_error);
    struct stat info {};
    if (::lstat(path_.c_str(), &info) == 0) {
      if (!S_ISSOCK(info.st_mode)) return path_ + " exists and is not a socket";
      stream_protocol::socket probe(io_);
      probe.connect(stream_protocol::endpoint(path_), error);
      if (!error) return "another process is serving " + path_ + " (upgrade with --takeover)";
      ::unlink(path_.c_str());  // stale: nobody listens
    }
    error.clear();
    state_->acceptor.open(stream_protocol(), error);
    mode_t previous = ::umask(0177);  // the socket file is created 0600
    if (!error) state_->acceptor.bind(stream_protocol::endpoint(path_), error);
    ::umask(previous);
    if (!error) state_->acceptor.listen(64, error);
    if (error) return "cannot serve " + path_ + ": " + error.message();
  }
  accept_clients();
  thread_ = std::thread([this] { io_.run(); });
  return {};
}

void ControlServer::accept_clients() {
  asio::co_spawn(
      io_,
      [this]() -> asio::awaitable<void> {
        auto backoff = std::chrono::milliseconds(10);
        for (;;) {
          auto [error, socket] = co_await state_->acceptor.async_accept(use_nothrow);
          if (error == asio::error::operation_aborted || !state_->acceptor.is_open()) co_return;
          if (error) {
            // Out of descriptors (or memory): wait instead of spinning on the same error.
            asio::steady_timer pause(io_, backoff);
            co_await pause.async_wait(use_nothrow);
            backoff = std::min(backoff * 2, std::chrono::milliseconds(1000));
            continue;
          }
          backoff = std::chrono::milliseconds(10);
          if (clients_ >= kMaxClients) {
            // Told, not silently dropped; the idle and write timeouts free slots again.
            std::string busy = http_response_text(
                ControlResponse{503, R"({"error":"too many control clients"})", {}}, false);
            asio::error_code ignored;
            socket.non_blocking(true, ignored);
            asio::write(socket, asio::buffer(busy), ignored);
            continue;
          }
          asio::co_spawn(io_, serve_client(api_, std::move(socket), clients_), asio::detached);
        }
      },
      asio::detached);
}

int ControlServer::native_handle() const {
  return state_ ? state_->acceptor.native_handle() : -1;
}

void ControlServer::pause() {
  if (!state_) return;
  std::promise<void> done;
  asio::post(io_, [this, &done] {
    api_.set_paused(true);
    asio::error_code ignored;
    state_->acceptor.cancel(ignored);  // the accept loop ends; the socket stays open
    done.set_value();
  });
  done.get_future().wait();  // runs after any request being handled: one thread serves them all
}

void ControlServer::resume() {
  if (!state_) return;
  asio::post(io_, [this] {
    api_.set_paused(false);
    accept_clients();
  });
}

void ControlServer::stop(bool unlink_path) {
  if (!state_) return;
  asio::post(io_, [this] {
    asio::error_code ignored;
    state_->acceptor.close(ignored);
  });
  io_.stop();
  if (thread_.joinable()) thread_.join();
  if (unlink_path) ::unlink(path_.c_str());
  state_.reset();
}

ControlServer::ControlServer(ControlApi& api, std::string path)
    : api_(api), path_(std::move(path)) {}

ControlServer::~ControlServer() {
  stop();
}

}  // namespace egressd
