// The broker's transport: its two ROUTER sockets (submitters, workers), whole messages in and out,
// and the answers held for submitters whose pipe is full. It knows frames, routes and bytes, not
// jobs: what a message means is the loop's (client_side.cc, worker_side.cc).
//
// Both sockets set ROUTER_MANDATORY: a send to a route that is gone fails at once (kGone) instead
// of vanishing, and a send to a full pipe would block (held here instead, bounded per submitter and
// in all: Options::max_undelivered_bytes*).
//
// Thread-safety: none; owned by the broker's event loop.
#pragma once

#include <cstddef>
#include <deque>
#include <string>
#include <unordered_map>
#include <vector>

#include <zmq.hpp>

#include "paddock/wire/zmq_frames.h"

namespace paddock::broker {

class Transport {
 public:
  struct Settings {
    std::string client_endpoint;
    std::string worker_endpoint;
    int client_send_hwm = 1000;
    int worker_send_hwm = 1000;
    std::string curve_secret_key;  // "": plaintext; else both sockets are CURVE servers
    const char* client_zap_domain = "";
    const char* worker_zap_domain = "";
    size_t max_undelivered_bytes_per_client = 0;
    size_t max_undelivered_bytes = 0;
  };
  // Binds both endpoints (zmq::error_t if one cannot be bound).
  Transport(zmq::context_t& context, const Settings& settings);

  zmq::socket_t& clients() { return clients_; }
  zmq::socket_t& workers() { return workers_; }
  // What was bound (ephemeral ports resolved).
  const std::string& client_endpoint() const { return client_endpoint_; }
  const std::string& worker_endpoint() const { return worker_endpoint_; }

  // One whole message from a submitter or a worker, without blocking; false if none waits.
  bool recv_client(std::vector<zmq::message_t>& frames) {
    return wire::recv_message(clients_, frames);
  }
  bool recv_worker(std::vector<zmq::message_t>& frames) {
    return wire::recv_message(workers_, frames);
  }

  // What became of a message to a submitter.
  struct Delivery {
    enum class Kind {
      kSent,       // sent, or held behind earlier answers to retry (flush())
      kGone,       // the submitter is not connected: dropped
      kOverLimit,  // its pipe is full and its held answers (or all) are at their bound: dropped
    };
    Kind kind = Kind::kSent;
    size_t held_for_client = 0;  // kOverLimit: bytes held for this submitter
    size_t held_in_all = 0;      // kOverLimit: bytes held for every submitter
    size_t size = 0;             // kOverLimit: this message's bytes
  };
  Delivery to_client(const std::string& route, std::vector<std::string> parts);
  // Live output to a submitter: sent only if it goes now, behind nothing held for it; else dropped
  // (false). It never waits, so it never delays an answer nor holds memory of the broker's.
  bool output_to_client(const std::string& route, const std::vector<std::string>& parts) {
    return held_.find(route) == held_.end() &&
           wire::send_message(clients_, parts, route) == wire::SendStatus::kOk;
  }
  // Retries held answers, in order per submitter. Returns how many were dropped (submitter gone).
  size_t flush();
  // Whether answers are held (the loop then polls again within a millisecond).
  bool holding() const { return held_messages_ > 0; }

  // A message to a worker. Never held: kWouldBlock if its pipe is full.
  wire::SendStatus to_worker(const std::string& route, const std::vector<std::string>& parts) {
    return wire::send_message(workers_, parts, route);
  }

 private:
  struct Held {
    std::deque<std::vector<std::string>> queue;
    size_t bytes = 0;
  };

  Settings settings_;
  std::string client_endpoint_;  // before the sockets: their construction writes these
  std::string worker_endpoint_;
  zmq::socket_t clients_;
  zmq::socket_t workers_;
  std::unordered_map<std::string, Held> held_;
  size_t held_messages_ = 0;
  size_t held_bytes_ = 0;
};

}  // namespace paddock::broker
