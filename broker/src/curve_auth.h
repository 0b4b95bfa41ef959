// The broker's CURVE authentication (README.md, "Operating Paddock"; PROTOCOL.md, "Security").
//
// ZapHandler answers libzmq's ZAP requests (RFC 27) on inproc://zeromq.zap.01: a peer of the
// client endpoint (ZAP domain "clients") is let in only if its public key is in the client
// allowlist, a peer of the worker endpoint ("workers") only if it is in the worker allowlist, so
// a submitter's key cannot register as a worker nor a worker's key submit. Refusals are logged
// (rate-limited) with the peer's address and key.
//
// HandshakeMonitor watches a ROUTER's handshakes and logs the failures ZAP never sees: a peer
// without CURVE (mechanism mismatch) or one that spoke garbage.
//
// Thread-safety: owned and driven by the broker's loop thread; sockets are polled with the others.
#pragma once

#include <string>
#include <string_view>

#include <zmq.hpp>

#include "log_limiter.h"
#include "paddock/client/curve.h"

namespace paddock::broker {

inline constexpr const char* kClientZapDomain = "clients";
inline constexpr const char* kWorkerZapDomain = "workers";

struct ZapVerdict {
  bool allowed = false;
  std::string user_id;  // the key's name in the allowlist, when allowed
  std::string reason;   // why not, when refused
};

// The decision for one request: `key_z85` is the peer's public key (Z85).
ZapVerdict zap_verdict(std::string_view domain, std::string_view mechanism,
                       const std::string& key_z85, const curve::Allowlist& clients,
                       const curve::Allowlist& workers);

class ZapHandler {
 public:
  // Binds inproc://zeromq.zap.01 in `context`. REQUIRES: before any CURVE socket binds.
  ZapHandler(zmq::context_t& context, curve::Allowlist clients, curve::Allowlist workers);

  zmq::socket_t& socket() { return socket_; }
  // Answers every request waiting; never blocks.
  void handle_waiting();
  uint64_t refused() const { return refused_; }

 private:
  void handle(const std::vector<zmq::message_t>& request);

  zmq::socket_t socket_;
  curve::Allowlist clients_;
  curve::Allowlist workers_;
  LogLimiter log_{20};
  uint64_t refused_ = 0;
};

class HandshakeMonitor {
 public:
  // `name`: "client" or "worker", for the log and the inproc address.
  HandshakeMonitor(zmq::context_t& context, zmq::socket_ref watched, std::string name);

  zmq::socket_t& socket() { return socket_; }
  void handle_waiting();

 private:
  zmq::socket_t socket_;
  std::string name_;
  LogLimiter log_{20};
};

// True for ipc:// and inproc:// endpoints and tcp:// on a loopback address (127.0.0.0/8,
// localhost, ::1): plaintext there stays on this machine.
bool is_local_endpoint(const std::string& endpoint);

}  // namespace paddock::broker
