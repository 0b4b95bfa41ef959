#include "broker_session.h"

#include <cerrno>
#include <cstdio>

namespace paddock::cli {
namespace {

constexpr auto kPingAfter = std::chrono::milliseconds(1000);

std::optional<curve::ClientKeys> load_keys(const CurveFlags& flags) {
  try {
    return curve::load_client_keys(flags.broker_public_key, flags.curve_key);
  } catch (const curve::KeyError& e) {
    throw client::ClientError(e.what());
  }
}

std::unique_ptr<client::Client> connect(const std::string& endpoint,
                                        const std::optional<curve::ClientKeys>& keys) {
  try {
    return std::make_unique<client::Client>(endpoint, keys);
  } catch (const zmq::error_t& e) {
    throw client::ClientError("invalid broker endpoint '" + endpoint + "': " + e.what() +
                              " (expected e.g. tcp://127.0.0.1:5555)");
  }
}

}  // namespace

void add_curve_options(CLI::App& cmd, CurveFlags& flags) {
  cmd.add_option("--broker-public-key", flags.broker_public_key,
                 "CURVE: the broker's public key (its NAME.pub file, or the Z85 text); with "
                 "--curve-key")
      ->envname("PADDOCK_BROKER_KEY");
  cmd.add_option("--curve-key", flags.curve_key,
                 "CURVE: this submitter's secret key file (NAME.key from 'paddock keys generate', "
                 "mode 0600); its public key must be in the broker's --client-allow list")
      ->envname("PADDOCK_CURVE_KEY");
}

BrokerSession::BrokerSession(const std::string& endpoint, std::chrono::milliseconds silence_limit,
                             const CurveFlags& curve)
    : endpoint_(endpoint),
      curve_(!curve.broker_public_key.empty()),
      silence_limit_(silence_limit),
      client_(connect(endpoint, load_keys(curve))),
      last_heard_(Clock::now()),
      last_ping_(Clock::now() - kPingAfter) {}

std::optional<client::Event> BrokerSession::next(std::chrono::milliseconds slice) {
  const auto now = Clock::now();
  if (now - last_heard_ >= kPingAfter && now - last_ping_ >= kPingAfter) {
    client_->try_ping();  // never blocks: a refused connection shows as silence
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
  std::string message = "the broker at " + endpoint_ + " did not answer for " + buf +
                        " s: is paddock-broker running, and is this its client endpoint (not the "
                        "worker one)?";
  if (curve_) {
    message += " This connection uses CURVE: is --broker-public-key the broker's key, and is "
               "--curve-key's public key in the broker's --client-allow list?";
  } else {
    message += " If the broker uses CURVE, give --broker-public-key and --curve-key.";
  }
  return message;
}

}  // namespace paddock::cli
