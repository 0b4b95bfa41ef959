// paddock cancel: ask the broker to cancel a job and print what it answered.
#include <cstdio>

#include "broker_session.h"
#include "commands.h"
#include "exit_codes.h"
#include "outcome.h"
#include "paddock/schemas/codes.h"

namespace paddock::cli {
namespace {

namespace sc = paddock::schemas;
using std::chrono::milliseconds;

// After the PONG that follows our CANCEL, how long a late answer may still take (a running job
// is stopped by its worker first).
constexpr milliseconds kGraceAfterPong(1000);

int print_error(const sc::JobError& e) {
  if (e.code == sc::code(sc::JobCode::kCancelled)) {
    std::printf("cancelled: job %s: %s\n", e.job_id.c_str(), describe_error(e).c_str());
    return exit_code::kOk;
  }
  std::fprintf(stderr, "error: %s\n", describe_error(e).c_str());
  if (e.code == sc::code(sc::JobCode::kUnknownJob)) {
    std::fprintf(stderr,
                 "paddock: the broker holds no job with that id (finished, or never submitted)\n");
    return 1;
  }
  std::printf("job %s ended before it could be cancelled\n", e.job_id.c_str());
  return exit_code::kOk;
}

}  // namespace

CLI::App* add_cancel_command(CLI::App& app, CancelOptions& o) {
  auto* cmd = app.add_subcommand(
      "cancel",
      "Cancel a queued or running job and print the broker's answer. Exits 0 when the job is\n"
      "cancelled (or had already ended: its answer is printed), 1 when the broker does not hold\n"
      "it (UnknownJob), 69 when the broker does not answer.");
  add_broker_option(*cmd, o.broker);
  add_curve_options(*cmd, o.curve);
  cmd->add_option("--wait-ms", o.wait_ms, "how long to wait for the broker")->capture_default_str();
  cmd->add_option("job_id", o.job_id, "the job to cancel")->required();
  return cmd;
}

int run_cancel(const CancelOptions& o) {
  try {
    BrokerSession session(o.broker, milliseconds(o.wait_ms), o.curve);
    session.client().cancel(o.job_id);
    session.client().ping();  // answered after the CANCEL: tells us the broker has handled it
    std::optional<BrokerSession::Clock::time_point> pong_at;
    while (true) {
      auto ev = session.next(milliseconds(100));
      using K = client::Event::Kind;
      if (ev && ev->kind == K::kError && ev->error.job_id == o.job_id)
        return print_error(ev->error);
      if (ev && ev->kind == K::kResult && ev->result.job_id == o.job_id) {
        std::printf("job %s finished before it could be cancelled: %s\n", o.job_id.c_str(),
                    describe_result(ev->result).c_str());
        return exit_code::kOk;
      }
      if (ev && ev->kind == K::kPong && !pong_at) pong_at = BrokerSession::Clock::now();
      if (pong_at && BrokerSession::Clock::now() - *pong_at > kGraceAfterPong) {
        std::printf(
            "cancel of job %s sent: the broker took it and will send the job's final answer "
            "(Cancelled, or its result) to the connection that submitted it\n",
            o.job_id.c_str());
        return exit_code::kOk;
      }
      if (session.broker_silent()) {
        std::fprintf(stderr, "error: %s\n", session.silence_message().c_str());
        return exit_code::kUnavailable;
      }
    }
  } catch (const client::ClientError& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return exit_code::kUsage;
  }
}

}  // namespace paddock::cli
