// Runs one job on a provider, start to finish: take a ready clone from the warm pool of the job's
// VmSpec (warm) or else create and boot a VM (cold), exec the job, turn the outcome into a RESULT
// or an ERROR body, and destroy the VM (always, whatever happened before). With an answer sink
// the outcome is handed over as soon as it is known, before the teardown: the worker sends it
// then, and the submitter does not wait for the VM to go (the slot stays busy until it has).
#pragma once

#include <chrono>
#include <functional>
#include <optional>
#include <stop_token>
#include <string>
#include <variant>

#include "paddock/runtime/provider.h"
#include "paddock/schemas/messages.h"
#include "paddock/worker/warm_pool.h"

namespace paddock::worker {

using Outcome = std::variant<schemas::JobResult, schemas::JobError>;

struct ExecutionContext {
  std::string worker_id;
  std::string vm_id;  // unique per job on this worker; the id of a cold-booted VM
  // The worker's warm pools, or nullptr (--warm off): every job boots cold.
  WarmPools* warm = nullptr;
  // Told once the job's VM runs (warm or cold) and how long that took (the RESULT's start_us).
  std::function<void(bool warm, std::chrono::microseconds took)> on_vm_started = nullptr;
  // Given the job's outcome exactly once, on every path, before the VM is torn down; its RESULT's
  // timings.teardown_us is then 0 (the teardown comes after). Empty: the outcome is returned
  // only, after the teardown, with teardown_us measured.
  std::function<void(const Outcome&)> answer = nullptr;
  // A streaming job's (JobRequest::stream) output as it is written: the step (a job with steps)
  // and the piece of its stream. Called on the job's thread, in order, before `answer`. Empty:
  // the job's output is only in its outcome.
  std::function<void(std::optional<uint32_t> step, schemas::OutputStream stream, uint64_t offset,
                     std::string_view data)>
      on_output = nullptr;
  // Told how long the VM's teardown took, after it (nothing for a job that never had a VM).
  std::function<void(std::chrono::microseconds took)> on_teardown = nullptr;
};

// Returns the outcome (the one `ctx.answer` was given, if set), after the teardown.
// REQUIRES: `provider` (and `ctx.warm`, if set) outlive the call; `ctx.warm` drives the same
// provider. Never throws.
Outcome execute_job(runtime::Provider& provider, const schemas::JobDispatch& dispatch,
                    const ExecutionContext& ctx, std::stop_token cancel);

// The ERROR body, InvalidRequest (100, not retryable), for a job this worker cannot take as sent
// (a request the codec refuses, a JOB it cannot decode, a result no frame can carry); `message`
// names the field ("egress[0].cidr: ...") and is cut to the wire's limit.
schemas::JobError invalid_request_error(const schemas::JobDispatch& dispatch,
                                        const std::string& worker_id, const std::string& message);

// The ERROR body for a runtime error (name, code, exact message, structured fields).
schemas::JobError job_error_from(const runtime::Error& error, const schemas::JobDispatch& dispatch,
                                 const std::string& worker_id);

}  // namespace paddock::worker
