// The C++ submitter library: a DEALER connection to a broker's client endpoint. Submit jobs,
// cancel them, ping, and read the broker's answers as Events (PROTOCOL.md, "Client session").
//
// Thread-safety: a Client is used by one thread at a time (it owns a ZeroMQ socket).
#pragma once

#include <chrono>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

#include <zmq.hpp>

#include "paddock/client/curve.h"
#include "paddock/schemas/messages.h"

namespace paddock::client {

// A local failure: the request did not pass validation, or the socket failed.
class ClientError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct Event {
  enum class Kind {
    kAccepted,  // accepted_ids
    kRejected,  // error (QueueFull): the job was not queued
    kResult,    // result
    kError,     // error
    kPong,
    kInvalid,   // the broker sent something this client cannot decode; detail says what
  };
  Kind kind = Kind::kInvalid;
  std::vector<std::string> accepted_ids;
  schemas::JobResult result;
  schemas::JobError error;
  std::string detail;
};

class Client {
 public:
  // Connects (asynchronously, as ZeroMQ does) to `endpoint`, e.g. "tcp://127.0.0.1:5555"; with
  // `keys`, over CURVE (a broker that refuses the keys never answers: the handshake fails).
  explicit Client(const std::string& endpoint,
                  const std::optional<curve::ClientKeys>& keys = std::nullopt);
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  // Validates each request (schemas::validate) and sends them, up to 1024 per SUBMIT message.
  // Throws ClientError naming the job and field of the first invalid request; nothing is sent
  // then.
  void submit(std::span<const schemas::JobRequest> requests);
  void submit(const schemas::JobRequest& request) { submit(std::span(&request, 1)); }
  void cancel(const std::string& job_id);
  void fetch(const std::string& job_id);
  void ping();
  // PING without waiting: false if it could not be queued at once (e.g. the connection was
  // refused, as a CURVE broker refuses a key it does not allow).
  bool try_ping();

  // The next answer from the broker, or nullopt if none arrived within `timeout`.
  std::optional<Event> next(std::chrono::milliseconds timeout);

 private:
  void send(std::vector<std::string> parts);

  zmq::context_t context_;
  zmq::socket_t socket_;
};

}  // namespace paddock::client
