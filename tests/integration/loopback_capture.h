// Test helper: captures the TCP payloads to and from given ports on the loopback interface with
// an AF_PACKET socket (needs root or CAP_NET_RAW), so a test can look for plaintext on the wire.
#pragma once

#include <atomic>
#include <mutex>
#include <set>
#include <string>
#include <thread>

namespace paddock::testing {

class LoopbackCapture {
 public:
  // Starts capturing TCP payloads whose source or destination port is in `ports`. Throws
  // std::runtime_error (naming the operation and errno) if the socket cannot be opened.
  explicit LoopbackCapture(std::set<uint16_t> ports);
  ~LoopbackCapture();
  LoopbackCapture(const LoopbackCapture&) = delete;
  LoopbackCapture& operator=(const LoopbackCapture&) = delete;

  // The payload bytes captured so far (concatenated; capped at 64 MiB).
  std::string payload();
  size_t packets();

 private:
  void run();
  int fd_ = -1;
  std::set<uint16_t> ports_;
  std::atomic<bool> stop_{false};
  std::mutex mu_;
  std::string payload_;
  size_t packets_ = 0;
  std::thread thread_;
};

// The port of a tcp://HOST:PORT endpoint.
uint16_t port_of(const std::string& endpoint);

}  // namespace paddock::testing
