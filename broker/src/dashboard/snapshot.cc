#include "dashboard/snapshot.h"

namespace paddock::broker::dashboard {

namespace {

std::string cut(const std::string& s, size_t n) { return s.size() <= n ? s : s.substr(0, n); }

}  // namespace

RequestSummary RequestSummary::of(const schemas::JobRequest& request) {
  RequestSummary r;
  r.image = request.image;
  for (const auto& arg : request.argv) {
    if (r.argv.size() >= kMaxArgs) {
      r.argv_truncated = true;
      break;
    }
    r.argv_truncated = r.argv_truncated || arg.size() > kMaxArgBytes;
    r.argv.push_back(cut(arg, kMaxArgBytes));
  }
  for (const auto& step : request.steps) {
    std::string line;
    for (const auto& arg : step.argv) {
      if (line.size() >= kMaxArgBytes) break;
      line += (line.empty() ? "" : " ") + arg;
    }
    r.steps.push_back(cut(line, kMaxArgBytes));
  }
  for (const auto& [name, value] : request.env) {
    if (r.env_names.size() >= kMaxArgs) break;
    r.env_names.push_back(cut(name, kMaxArgBytes));
  }
  for (const auto& [name, value] : request.tags) {
    if (r.tags.size() >= kMaxArgs) break;
    r.tags.emplace(cut(name, kMaxArgBytes), cut(value, kMaxArgBytes));
  }
  r.stdin_bytes = request.stdin_data.size();
  r.files_in = request.files.size();
  r.files_out = request.files_out.size();
  r.egress_rules = request.egress.size();
  r.vcpus = request.vcpus;
  r.mem_mib = request.mem_mib;
  r.timeout_ms = request.timeout_ms;
  r.priority = request.priority;
  r.deadline_unix_ms = request.deadline_ms;
  return r;
}

void JobRecord::set_result(const schemas::JobResult& r) {
  schemas::JobResult kept;
  kept.job_id = r.job_id;
  kept.exit_code = r.exit_code;
  kept.signal = r.signal;
  kept.stdout_data = cut(r.stdout_data, kOutputHead);
  kept.stderr_data = cut(r.stderr_data, kOutputHead);
  kept.stdout_truncated = r.stdout_truncated;
  kept.stderr_truncated = r.stderr_truncated;
  kept.timed_out = r.timed_out;
  kept.oom_killed = r.oom_killed;
  kept.timings = r.timings;
  kept.usage = r.usage;
  kept.worker_id = r.worker_id;
  kept.attempt = r.attempt;
  kept.warm = r.warm;
  kept.backend = r.backend;
  kept.template_vm = r.template_vm;
  for (const auto& f : r.files) kept.files.push_back({f.path, {}, f.truncated});
  for (const auto& st : r.steps) {
    schemas::StepResult step;
    step.exit_code = st.exit_code;
    step.signal = st.signal;
    step.timed_out = st.timed_out;
    step.oom_killed = st.oom_killed;
    step.stdout_data = cut(st.stdout_data, kOutputHead);
    step.stderr_data = cut(st.stderr_data, kOutputHead);
    step.stdout_truncated = st.stdout_truncated || st.stdout_data.size() > kOutputHead;
    step.stderr_truncated = st.stderr_truncated || st.stderr_data.size() > kOutputHead;
    step.exec_us = st.exec_us;
    kept.steps.push_back(std::move(step));
  }
  stdout_bytes = r.stdout_data.size();
  stderr_bytes = r.stderr_data.size();
  result = std::move(kept);
  status = r.exit_code == 0 && r.signal == 0 && !r.timed_out ? Status::kOk : Status::kExitNonzero;
}

void JobRecord::set_error(const schemas::JobError& e) {
  error = e;
  status = Status::kError;
  if (error->message.size() > 4 * kOutputHead) error->message.resize(4 * kOutputHead);
}

const char* status_name(JobRecord::Status s) {
  switch (s) {
    case JobRecord::Status::kRunning:
      return "running";
    case JobRecord::Status::kOk:
      return "ok";
    case JobRecord::Status::kExitNonzero:
      return "exit_nonzero";
    case JobRecord::Status::kError:
      return "error";
    case JobRecord::Status::kHeld:
      return "held";
  }
  return "unknown";
}

std::shared_ptr<const JobRecord> Snapshot::find(const std::string& job_id) const {
  for (const auto& r : running_jobs) {
    if (r->job_id == job_id) return r;
  }
  for (const auto& r : recent) {
    if (r->job_id == job_id) return r;
  }
  return nullptr;
}

}  // namespace paddock::broker::dashboard
