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

// "tcp://a:5555,tcp://b:5555": brokers sharing one queue, tried in turn (client::Failover).
std::vector<std::string> split_endpoints(const std::string& list) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start <= list.size()) {
    const size_t comma = list.find(',', start);
    const size_t end = comma == std::string::npos ? list.size() : comma;
    if (end > start) out.push_back(list.substr(start, end - start));
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  return out;
}

std::unique_ptr<client::Client> connect(const std::string& endpoint,
                                        const std::optional<curve::ClientKeys>& keys,
                                        std::chrono::milliseconds silence_limit) {
  try {
    auto endpoints = split_endpoints(endpoint);
    if (endpoints.size() > 1) {
      // Move on well before the command would give up on silence.
      const auto per_broker = silence_limit / static_cast<int>(endpoints.size() + 1);
      return std::make_unique<client::Client>(std::move(endpoints), keys,
                                              client::Failover{std::min<std::chrono::milliseconds>(
                                                  per_broker, std::chrono::seconds(3))});
    }
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
      client_(connect(endpoint, load_keys(curve), silence_limit)),
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
    message +=
        " This connection uses CURVE: is --broker-public-key the broker's key, and is "
        "--curve-key's public key in the broker's --client-allow list?";
  } else {
    message += " If the broker uses CURVE, give --broker-public-key and --curve-key.";
  }
  return message;
}

}  // namespace paddock::cli
