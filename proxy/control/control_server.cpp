#include "control/control_server.hpp"
#include "util/asio_tokens.hpp"

#include <llhttp.h>
#include <sys/stat.h>

#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/experimental/as_tuple.hpp>
#include <asio/local/stream_protocol.hpp>
#include <asio/steady_timer.hpp>
#include <asio/use_awaitable.hpp>
#include <asio/write.hpp>
#include <filesystem>

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
    case 500:
      return "Internal Server Error";
    default:
      return "Status";
  }
}

// Reads one request at a time with llhttp: method, target, headers, body (capped).
struct RequestReader {
  llhttp_settings_t settings;
  llhttp_t parser;
  ControlRequest request;
  std::string field, value;
  bool in_value = false;
  bool complete = false;
  bool too_large = false;

  RequestReader() {
    llhttp_settings_init(&settings);
    settings.on_url = [](llhttp_t* p, const char* at, size_t n) {
      return self(p).append(self(p).request.target, at, n);
    };
    settings.on_header_field = [](llhttp_t* p, const char* at, size_t n) {
      RequestReader& r = self(p);
      if (r.in_value) r.flush_header();
      return r.append(r.field, at, n);
    };
    settings.on_header_value = [](llhttp_t* p, const char* at, size_t n) {
      self(p).in_value = true;
      return self(p).append(self(p).value, at, n);
    };
    settings.on_headers_complete = [](llhttp_t* p) {
      RequestReader& r = self(p);
      if (r.in_value) r.flush_header();
      r.request.method = llhttp_method_name(static_cast<llhttp_method_t>(p->method));
      if (p->content_length > ControlServer::kMaxBody && p->content_length != UINT64_MAX) {
        r.too_large = true;
        return -1;
      }
      return 0;
    };
    settings.on_body = [](llhttp_t* p, const char* at, size_t n) {
      RequestReader& r = self(p);
      if (r.request.body.size() + n > ControlServer::kMaxBody) {
        r.too_large = true;
        return -1;
      }
      r.request.body.append(at, n);
      return 0;
    };
    settings.on_message_complete = [](llhttp_t* p) {
      self(p).complete = true;
      return static_cast<int>(HPE_PAUSED);
    };
    llhttp_init(&parser, HTTP_REQUEST, &settings);
    parser.data = this;
  }
  static RequestReader& self(llhttp_t* p) { return *static_cast<RequestReader*>(p->data); }
  int append(std::string& out, const char* at, size_t n) {
    if (out.size() + n > 64 * 1024) return -1;  // a header or URL this long is not ours
    out.append(at, n);
    return 0;
  }
  void flush_header() {
    for (char& c : field) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    request.headers[field] = value;
    field.clear();
    value.clear();
    in_value = false;
  }
  void next() {
    request = ControlRequest{};
    complete = false;
    llhttp_resume(&parser);
  }
};

asio::awaitable<void> serve_client(ControlApi& api, stream_protocol::socket socket,
                                   size_t& clients) {
  RequestReader reader;
  std::vector<char> buffer(16384);
  std::string pending;  // bytes read but not yet parsed (after a paused message)
  asio::steady_timer idle(socket.get_executor());
  bool timed_out = false;
  for (;;) {
    idle.expires_after(std::chrono::seconds(30));
    idle.async_wait([&](const asio::error_code& e) {
      if (e) return;
      timed_out = true;
      asio::error_code ignored;
      socket.cancel(ignored);
    });
    while (!reader.complete) {
      if (pending.empty()) {
        auto [error, n] = co_await socket.async_read_some(asio::buffer(buffer), use_nothrow);
        if (error) {
          idle.cancel();
          --clients;
          co_return;
        }
        pending.assign(buffer.data(), n);
      }
      llhttp_errno_t status = llhttp_execute(&reader.parser, pending.data(), pending.size());
      if (status == HPE_PAUSED) {
        size_t used = static_cast<size_t>(llhttp_get_error_pos(&reader.parser) - pending.data());
        pending.erase(0, used);
        break;
      }
      pending.clear();
      if (status != HPE_OK) {
        ControlResponse response =
            reader.too_large ? ControlResponse{413, R"({"error":"body over 1 MiB"})", {}}
                             : ControlResponse{400, R"({"error":"malformed HTTP request"})", {}};
        std::string text = http_response_text(response, false);
        co_await asio::async_write(socket, asio::buffer(text), use_nothrow);
        idle.cancel();
        --clients;
        co_return;
      }
    }
    idle.cancel();
    bool keep_alive = llhttp_should_keep_alive(&reader.parser);
    ControlResponse response = api.handle(reader.request);
    std::string text = http_response_text(response, keep_alive);
    auto [error, written] = co_await asio::async_write(socket, asio::buffer(text), use_nothrow);
    if (error || !keep_alive || timed_out) break;
    reader.next();
  }
  --clients;
}

}  // namespace

std::string http_response_text(const ControlResponse& response, bool keep_alive) {
  std::string text =
      "HTTP/1.1 " + std::to_string(response.status) + " " + status_text(response.status) + "\r\n";
  if (response.status != 204) {
    text += "Content-Type: application/json\r\nContent-Length: " +
            std::to_string(response.body.size() + 1) + "\r\n";
  }
  for (const auto& [name, value] : response.headers) text += name + ": " + value + "\r\n";
  text += keep_alive ? "Connection: keep-alive\r\n\r\n" : "Connection: close\r\n\r\n";
  if (response.status != 204) text += response.body + "\n";
  return text;
}

struct ControlServer::State {
  explicit State(asio::io_context& io) : acceptor(io) {}
  stream_protocol::acceptor acceptor;
  size_t clients = 0;
};

std::string ControlServer::start() {
  namespace fs = std::filesystem;
  std::error_code fs_error;
  fs::path parent = fs::path(path_).parent_path();
  if (!parent.empty()) fs::create_directories(parent, fs_error);
  struct stat info {};
  if (::lstat(path_.c_str(), &info) == 0) {
    if (!S_ISSOCK(info.st_mode)) return path_ + " exists and is not a socket";
    stream_protocol::socket probe(io_);
    asio::error_code error;
    probe.connect(stream_protocol::endpoint(path_), error);
    if (!error) return "another process is serving " + path_;
    ::unlink(path_.c_str());  // stale: nobody listens
  }
  state_ = std::make_unique<State>(io_);
  asio::error_code error;
  state_->acceptor.open(stream_protocol(), error);
  mode_t previous = ::umask(0177);  // the socket file is created 0600
  if (!error) state_->acceptor.bind(stream_protocol::endpoint(path_), error);
  ::umask(previous);
  if (!error) state_->acceptor.listen(64, error);
  if (error) return "cannot serve " + path_ + ": " + error.message();
  asio::co_spawn(
      io_,
      [this]() -> asio::awaitable<void> {
        for (;;) {
          auto [error, socket] = co_await state_->acceptor.async_accept(use_nothrow);
          if (error == asio::error::operation_aborted || !state_->acceptor.is_open()) co_return;
          if (error) continue;
          if (state_->clients >= kMaxClients) continue;  // closes the socket: too many clients
          ++state_->clients;
          asio::co_spawn(io_, serve_client(api_, std::move(socket), state_->clients),
                         asio::detached);
        }
      },
      asio::detached);
  thread_ = std::thread([this] { io_.run(); });
  return {};
}

void ControlServer::stop() {
  if (!state_) return;
  asio::post(io_, [this] {
    asio::error_code ignored;
    state_->acceptor.close(ignored);
  });
  io_.stop();
  if (thread_.joinable()) thread_.join();
  ::unlink(path_.c_str());
  state_.reset();
}

ControlServer::ControlServer(ControlApi& api, std::string path)
    : api_(api), path_(std::move(path)) {}

ControlServer::~ControlServer() {
  stop();
}

}  // namespace egressd
