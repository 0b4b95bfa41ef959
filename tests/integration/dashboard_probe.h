// Reads a broker's dashboard API (broker/README.md, "Dashboard") from a test: what the broker
// holds, runs and has answered, so that a test waits for a state instead of for a time. The broker
// must run with `--metrics-address 127.0.0.1:0` (Broker::metrics_address is then set).
#pragma once

#include <httplib.h>

#include <chrono>
#include <functional>
#include <string>
#include <thread>

#include <nlohmann/json.hpp>

namespace paddock::testing {

struct HttpReply {
  int status = 0;  // 0: no answer
  std::string body;
  httplib::Headers headers;
  std::string header(const std::string& name) const {
    auto it = headers.find(name);
    return it == headers.end() ? "" : it->second;
  }
};

// GET http://127.0.0.1:PORT/path, PORT taken from the broker's bound HOST:PORT.
inline HttpReply http_get(const std::string& address, const std::string& path,
                          httplib::Headers headers = {}) {
  const std::string port = address.substr(address.rfind(':') + 1);
  httplib::Client client("127.0.0.1", std::stoi(port));
  client.set_connection_timeout(std::chrono::seconds(2));
  client.set_read_timeout(std::chrono::seconds(5));
  auto res = client.Get(path, headers);
  if (!res) return {};
  return {res->status, res->body, res->headers};
}

// GETs `path` until `ok` holds of its JSON (the broker publishes a snapshot every 250 ms or so)
// or `within` passes; returns the last JSON read (null if none).
inline nlohmann::json http_get_until(const std::string& address, const std::string& path,
                                     const std::function<bool(const nlohmann::json&)>& ok,
                                     std::chrono::milliseconds within = std::chrono::seconds(10)) {
  const auto deadline = std::chrono::steady_clock::now() + within;
  nlohmann::json last;
  while (std::chrono::steady_clock::now() < deadline) {
    auto r = http_get(address, path);
    if (r.status == 200) {
      last = nlohmann::json::parse(r.body, nullptr, false);
      if (!last.is_discarded() && ok(last)) return last;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return last;
}

// Waits until the broker says `job_id` is on a worker (dispatched, not yet answered); with
// `worker_id`, on that worker (its latest attempt went there).
inline bool wait_until_running(const std::string& address, const std::string& job_id,
                               const std::string& worker_id = "",
                               std::chrono::milliseconds within = std::chrono::seconds(60)) {
  auto on_it = [&](const nlohmann::json& j) {
    if (!j.is_object() || j.value("status", "") != "running") return false;
    if (worker_id.empty()) return true;
    const auto& attempts = j.value("attempts", nlohmann::json::array());
    return !attempts.empty() && attempts.back().value("worker_id", "") == worker_id;
  };
  return on_it(http_get_until(address, "/api/v1/jobs/" + job_id, on_it, within));
}

}  // namespace paddock::testing
