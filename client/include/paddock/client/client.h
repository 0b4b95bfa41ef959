// The C++ submitter library: a DEALER connection to a broker's client endpoint. Submit jobs,
// cancel them, ping, and read the broker's answers as Events (PROTOCOL.md, "Client session").
//
// Thread-safety: a Client is used by one thread at a time (it owns a ZeroMQ socket).
#pragma once

#include <chrono>
#include <map>
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
    kOutput,   // output: live output of a job submitted with `stream` (before its RESULT)
    kInvalid,  // the broker sent something this client cannot decode; detail says what
  };
  Kind kind = Kind::kInvalid;
  std::vector<std::string> accepted_ids;
  schemas::OutputChunk output;
  schemas::JobResult result;
  schemas::JobError error;
  std::string detail;
};

// Several brokers that share one queue (broker/README.md, "Several brokers on PostgreSQL"): the
// client talks to one at a time; when it has jobs without an answer and has heard nothing from
// that broker for `silence` (it PINGs after half of it), it moves to the next endpoint and submits
// every job still unanswered again, with the same job_id: submit is idempotent, so a job that
// already ran is answered from the store, never run twice.
struct Failover {
  std::chrono::milliseconds silence{3000};
};

class Client {
 public:
  // Connects (asynchronously, as ZeroMQ does) to `endpoint`, e.g. "tcp://127.0.0.1:5555"; with
  // `keys`, over CURVE (a broker that refuses the keys never answers: the handshake fails).
  explicit Client(const std::string& endpoint,
                  const std::optional<curve::ClientKeys>& keys = std::nullopt);
  // The first of `endpoints` (one or more), failing over to the next as above. With several, the
  // client keeps each submitted job's encoded request until its final answer (RESULT, ERROR or
  // REJECTED) arrives.
  Client(std::vector<std::string> endpoints, const std::optional<curve::ClientKeys>& keys,
         Failover failover = {});
  // The broker it talks to now, and how many times it moved.
  const std::string& endpoint() const { return endpoints_[current_]; }
  size_t failovers() const { return failovers_; }
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

  // The next answer from the broker, or nullopt if none arrived within `timeout`. With several
  // brokers, this is also where the client watches its broker and fails over.
  std::optional<Event> next(std::chrono::milliseconds timeout);

 private:
  using Clock = std::chrono::steady_clock;
  void open_socket();
  void send(std::vector<std::string> parts);
  std::optional<Event> read_one();
  void watch(const Event& ev);
  void fail_over();

  zmq::context_t context_;
  zmq::socket_t socket_;
  std::vector<std::string> endpoints_;
  size_t current_ = 0;
  std::optional<curve::ClientKeys> keys_;
  Failover failover_;
  size_t failovers_ = 0;
  // With several brokers: the jobs without a final answer, as encoded SUBMIT bodies.
  std::map<std::string, std::string> open_;
  Clock::time_point last_heard_;
  Clock::time_point last_ping_;
};

}  // namespace paddock::client
