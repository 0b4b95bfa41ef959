// What a paddock-load run counts: the answers by kind, and two latency histograms. Rendered as
// the final summary, text or one JSON object (the --json contract, README "Load tool").
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "load/histogram.h"
#include "paddock/schemas/messages.h"

namespace paddock::load {

struct Tally {
  uint64_t ok = 0;            // RESULTs: the job ran, whatever its exit status
  uint64_t nonzero_exit = 0;  // RESULTs with exit_code != 0 (timeouts included)
  uint64_t timed_out = 0;
  uint64_t warm = 0;  // RESULTs from a VM restored from a template snapshot
  uint64_t cold = 0;
  uint64_t errors = 0;  // ERRORs: Paddock could not run the job
  std::map<std::string, uint64_t> errors_by_variant;
  std::map<std::string, uint64_t> backends;  // RESULTs per backend ("memory" is the test double)
  uint64_t rejected = 0;           // REJECTED (QueueFull) answers; each job was sent again
  uint64_t duplicate_answers = 0;  // a second final answer for one of our jobs: a broker bug
  uint64_t output_chunks = 0;      // OUTPUT chunks received (jobs sent with --stream)
  uint64_t output_bytes = 0;       // ... and their data's bytes
  Histogram to_accepted;           // µs from submission to ACCEPTED
  Histogram to_result;             // µs from submission to RESULT or ERROR

  void add_result(const schemas::JobResult& r, uint64_t latency_us);
  void add_error(const schemas::JobError& e, uint64_t latency_us);
  uint64_t answered() const { return ok + errors; }
};

// What the run was, for the summary.
struct RunInfo {
  std::string broker;
  std::optional<uint32_t> concurrency;  // closed loop
  std::optional<double> rate;           // open loop
  uint64_t jobs = 0;                    // sent (each once, however often it was resubmitted)
  double elapsed_s = 0;                 // from the first send to the last answer
  bool complete = true;                 // false: gave up or interrupted with jobs unanswered
};

// {"mode", "concurrency" | "rate", "jobs", "ok", "errors", "errors_by_variant", ...}; README.
nlohmann::ordered_json summary_json(const RunInfo& run, const Tally& t);
// A few lines for people: counts, throughput, a latency table in milliseconds.
std::string summary_text(const RunInfo& run, const Tally& t);

}  // namespace paddock::load
