// Message types of Paddock's wire protocol, version 1 (schemas/PROTOCOL.md is the contract).
// Plain values: no I/O, no ZeroMQ. Byte strings (stdin, stdout, file data) are std::string. The
// parts a job shares with the runtime and the guest agent (files, egress rules, the outcome) are
// job.h's.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "paddock/schemas/job.h"

namespace paddock::schemas {

// One step of a job with steps (JobRequest::steps; PROTOCOL.md, "Steps"): a command run in the
// job's VM after the steps before it, in the same working directory, whose files persist.
struct Step {
  std::vector<std::string> argv;
  std::map<std::string, std::string> env;  // over the job's env (a step's value wins)
  std::string stdin_data;
  uint32_t timeout_ms = 30'000;        // decoded: the job's timeout_ms when the step gives none
  uint32_t output_cap = 1 << 20;       // decoded: the job's output_cap when the step gives none
  std::vector<std::string> files_out;  // collected after this step
  bool operator==(const Step&) const = default;
};

struct JobRequest {
  std::string job_id;  // client-chosen idempotency key
  std::string image = "default";
  std::vector<std::string> argv;
  std::map<std::string, std::string> env;
  std::string stdin_data;
  std::vector<FileIn> files;
  std::vector<std::string> files_out;  // paths to collect after the run
  uint32_t vcpus = 1;
  uint32_t mem_mib = 128;
  uint32_t timeout_ms = 30'000;
  uint32_t output_cap = 1 << 20;  // bytes kept per stream (stdout, stderr)
  std::vector<EgressRule> egress;
  int32_t priority = 0;      // higher runs first; FIFO within a priority
  uint64_t deadline_ms = 0;  // unix epoch milliseconds; 0 = none
  std::map<std::string, std::string> tags;
  // Steps instead of one command (argv, stdin and files_out are then empty): run in order in one
  // VM; `files` are written before the first; timeout_ms bounds them all together. After a step
  // that fails (exit code not 0, a signal, its timeout), the rest run only if !stop_on_failure.
  std::vector<Step> steps;
  bool stop_on_failure = true;
  // Live output (PROTOCOL.md, "Live output"): the submitting connection gets OUTPUT messages with
  // the job's stdout and stderr as it writes them, before the RESULT (which stays authoritative).
  bool stream = false;
  bool operator==(const JobRequest&) const = default;
};

// What one step did (JobResult::steps): its outcome, as a single command's, and its run time.
struct StepResult : ExecOutcome {
  uint64_t exec_us = 0;
  bool operator==(const StepResult&) const = default;
};

// The job ran: the sandbox worked, whatever the program did. The program's outcome (exit code,
// signal, output, flags, files out, usage) is job.h's ExecOutcome, the same value the guest agent
// reports; the rest is the worker's.
struct JobResult : ExecOutcome {
  std::string job_id;
  // Worker -> broker only, optional: the tenant of the JobDispatch it answers, echoed (PROTOCOL.md,
  // "Tenants"). "" = not said (encoded only when set).
  std::string tenant;
  Timings timings;
  std::string worker_id;
  uint32_t attempt = 1;
  bool warm = false;    // started from a warm pool's clone, not cold-booted
  std::string backend;  // "memory" (test double: nothing was executed in a VM), "qemu", ...
  // Wire key "template": the template VM the job's VM was restored from; "" when cold.
  std::string template_vm;
  // A job with steps: one per step run, in order (the steps after one that failed, with
  // stop_on_failure, are not run and have none). The outcome above is then the last step's exit
  // status (exit_code, signal, timed_out, oom_killed) with no output or files of its own, and
  // usage summed over the steps.
  std::vector<StepResult> steps;
  bool operator==(const JobResult&) const = default;
};

// Paddock could not run the job (or refused the request).
struct JobError {
  std::string job_id;  // empty when the frame was too broken to name a job
  std::string tenant;  // as JobResult's
  uint32_t code = 0;
  std::string variant;  // "VmNotFound", "InvalidRequest", ...
  std::string message;
  std::optional<std::string> vm_id;
  std::optional<std::string> snapshot_id;
  std::optional<std::string> from;
  std::optional<std::string> to;
  std::string worker_id;
  uint32_t attempt = 0;
  bool retryable = false;
  // Wire key "index", optional: of an ERROR 100 that answers one body of a multi-body client
  // message (SUBMIT, FETCH, CANCEL), that body's position in the message, 0 for the first; so the
  // error is attributable when the body's job_id cannot be read (PROTOCOL.md, "JobError").
  std::optional<uint32_t> index;
  bool operator==(const JobError&) const = default;
};

// OUTPUT body (worker -> broker, broker -> client): a chunk of a streaming job's stdout or stderr
// (PROTOCOL.md, "Live output"). The bytes at [offset, offset + data.size()) of that stream of that
// attempt (of that step, for a job with steps), at most kMaxOutputChunk of them. Chunks come in
// order; a chunk that was dropped on the way leaves a gap, seen in the next chunk's offset.
struct OutputChunk {
  std::string job_id;
  std::string tenant;  // worker -> broker only, as JobResult's ("" = not said)
  uint32_t attempt = 1;
  // For a job with steps, the step (0-based) whose output this is; each step's offsets start at 0.
  // nullopt (not on the wire) for a job without steps.
  std::optional<uint32_t> step;
  OutputStream stream = OutputStream::kStdout;  // wire: "stdout" or "stderr"
  uint64_t offset = 0;
  std::string data;
  bool operator==(const OutputChunk&) const = default;
};

// Broker -> worker JOB body.
struct JobDispatch {
  // The tenant whose job this is ("" = not said: "local"); the worker echoes it in the outcome.
  std::string tenant;
  uint32_t attempt = 1;
  uint64_t queued_us = 0;  // time the job waited in the broker's queue
  JobRequest request;
  bool operator==(const JobDispatch&) const = default;
};

// Worker -> broker READY body.
struct Ready {
  std::string worker_id;
  uint32_t slots = 0;                     // credits granted with this READY
  std::vector<std::string> capabilities;  // e.g. "backend:memory", "image:default"
  bool operator==(const Ready&) const = default;
};

// Worker -> broker CREDIT body: grants more jobs.
struct Credit {
  uint32_t credits = 0;
  bool operator==(const Credit&) const = default;
};

// One warm pool as a worker reports it: its template prefix ("tpl-default-1x128"), the clones
// ready now and the number it aims at.
struct WarmPoolStatus {
  std::string template_name;  // wire key "template"
  uint64_t ready = 0;
  uint64_t target = 0;
  bool operator==(const WarmPoolStatus&) const = default;
};

// Worker -> broker HEARTBEAT body (optional): what the dashboard shows of a worker.
struct WorkerStatus {
  std::string host;  // the worker's hostname
  std::vector<WarmPoolStatus> warm_pools;
  bool operator==(const WorkerStatus&) const = default;
};

// Broker -> client ACCEPTED body.
struct Accepted {
  std::vector<std::string> job_ids;
  bool operator==(const Accepted&) const = default;
};

// CANCEL (both directions) and FETCH bodies.
struct JobRef {
  std::string job_id;
  // Broker -> worker CANCEL only, optional: the job's tenant ("" = not said). A submitter's is
  // ignored: the broker knows its tenant from its connection.
  std::string tenant;
  bool operator==(const JobRef&) const = default;
};

}  // namespace paddock::schemas
