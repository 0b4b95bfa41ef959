// A worker that speaks the worker protocol (PROTOCOL.md, "Worker session") over a DEALER socket of
// its own, for tests that need a worker to misbehave on cue: hold a job and say nothing, answer
// an attempt that is no longer current, go silent, come back on a new connection. Nothing runs in
// a thread of its own: the test drives it, and every wait is for a condition, with a deadline.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include <zmq.hpp>

#include "paddock/schemas/messages.h"

namespace paddock::testing {

class FakeWorker {
 public:
  // Connects to the broker's worker endpoint and sends READY with `slots` credits.
  FakeWorker(const std::string& endpoint, std::string worker_id, uint32_t slots);
  FakeWorker(const FakeWorker&) = delete;
  FakeWorker& operator=(const FakeWorker&) = delete;

  // Closes the socket and opens a new one (a new routing id, as a real worker does after it
  // missed the broker's heartbeats), then sends READY with `slots`.
  void reconnect(uint32_t slots);
  void heartbeat();
  void credit(uint32_t credits);
  // A RESULT for `job_id` naming `attempt`, with `stdout_data` as its stdout (to tell runs apart).
  void result(const std::string& job_id, uint32_t attempt, const std::string& stdout_data);
  // An OUTPUT with this body (encoded by the test: it may break the protocol's limits).
  void output(std::string body);

  // Reads what the broker sends until `done()` holds or `timeout` passes, answering nothing;
  // with `heartbeats`, sends a HEARTBEAT every `period` meanwhile (alive, but silent about its
  // jobs). Returns done().
  bool pump_until(const std::function<bool()>& done, std::chrono::milliseconds timeout,
                  bool heartbeats = true,
                  std::chrono::milliseconds period = std::chrono::milliseconds(50));

  // What the broker sent since the start, in order of arrival.
  std::vector<schemas::JobDispatch> jobs;  // JOBs
  std::vector<std::string> cancels;        // CANCELs' job ids
  size_t disconnects = 0;                  // DISCONNECTs

 private:
  void open(uint32_t slots);
  void send(std::vector<std::string> parts);
  void read_all();

  zmq::context_t context_{1};
  std::optional<zmq::socket_t> socket_;
  std::string endpoint_;
  std::string worker_id_;
};

}  // namespace paddock::testing
