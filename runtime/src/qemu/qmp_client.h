// A minimal QMP client (QEMU Machine Protocol, JSON lines over a unix socket): connect, negotiate
// capabilities, execute a command and wait for its answer, skipping asynchronous events.
//
// Thread-safety: one thread at a time (the QemuVm's lock).
#pragma once

#include <chrono>
#include <functional>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

namespace paddock::runtime::qemu {

class QmpClient {
 public:
  QmpClient() = default;
  ~QmpClient();
  QmpClient(const QmpClient&) = delete;
  QmpClient& operator=(const QmpClient&) = delete;

  // Connects to `socket_path` and completes the greeting and qmp_capabilities. On failure returns
  // a message naming the step and the OS error. `gone`, if given, is asked between attempts: once
  // it says the process is gone, waiting for its socket stops.
  std::optional<std::string> connect(const std::string& socket_path,
                                     std::chrono::milliseconds timeout,
                                     const std::function<bool()>& gone = {});
  // Runs `command` (with `arguments` if not null). Returns the "return" value, or sets `error` to
  // QMP's error description or the I/O failure.
  std::optional<nlohmann::json> execute(const std::string& command, const nlohmann::json& arguments,
                                        std::chrono::milliseconds timeout, std::string& error);
  bool connected() const { return fd_ >= 0; }
  void close();

 private:
  // One JSON message, or nullopt with `error` set.
  std::optional<nlohmann::json> read_message(std::chrono::steady_clock::time_point deadline,
                                             std::string& error);

  int fd_ = -1;
  std::string buffer_;
  uint64_t next_id_ = 1;
};

}  // namespace paddock::runtime::qemu
