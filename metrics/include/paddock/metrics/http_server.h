// A small HTTP server (cpp-httplib) on threads of its own, for read-only endpoints beside a
// daemon's main loop: /metrics, and the broker's dashboard and its JSON API. Routes are added
// before start(); a handler runs on one of the server's threads, so it may read only what is safe
// to read from another thread (atomics, the metrics Registry, state behind a short mutex).
//
// No authentication: bind it to loopback (the default when only a port is given) unless the
// network is trusted.
//
// Thread-safety: get() and start() from one thread, before and at start; stop() and the
// destructor from that thread; handlers run concurrently on the server's threads.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "paddock/base/expected.h"

namespace paddock::metrics {

class Registry;

struct HttpRequest {
  std::string path;
  std::multimap<std::string, std::string> params;   // the query string's, decoded
  std::multimap<std::string, std::string> headers;  // names lower-cased

  // The first value of header `lower_name` (lower case), "" if absent.
  std::string header(const std::string& lower_name) const;
};

struct HttpResponse {
  int status = 200;
  std::string content_type = "text/plain; charset=utf-8";
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;  // sent besides Content-Type
};

using HttpHandler = std::function<HttpResponse(const HttpRequest&)>;

struct ListenAddress {
  std::string host;
  uint16_t port = 0;  // 0: an ephemeral port
};

// "HOST:PORT", "[IPV6]:PORT", or ":PORT" (loopback, 127.0.0.1); a Failure if it is none of these.
base::Expected<ListenAddress> parse_listen_address(std::string_view text);

// Whether a listen address's host is a loopback one (127.0.0.0/8, ::1, localhost).
bool is_loopback(std::string_view address);

class HttpServer {
 public:
  // `threads`: requests served at once.
  explicit HttpServer(size_t threads = 4);
  ~HttpServer();  // stop()
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // Serves GET `path` (exact match). REQUIRES: before start(). A handler that throws answers 500.
  void get(std::string path, HttpHandler handler);
  // Serves GET of every path that starts with `prefix` and is longer. REQUIRES: before start().
  void get_prefix(std::string prefix, HttpHandler handler);

  // Binds `address` (parse_listen_address) and serves on the server's threads until stop(); a
  // Failure naming the address if it cannot be parsed or bound.
  base::Status start(const std::string& address);
  // The bound address, "HOST:PORT" (the real port when 0 was asked); "" before start().
  std::string address() const;
  uint16_t port() const { return port_; }

  // Stops serving and joins the threads. Safe to call twice.
  void stop();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  std::string host_;
  uint16_t port_ = 0;
};

// Adds GET /metrics: the registry's render() in the text format. REQUIRES: `registry` outlives
// the server's threads (stop() or the server's destruction).
void serve_metrics(HttpServer& server, const Registry& registry);

}  // namespace paddock::metrics
