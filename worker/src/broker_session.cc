#include "broker_session.h"

#include <spdlog/spdlog.h>

#include "paddock/schemas/codec.h"
#include "paddock/schemas/frames.h"
#include "paddock/wire/zmq_frames.h"

namespace paddock::worker {

namespace sc = paddock::schemas;

BrokerSession::BrokerSession(zmq::context_t& context, std::string endpoint, sc::Ready identity,
                             uint32_t share, SessionTiming timing,
                             std::optional<curve::ClientKeys> curve)
    : context_(context),
      endpoint_(std::move(endpoint)),
      identity_(std::move(identity)),
      share_(share),
      timing_(timing),
      curve_(std::move(curve)),
      backoff_(timing.reconnect_min) {}

void BrokerSession::connect(Clock::time_point now) {
  socket_.emplace(context_, zmq::socket_type::dealer);
  wire::apply_common_options(*socket_);
  if (curve_) curve::apply(*socket_, *curve_);
  socket_->set(zmq::sockopt::sndhwm, 100'000);
  socket_->set(zmq::sockopt::rcvhwm, 100'000);
  socket_->connect(endpoint_);
  sc::Ready ready = identity_;
  // A draining worker registers with no credits: it only delivers what it still holds.
  ready.slots = drain_sent_ ? 0 : share_ - std::min(share_, in_flight_);
  credits_held_by_broker_ = ready.slots;
  credits_to_grant_ = 0;  // READY states them
  if (drain_sent_) drained_ = true;
  // Only outcomes survive a reconnect: READY re-states the credits, so an old CREDIT would
  // grant a slot twice. READY goes first on the new socket; the outcomes follow it.
  std::erase_if(outbox_, [](const std::vector<std::string>& m) {
    const auto c = static_cast<sc::Command>(m[1][0]);
    return c != sc::Command::kResult && c != sc::Command::kError;
  });
  outbox_.push_front(sc::make_message(sc::Command::kReady, {sc::encode(ready)}));
  last_heard_ = now;
  next_heartbeat_ = now + timing_.heartbeat;
  flush();
  spdlog::info("connected to broker {} with {} credit(s){}", endpoint_, ready.slots,
               curve_ ? " over CURVE" : "");
}

void BrokerSession::disconnect(Clock::time_point now, const char* why) {
  spdlog::warn("broker {}: {}; reconnecting in about {} ms", endpoint_, why, backoff_.count());
  socket_.reset();
  std::uniform_real_distribution<double> jitter(0.5, 1.5);
  reconnect_at_ =
      now + std::chrono::duration_cast<std::chrono::milliseconds>(backoff_ * jitter(rng_));
  backoff_ = std::min(backoff_ * 2, timing_.reconnect_max);
}

void BrokerSession::heard(Clock::time_point now) {
  last_heard_ = now;
  backoff_ = timing_.reconnect_min;
}

void BrokerSession::housekeeping(Clock::time_point now) {
  if (!socket_) {
    if (now >= reconnect_at_) connect(now);
    return;
  }
  if (now - last_heard_ > timing_.heartbeat * timing_.liveness) {
    disconnect(now, "silent for too long");
    return;
  }
  if (now >= next_heartbeat_) {
    if (outbox_.empty()) {
      std::vector<std::string> bodies;
      if (status_source_) bodies.push_back(sc::encode(status_source_()));
      send(sc::make_message(sc::Command::kHeartbeat, std::move(bodies)));
    }
    next_heartbeat_ = now + timing_.heartbeat;
  }
}

Clock::time_point BrokerSession::next_deadline() const {
  if (!socket_) return reconnect_at_;
  return std::min(next_heartbeat_, last_heard_ + timing_.heartbeat * timing_.liveness);
}

void BrokerSession::send(std::vector<std::string> parts) {
  outbox_.push_back(std::move(parts));
  flush();
}

void BrokerSession::flush() {
  if (!socket_) return;
  while (credits_to_grant_ > 0) {
    const uint32_t n = std::min<uint32_t>(credits_to_grant_, 4096);  // Credit's limit
    credits_to_grant_ -= n;
    credits_held_by_broker_ += n;
    outbox_.push_back(sc::make_message(sc::Command::kCredit, {sc::encode(sc::Credit{n})}));
  }
  while (!outbox_.empty()) {
    if (wire::send_message(*socket_, outbox_.front()) != wire::SendStatus::kOk) return;
    outbox_.pop_front();
  }
}

void BrokerSession::job_received() {
  if (credits_held_by_broker_ == 0) {
    spdlog::warn("broker {} sent a job without a credit; running it anyway", endpoint_);
  } else {
    --credits_held_by_broker_;
  }
  ++in_flight_;
}

void BrokerSession::job_finished(bool draining) {
  if (in_flight_ > 0) --in_flight_;
  if (draining || !socket_) return;  // a reconnect's READY re-grants free slots
  ++credits_to_grant_;
}

void BrokerSession::start_drain() {
  drain_sent_ = true;
  if (!socket_) {
    drained_ = true;
    return;
  }
  send(sc::make_message(sc::Command::kDrain));
}

}  // namespace paddock::worker
