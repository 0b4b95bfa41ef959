#include "broker_session.h"

#include <cerrno>
#include <cstdio>

namespace paddock::cli {
namespace {

constexpr auto kPingAfter = std::chrono::milliseconds(1000);

std::unique_ptr<client::Client> connect(const std::string& endpoint) {
  try {
    return std::make_unique<client::Client>(endpoint);
  } catch (const zmq::error_t& e) {
    throw client::ClientError("invalid broker endpoint '" + endpoint + "': " + e.what() +
                              " (expected e.g. tcp://127.0.0.1:5555)");
  }
}

}  // namespace

BrokerSession::BrokerSession(const std::string& endpoint, std::chrono::milliseconds silence_limit)
    : endpoint_(endpoint),
      silence_limit_(silence_limit),
      client_(connect(endpoint)),
      last_heard_(Clock::now()),
      last_ping_(Clock::now() - kPingAfter) {}

std::optional<client::Event> BrokerSession::next(std::chrono::milliseconds slice) {
  const auto now = Clock::now();
  if (now - last_heard_ >= kPingAfter && now - last_ping_ >= kPingAfter) {
    client_->ping();
    last_ping_ = now;
  }
  std::optional<client::Event> ev;
  try {
    ev = client_->next(slice);
  } catch (const zmq::error_t& e) {
    if (e.num() != EINTR) throw;  // a signal (Ctrl-C) interrupted the poll: the caller looks
    return std::nullopt;
  }
  if (ev) last_heard_ = Clock::now();
  return ev;
}

bool BrokerSession::broker_silent() const { return Clock::now() - last_heard_ > silence_limit_; }

std::string BrokerSession::silence_message() const {
  const auto secs = std::chrono::duration<double>(silence_limit_).count();
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g", secs);
  return "the broker at " + endpoint_ + " did not answer for " + buf +
         " s: is paddock-broker running, and is this its client endpoint (not the worker one)?";
}

}  // namespace paddock::cli
