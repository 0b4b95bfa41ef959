// The load loop: sends copies of one job template to a broker, closed loop (a fixed number
// outstanding) or open loop (a fixed arrival rate, each job at its scheduled time), and tallies
// every answer. Single-threaded: one ZeroMQ connection, polled between sends.
#pragma once

#include "broker_session.h"
#include "load/options.h"
#include "load/tally.h"

namespace paddock::load {

struct Outcome {
  RunInfo run;
  Tally tally;
  int status = 0;       // exit status: 0 every job answered, 69 gave up, 130 interrupted
  std::string give_up;  // why the run stopped early, for stderr; empty when complete
};

// REQUIRES: resolve(opts) was called; `tmpl` from make_template(opts).
// Ctrl-C once stops sending and waits for the outstanding answers; twice stops at once.
Outcome run_load(const LoadOptions& opts, const schemas::JobRequest& tmpl,
                 cli::BrokerSession& session);

}  // namespace paddock::load
