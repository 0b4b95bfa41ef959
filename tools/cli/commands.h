// The paddock CLI's subcommands. Each has an options struct, a function that declares its
// command line on a CLI11 app, and a function that runs it and returns the process exit status
// (exit_codes.h).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "curve_flags.h"

namespace paddock::cli {

inline constexpr const char* kDefaultBroker = "tcp://127.0.0.1:5555";

struct SubmitOptions {
  std::string broker = kDefaultBroker;
  CurveFlags curve;
  std::string job_id;  // generated when empty
  std::string image = "default";
  uint32_t vcpus = 1;
  uint32_t mem_mib = 128;
  uint32_t timeout_ms = 30'000;
  uint32_t output_cap = 1 << 20;
  int32_t priority = 0;
  std::vector<std::string> env;   // NAME=VALUE
  std::vector<std::string> tags;  // KEY=VALUE
  std::string stdin_file;         // a path, or "-" for our own stdin
  std::optional<uint32_t> wait_ms;
  uint32_t broker_timeout_ms = 10'000;
  bool verbose = false;  // a line on stderr: worker, backend, warm or cold (template), timings
  std::vector<std::string> argv;
  // Instead of argv: steps, each run as `sh -c STEP` in one VM (PROTOCOL.md, "Steps");
  // keep_going runs the steps after one that failed too.
  std::vector<std::string> steps;
  bool keep_going = false;
  // Print the output only from the RESULT, not live as it is written (PROTOCOL.md, "Live output").
  bool no_stream = false;
};
CLI::App* add_submit_command(CLI::App& app, SubmitOptions& opts);
int run_submit(const SubmitOptions& opts);

struct BatchOptions {
  std::string broker = kDefaultBroker;
  CurveFlags curve;
  std::string file;  // JSON lines; "-" for stdin
  bool json = false;
  size_t window = 1000;
  uint32_t broker_timeout_ms = 10'000;
};
CLI::App* add_batch_command(CLI::App& app, BatchOptions& opts);
int run_batch(const BatchOptions& opts);

struct CancelOptions {
  std::string broker = kDefaultBroker;
  CurveFlags curve;
  std::string job_id;
  uint32_t wait_ms = 5'000;
};
CLI::App* add_cancel_command(CLI::App& app, CancelOptions& opts);
int run_cancel(const CancelOptions& opts);

struct PingOptions {
  std::string broker = kDefaultBroker;
  CurveFlags curve;
  uint32_t wait_ms = 5'000;
};
CLI::App* add_ping_command(CLI::App& app, PingOptions& opts);
int run_ping(const PingOptions& opts);

struct DeadLettersOptions {
  std::string journal;
  std::string store;  // a shared queue's PostgreSQL URI instead of a journal
  size_t limit = 100;
  bool json = false;
};
CLI::App* add_dead_letters_command(CLI::App& app, DeadLettersOptions& opts);
int run_dead_letters(const DeadLettersOptions& opts);

struct KeysOptions {
  std::string dir = ".";
  std::string name;
  std::string file;
  std::string allowlist;
  CLI::App* generate = nullptr;
  CLI::App* show_public = nullptr;
  CLI::App* allow = nullptr;
};
CLI::App* add_keys_command(CLI::App& app, KeysOptions& opts);
int run_keys(const KeysOptions& opts);

// --broker, with PADDOCK_BROKER as its environment fallback.
void add_broker_option(CLI::App& cmd, std::string& broker);

}  // namespace paddock::cli
