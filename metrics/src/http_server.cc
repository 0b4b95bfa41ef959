#include "paddock/metrics/http_server.h"

#include <fcntl.h>
#include <sys/socket.h>

#include <atomic>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <cstring>
#include <stdexcept>
#include <thread>

#include <httplib.h>

#include "paddock/metrics/metrics.h"

namespace paddock::metrics {

struct HttpServer::Impl {
  httplib::Server server;
  std::thread thread;
  std::atomic<bool> returned{false};  // listen_after_bind() returned
};

base::Expected<ListenAddress> parse_listen_address(std::string_view text) {
  const size_t colon = text.rfind(':');
  if (colon == std::string_view::npos) {
    return base::fail("'" + std::string(text) + "' is not HOST:PORT");
  }
  std::string_view host = text.substr(0, colon);
  const std::string_view port = text.substr(colon + 1);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  } else if (host.find(':') != std::string_view::npos) {
    return base::fail("'" + std::string(text) + "': an IPv6 host goes in brackets, [::1]:PORT");
  }
  unsigned value = 0;
  auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), value);
  if (port.empty() || ec != std::errc() || end != port.data() + port.size() || value > 65535) {
    return base::fail("'" + std::string(text) + "': port '" + std::string(port) +
                      "' is not 0..65535");
  }
  ListenAddress a;
  a.host = host.empty() ? "127.0.0.1" : std::string(host);
  a.port = static_cast<uint16_t>(value);
  return a;
}

bool is_loopback(std::string_view address) {
  auto a = parse_listen_address(address);
  if (!a) return false;
  return a->host.rfind("127.", 0) == 0 || a->host == "::1" || a->host == "localhost";
}

HttpServer::HttpServer(size_t threads) : impl_(std::make_unique<Impl>()) {
  impl_->server.new_task_queue = [threads] { return new httplib::ThreadPool(threads); };
  // Not httplib's default options: no SO_REUSEPORT (a second daemon on the same port must fail,
  // not share it), and close-on-exec (the worker's VMMs must not inherit the listening socket).
  impl_->server.set_socket_options([](socket_t sock) {
    int yes = 1;
    ::setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
    ::fcntl(sock, F_SETFD, ::fcntl(sock, F_GETFD) | FD_CLOEXEC);
  });
  impl_->server.set_keep_alive_timeout(2);
}

HttpServer::~HttpServer() { stop(); }

namespace {

// httplib's route patterns are regular expressions: `text` matched literally.
std::string regex_literal(const std::string& text) {
  static const std::string special = R"(\^$.|?*+()[]{})";
  std::string out;
  for (char c : text) {
    if (special.find(c) != std::string::npos) out += '\\';
    out += c;
  }
  return out;
}

httplib::Server::Handler adapt(HttpHandler handler) {
  return [handler = std::move(handler)](const httplib::Request& req, httplib::Response& res) {
    HttpRequest r;
    r.path = req.path;
    for (const auto& [k, v] : req.params) r.params.emplace(k, v);
    for (const auto& [k, v] : req.headers) {
      std::string name = k;
      for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      r.headers.emplace(std::move(name), v);
    }
    HttpResponse out;
    try {
      out = handler(r);
    } catch (const std::exception& e) {
      out = HttpResponse{
          500, "text/plain; charset=utf-8", std::string("error: ") + e.what() + "\n", {}};
    }
    res.status = out.status;
    for (const auto& [k, v] : out.headers) res.set_header(k.c_str(), v);
    res.set_content(std::move(out.body), out.content_type.c_str());
  };
}

}  // namespace

std::string HttpRequest::header(const std::string& lower_name) const {
  auto it = headers.find(lower_name);
  return it == headers.end() ? std::string() : it->second;
}

void HttpServer::get(std::string path, HttpHandler handler) {
  impl_->server.Get(regex_literal(path), adapt(std::move(handler)));
}

void HttpServer::get_prefix(std::string prefix, HttpHandler handler) {
  impl_->server.Get(regex_literal(prefix) + ".+", adapt(std::move(handler)));
}

base::Status HttpServer::start(const std::string& address) {
  auto a = parse_listen_address(address);
  if (!a) return base::fail("http listen address " + a.error().message);
  errno = 0;
  int port = a->port;
  if (a->port == 0) {
    port = impl_->server.bind_to_any_port(a->host);
  } else if (!impl_->server.bind_to_port(a->host, a->port)) {
    port = -1;
  }
  if (port <= 0) {
    const int err = errno;
    return base::fail("http listen on " + address + ": " +
                      (err != 0 ? std::strerror(err) : "cannot bind"));
  }
  host_ = a->host;
  port_ = static_cast<uint16_t>(port);
  impl_->thread = std::thread([this] {
    impl_->server.listen_after_bind();
    impl_->returned.store(true);
  });
  // stop() does nothing until the server runs: wait for it, so that a stop() right after start()
  // is not lost (and the join in stop() does not hang).
  while (!impl_->server.is_running() && !impl_->returned.load()) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return {};
}

std::string HttpServer::address() const {
  if (port_ == 0) return "";
  const bool v6 = host_.find(':') != std::string::npos;
  return (v6 ? "[" + host_ + "]" : host_) + ":" + std::to_string(port_);
}

void HttpServer::stop() {
  if (!impl_ || !impl_->thread.joinable()) return;
  impl_->server.stop();
  impl_->thread.join();
}

void serve_metrics(HttpServer& server, const Registry& registry) {
  server.get("/metrics", [&registry](const HttpRequest&) {
    return HttpResponse{200, kContentType, registry.render(), {}};
  });
}

}  // namespace paddock::metrics
