// A connection to the broker's client endpoint that notices when the broker is not there.
// ZeroMQ connects lazily and queues what we send, so an absent broker looks like silence. The
// session sends PING whenever the broker has been quiet for a second; if nothing at all (not even
// PONG) arrives for `silence_limit`, broker_silent() turns true and the command gives up (exit 69).
#pragma once

#include <chrono>
#include <memory>
#include <optional>
#include <string>

#include "curve_flags.h"
#include "paddock/client/client.h"

namespace paddock::cli {

class BrokerSession {
 public:
  using Clock = std::chrono::steady_clock;

  // Throws client::ClientError with a readable message if `endpoint` is not a valid endpoint or
  // a CURVE key file cannot be used (missing, malformed, a secret key readable by others).
  BrokerSession(const std::string& endpoint, std::chrono::milliseconds silence_limit,
                const CurveFlags& curve = {});

  client::Client& client() { return *client_; }
  const std::string& endpoint() const { return endpoint_; }

  // The next message from the broker (PONG included), or nullopt after at most `slice`.
  std::optional<client::Event> next(std::chrono::milliseconds slice);

  // Nothing arrived from the broker for silence_limit despite PINGs.
  bool broker_silent() const;
  // "the broker at tcp://... did not answer for 10 s: is paddock-broker running ...?"
  std::string silence_message() const;

 private:
  std::string endpoint_;
  bool curve_ = false;
  std::chrono::milliseconds silence_limit_;
  std::unique_ptr<client::Client> client_;
  Clock::time_point last_heard_;
  Clock::time_point last_ping_;
};

}  // namespace paddock::cli
