#include "paddock/worker/executor.h"

#include <algorithm>
#include <chrono>
#include <optional>

#include <spdlog/spdlog.h>

#include "paddock/schemas/codec.h"
#include "paddock/schemas/codes.h"
#include "paddock/schemas/limits.h"

namespace paddock::worker {
namespace {

namespace rt = paddock::runtime;
namespace sc = paddock::schemas;
using Clock = std::chrono::steady_clock;

uint64_t micros_since(Clock::time_point t) {
  return static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - t).count());
}

// The program a job runs: the request's own values (job.h), with its output cap for the files
// out as well as the streams.
rt::ExecRequest exec_request_from(const sc::JobRequest& r) {
  rt::ExecRequest e;
  e.argv = r.argv;
  e.env = r.env;
  e.stdin_data = r.stdin_data;
  e.files = r.files;
  e.files_out = r.files_out;
  e.timeout_ms = r.timeout_ms;
  e.output_cap = r.output_cap;
  e.files_out_cap = r.output_cap;
  return e;
}

// Step `i` of a job with steps: its own argv, stdin, caps and files out, the job's env under its
// own, the job's files written before the first, and at most `left_ms` of the job's time.
rt::ExecRequest exec_request_from(const sc::JobRequest& r, size_t i, uint32_t left_ms) {
  const sc::Step& st = r.steps[i];
  rt::ExecRequest e;
  e.argv = st.argv;
  e.env = r.env;
  for (const auto& [k, v] : st.env) e.env[k] = v;
  e.stdin_data = st.stdin_data;
  if (i == 0) e.files = r.files;
  e.files_out = st.files_out;
  e.timeout_ms = std::min(st.timeout_ms, left_ms);
  e.output_cap = st.output_cap;
  e.files_out_cap = st.output_cap;
  return e;
}

// How a job with steps went: the steps run, in order; `cancelled` when a CANCEL stopped one (the
// job is then answered Cancelled); an Error when the provider could not run one.
struct StepsRun {
  std::vector<sc::StepResult> steps;
  bool cancelled = false;
};

// The program's run, live when the job streams and someone listens (`step`: which one).
rt::Result<rt::ExecResult> run_exec(rt::Provider& provider, const std::string& vm_id,
                                    const rt::ExecRequest& exec, const sc::JobRequest& req,
                                    const ExecutionContext& ctx, std::optional<uint32_t> step,
                                    std::stop_token cancel) {
  if (!req.stream || !ctx.on_output) return provider.exec(vm_id, exec, std::move(cancel));
  return provider.exec_streaming(
      vm_id, exec, std::move(cancel),
      [&](sc::OutputStream stream, uint64_t offset, std::string_view data) {
        ctx.on_output(step, stream, offset, data);
      });
}

rt::Result<StepsRun> run_steps(rt::Provider& provider, const std::string& vm_id,
                               const sc::JobRequest& req, const ExecutionContext& ctx,
                               std::stop_token cancel) {
  // The job's timeout_ms bounds the steps together.
  const auto deadline = Clock::now() + std::chrono::milliseconds(req.timeout_ms);
  StepsRun run;
  for (size_t i = 0; i < req.steps.size(); ++i) {
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    if (left.count() <= 0) break;  // the step before used the last of it (and timed out)
    const auto t = Clock::now();
    auto x =
        run_exec(provider, vm_id, exec_request_from(req, i, static_cast<uint32_t>(left.count())),
                 req, ctx, static_cast<uint32_t>(i), cancel);
    if (!x) return x.error();
    if (x.value().cancelled) {
      run.cancelled = true;
      return run;
    }
    sc::StepResult step;
    static_cast<sc::ExecOutcome&>(step) = std::move(static_cast<sc::ExecOutcome&>(x.value()));
    step.exec_us = micros_since(t);
    if (step.signal != 0) step.exit_code = 128 + step.signal;
    const bool failed = step.exit_code != 0 || step.timed_out;
    run.steps.push_back(std::move(step));
    if (failed && req.stop_on_failure) break;
  }
  return run;
}

// A job with steps' own outcome: the last step's exit status, no output of its own, the usage of
// all (time summed, the peak the highest).
sc::ExecOutcome outcome_of_steps(const std::vector<sc::StepResult>& steps) {
  sc::ExecOutcome o;
  if (steps.empty()) return o;
  const auto& last = steps.back();
  o.exit_code = last.exit_code;
  o.signal = last.signal;
  o.timed_out = last.timed_out;
  o.oom_killed = last.oom_killed;
  for (const auto& s : steps) {
    o.usage.cpu_us += s.usage.cpu_us;
    o.usage.peak_memory_kib = std::max(o.usage.peak_memory_kib, s.usage.peak_memory_kib);
  }
  return o;
}

sc::JobError cancelled_error(const sc::JobDispatch& d, const std::string& worker_id) {
  sc::JobError e;
  e.job_id = d.request.job_id;
  e.tenant = d.tenant;
  e.code = sc::code(sc::JobCode::kCancelled);
  e.variant = std::string(sc::job_code_name(e.code));
  e.message = "cancelled while running";
  e.worker_id = worker_id;
  e.attempt = d.attempt;
  return e;
}

}  // namespace

sc::JobError job_error_from(const rt::Error& error, const sc::JobDispatch& dispatch,
                            const std::string& worker_id) {
  sc::JobError e;
  e.job_id = dispatch.request.job_id;
  e.tenant = dispatch.tenant;
  e.code = error.code();
  e.variant = std::string(error.name());
  // Within the wire's limit and valid UTF-8 (a command's stderr may be anything), or the broker
  // would refuse the ERROR and the job would stay assigned.
  e.message = sc::utf8_prefix(error.message(), sc::limits::kMaxMessage);
  e.vm_id = error.vm_id();
  e.snapshot_id = error.snapshot_id();
  e.from = error.from();
  e.to = error.to();
  e.worker_id = worker_id;
  e.attempt = dispatch.attempt;
  e.retryable = error.retryable();
  return e;
}

sc::JobError invalid_request_error(const sc::JobDispatch& dispatch, const std::string& worker_id,
                                   const std::string& message) {
  sc::JobError e;
  e.job_id = dispatch.request.job_id;
  e.tenant = dispatch.tenant;
  e.code = sc::code(sc::JobCode::kInvalidRequest);
  e.variant = std::string(sc::job_code_name(e.code));
  e.message = sc::utf8_prefix(message, sc::limits::kMaxMessage);
  e.worker_id = worker_id;
  e.attempt = dispatch.attempt;
  e.retryable = false;  // the same request fails the same way anywhere
  return e;
}

Outcome execute_job(rt::Provider& provider, const sc::JobDispatch& dispatch,
                    const ExecutionContext& ctx, std::stop_token cancel) {
  const auto t0 = Clock::now();
  const sc::JobRequest& req = dispatch.request;
  // Before any VM exists: answered, nothing to tear down.
  auto answer = [&](Outcome o) -> Outcome {
    if (ctx.answer) ctx.answer(o);
    return o;
  };
  // A request the codec refuses is the submitter's mistake, never a host's fault: answered
  // InvalidRequest (not retryable) before any VM exists, so that a runtime refusal of its egress,
  // say, is never taken for a Firewall fault and retried (decode_job_dispatch already checks it;
  // this keeps the rule for any other caller).
  if (auto bad = sc::validate(req)) {
    return answer(invalid_request_error(dispatch, ctx.worker_id, bad->message()));
  }

  rt::VmSpec spec{req.image, req.vcpus, req.mem_mib};
  // Warm: a clone from the pool (or restored on demand). Cold: create and boot. Either way the VM
  // exists from here on and every path destroys it.
  std::optional<WarmVm> clone;
  if (ctx.warm != nullptr) clone = ctx.warm->acquire(spec, dispatch.tenant);
  const std::string vm_id = clone ? clone->id() : ctx.vm_id;
  // Destroys the VM; how long that took. A failure is logged loudly: the job's answer stands.
  auto teardown = [&]() -> uint64_t {
    const auto t = Clock::now();
    auto down = clone ? clone->destroy() : provider.destroy(ctx.vm_id);
    const uint64_t took = micros_since(t);
    if (!down) {
      spdlog::error("job '{}': teardown of vm '{}' failed: {}", req.job_id, vm_id,
                    down.error().message());
    }
    if (ctx.on_teardown) ctx.on_teardown(std::chrono::microseconds(took));
    return took;
  };
  // With a VM: answered first (with a sink), then torn down.
  auto answer_and_teardown = [&](Outcome o) -> Outcome {
    answer(o);
    (void)teardown();
    return o;
  };
  auto fail = [&](const rt::Error& e) -> Outcome {
    return answer_and_teardown(job_error_from(e, dispatch, ctx.worker_id));
  };
  if (!clone) {
    if (auto st = provider.create(ctx.vm_id, spec); !st) {
      return answer(job_error_from(st.error(), dispatch, ctx.worker_id));
    }
    if (auto st = provider.start(ctx.vm_id); !st) return fail(st.error());
  }
  // The job's egress, before any of its code runs (no rules: the VM keeps no route out).
  if (auto st = provider.set_egress(vm_id, req.egress); !st) return fail(st.error());
  const uint64_t start_us = micros_since(t0);
  if (ctx.on_vm_started) ctx.on_vm_started(clone.has_value(), std::chrono::microseconds(start_us));
  const auto t_exec = Clock::now();
  sc::JobResult r;
  // The program's outcome as the runtime returned it (the same job.h value), or its steps', then
  // what the worker adds: the job, timings, the network counters, where it ran.
  if (req.steps.empty()) {
    auto exec = run_exec(provider, vm_id, exec_request_from(req), req, ctx, std::nullopt, cancel);
    if (!exec) return fail(exec.error());
    if (exec.value().cancelled)
      return answer_and_teardown(cancelled_error(dispatch, ctx.worker_id));
    static_cast<sc::ExecOutcome&>(r) = std::move(static_cast<sc::ExecOutcome&>(exec.value()));
  } else {
    auto run = run_steps(provider, vm_id, req, ctx, cancel);
    if (!run) return fail(run.error());
    if (run.value().cancelled) return answer_and_teardown(cancelled_error(dispatch, ctx.worker_id));
    static_cast<sc::ExecOutcome&>(r) = outcome_of_steps(run.value().steps);
    r.steps = std::move(run.value().steps);
  }
  const uint64_t exec_us = micros_since(t_exec);
  auto usage = provider.network_usage(vm_id);
  if (!usage) {
    spdlog::warn("job '{}': network counters of vm '{}': {}", req.job_id, vm_id,
                 usage.error().message());
  }
  r.job_id = req.job_id;
  r.tenant = dispatch.tenant;  // echoed: the broker tells two tenants' jobs of one job_id apart
  // One rule for every backend (PROTOCOL.md, JobResult): a job ended by a signal exits 128 + it.
  if (r.signal != 0) r.exit_code = 128 + r.signal;
  if (usage) {
    r.usage.bytes_in = usage.value().bytes_in;
    r.usage.bytes_out = usage.value().bytes_out;
    r.usage.packets_in = usage.value().packets_in;
    r.usage.packets_out = usage.value().packets_out;
    r.usage.egress_blocked = usage.value().egress_blocked;
  }
  r.worker_id = ctx.worker_id;
  r.attempt = dispatch.attempt;
  r.warm = clone.has_value();
  r.backend = std::string(provider.backend());
  r.template_vm = clone ? clone->template_vm() : "";
  // Every backend's result cut the same way to what one RESULT frame carries (limits.h).
  sc::fit_result(r, req);
  if (ctx.answer) {
    // Answered before the teardown: it is not in the timings (PROTOCOL.md, JobResult).
    r.timings = sc::Timings{dispatch.queued_us, start_us, exec_us, 0, micros_since(t0)};
    return answer_and_teardown(std::move(r));
  }
  const uint64_t teardown_us = teardown();
  r.timings = sc::Timings{dispatch.queued_us, start_us, exec_us, teardown_us, micros_since(t0)};
  return r;
}

}  // namespace paddock::worker
