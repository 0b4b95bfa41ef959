// One worker's session with one broker: its DEALER socket, its share of the slots (credits held
// by the broker plus jobs in flight from it), heartbeats both ways and reconnection with backoff.
//
// Thread-safety: none; owned by the worker's loop.
#pragma once

#include <chrono>
#include <deque>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include <zmq.hpp>

#include "paddock/client/curve.h"
#include "paddock/schemas/messages.h"

namespace paddock::worker {

using Clock = std::chrono::steady_clock;

struct SessionTiming {
  std::chrono::milliseconds heartbeat;
  uint32_t liveness;
  std::chrono::milliseconds reconnect_min;
  std::chrono::milliseconds reconnect_max;
};

class BrokerSession {
 public:
  // `curve`: connect over CURVE with these keys; nullopt: plaintext.
  BrokerSession(zmq::context_t& context, std::string endpoint, schemas::Ready identity,
                uint32_t share, SessionTiming timing,
                std::optional<curve::ClientKeys> curve = std::nullopt);

  const std::string& endpoint() const { return endpoint_; }
  // nullptr while waiting to reconnect.
  zmq::socket_t* socket() { return socket_ ? &*socket_ : nullptr; }

  // What each HEARTBEAT to the broker carries (PROTOCOL.md "Worker session"); called on the loop
  // thread at every heartbeat. None set: heartbeats carry no body.
  void set_status_source(std::function<schemas::WorkerStatus()> source) {
    status_source_ = std::move(source);
  }

  // Opens a new socket and sends READY with the credits this broker does not hold yet.
  void connect(Clock::time_point now);
  // Closes the socket and schedules a reconnect after the backoff.
  void disconnect(Clock::time_point now, const char* why);
  void heard(Clock::time_point now);
  // Heartbeats, broker liveness, reconnection. Call every loop turn.
  void housekeeping(Clock::time_point now);
  // The earliest time housekeeping has something to do.
  Clock::time_point next_deadline() const;

  // Queues a message; sent in order, never dropped while the process lives.
  void send(std::vector<std::string> parts);
  // Queues a message without sending it yet (flush() sends).
  void queue(std::vector<std::string> parts) { outbox_.push_back(std::move(parts)); }
  void flush();
  bool has_outbox() const { return !outbox_.empty(); }
  size_t outbox_size() const { return outbox_.size(); }
  bool connected() const { return socket_.has_value(); }

  // Credit accounting. job_received: a JOB spent one credit. job_finished: a slot is free again;
  // the credit goes back to the broker unless draining, with the others freed in the same loop
  // turn: flush() sends one CREDIT {credits: n} after the outcomes queued before it.
  void job_received();
  void job_finished(bool draining);
  uint32_t in_flight() const { return in_flight_; }

  void start_drain();  // sends DRAIN
  void mark_drained() { drained_ = true; }
  bool drained() const { return drained_; }
  bool drain_sent() const { return drain_sent_; }

 private:
  zmq::context_t& context_;
  std::string endpoint_;
  schemas::Ready identity_;
  uint32_t share_;
  SessionTiming timing_;
  std::optional<curve::ClientKeys> curve_;
  std::function<schemas::WorkerStatus()> status_source_;
  std::optional<zmq::socket_t> socket_;
  std::deque<std::vector<std::string>> outbox_;
  uint32_t credits_held_by_broker_ = 0;
  uint32_t credits_to_grant_ = 0;  // freed slots not yet granted back (next flush())
  uint32_t in_flight_ = 0;
  Clock::time_point last_heard_{};
  Clock::time_point next_heartbeat_{};
  Clock::time_point reconnect_at_{};
  std::chrono::milliseconds backoff_;
  std::mt19937 rng_{std::random_device{}()};
  bool drain_sent_ = false;
  bool drained_ = false;
};

}  // namespace paddock::worker
