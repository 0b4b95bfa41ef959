// paddock ping: is the broker there, and how far away?
#include <cstdio>

#include "broker_session.h"
#include "commands.h"
#include "exit_codes.h"

namespace paddock::cli {

CLI::App* add_ping_command(CLI::App& app, PingOptions& o) {
  auto* cmd = app.add_subcommand("ping",
                                 "Send PING to the broker and print the round trip. "
                                 "Exits 0 on PONG, 69 when none comes.");
  add_broker_option(*cmd, o.broker);
  add_curve_options(*cmd, o.curve);
  cmd->add_option("--wait-ms", o.wait_ms, "how long to wait for PONG")->capture_default_str();
  return cmd;
}

int run_ping(const PingOptions& o) {
  using Clock = std::chrono::steady_clock;
  try {
    BrokerSession session(o.broker, std::chrono::milliseconds(o.wait_ms), o.curve);
    const auto start = Clock::now();
    session.client().ping();
    while (!session.broker_silent()) {
      auto ev = session.next(std::chrono::milliseconds(50));
      if (ev && ev->kind == client::Event::Kind::kPong) {
        const double ms = std::chrono::duration<double, std::milli>(Clock::now() - start).count();
        std::printf("pong from %s in %.2f ms\n", o.broker.c_str(), ms);
        return exit_code::kOk;
      }
    }
    std::fprintf(stderr, "error: %s\n", session.silence_message().c_str());
    return exit_code::kUnavailable;
  } catch (const client::ClientError& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return exit_code::kUsage;
  }
}

}  // namespace paddock::cli
