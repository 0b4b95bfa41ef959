// paddock-load's command line: what to run (a job template), how hard (closed or open loop), for
// how long, and where the report goes.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "cli/curve_flags.h"
#include "paddock/schemas/messages.h"

namespace paddock::load {

// Thrown for a bad command line or template; main prints `message` and exits `status`.
struct UsageError {
  std::string message;
  int status;
};

struct LoadOptions {
  std::string broker = "tcp://127.0.0.1:5555";
  cli::CurveFlags curve;  // --broker-public-key, --curve-key

  // How many, how long. Neither given: 1000 jobs. --rate with --duration only: rate x duration.
  std::optional<uint64_t> jobs;
  std::optional<double> duration_s;  // stop sending new jobs after this long

  // Closed loop (this many jobs outstanding) or open loop (this many sent per second).
  // Neither given: closed loop with 100.
  std::optional<uint32_t> concurrency;
  std::optional<double> rate;

  // The job template: a JSON job file, or the flags below.
  std::string template_file;
  std::vector<std::string> argv;
  std::string image = "default";
  uint32_t vcpus = 1;
  uint32_t mem_mib = 128;
  uint32_t timeout_ms = 30'000;
  uint32_t output_cap = 1 << 20;
  int32_t priority = 0;
  std::string stdin_data;
  bool stream = false;  // JobRequest::stream: live output

  std::string id_prefix;  // job ids are "<prefix>-<n>"; default "load-<8 random hex digits>"
  double timeout_s = 30;  // give up when nothing at all is answered for this long

  bool json = false;
  std::string json_out;
};

// Declares every option on `app` (the whole command line of paddock-load).
void add_load_options(CLI::App& app, LoadOptions& o);

// Fills in the defaults that depend on what was given (jobs, concurrency, id prefix).
// Throws UsageError for combinations that make no sense.
void resolve(LoadOptions& o);

// The job every submission copies (job_id left empty), from --template or the flags, validated
// against the protocol's limits. Throws UsageError naming the file or field.
schemas::JobRequest make_template(const LoadOptions& o);

}  // namespace paddock::load
