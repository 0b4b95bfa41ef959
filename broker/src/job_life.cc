#include "job_life.h"

#include <algorithm>

namespace paddock::broker {

std::chrono::milliseconds retry_backoff(uint32_t attempt, uint32_t base_ms, uint32_t cap_ms,
                                        double jitter) {
  const uint64_t exp = std::min<uint64_t>(
      uint64_t{base_ms} << std::min<uint32_t>(attempt == 0 ? 0 : attempt - 1, 20), cap_ms);
  return std::chrono::milliseconds(static_cast<uint64_t>(exp * jitter));
}

JobLife::Outcome JobLife::outcome(const std::string& worker, const std::string& job_id,
                                  uint32_t attempt, bool retryable, double jitter) {
  Outcome o;
  Job* held = jobs_.find(job_id);
  o.held = held;
  if (held == nullptr) {
    o.kind = Outcome::Kind::kNotHeld;
    return o;
  }
  // Only the current assignment answers: the job, on this worker's connection, at the attempt
  // sent to it (PROTOCOL.md, "Worker session").
  const bool current =
      held->state == Job::State::kRunning && held->worker == worker && held->attempt == attempt;
  if (!current) {
    if (held->recovered_attempt != 0 && attempt == held->recovered_attempt) {
      // Dispatched by the broker before a restart: its outcome is the job's answer. If it was
      // sent again meanwhile, that run is to be dropped.
      o.kind = Outcome::Kind::kRecovered;
      if (held->state == Job::State::kRunning) o.rerun = held->worker;
      o.held = nullptr;
      o.job = jobs_.remove(job_id);
      return o;
    }
    o.kind = Outcome::Kind::kStale;
    return o;
  }
  if (retryable && !held->cancel_requested && held->attempt < policy_.max_attempts) {
    // A host-side fault on that worker: worth another try, after a backoff with jitter.
    o.kind = Outcome::Kind::kRetry;
    o.delay = retry_backoff(held->attempt, policy_.retry_base_ms, policy_.retry_cap_ms, jitter);
    ++held->attempt;
    jobs_.wait(*held);
    return o;
  }
  o.kind = Outcome::Kind::kAnswer;
  o.held = nullptr;
  o.job = jobs_.remove(job_id);
  return o;
}

bool JobLife::release(const std::string& job_id) {
  Job* job = jobs_.find(job_id);
  if (job == nullptr || job->state != Job::State::kWaiting) return false;
  jobs_.requeue(*job);
  return true;
}

JobLife::Loss JobLife::lost(const std::string& job_id) {
  Loss l;
  Job* job = jobs_.find(job_id);
  if (job->cancel_requested) {
    l.kind = Loss::Kind::kCancelled;
    l.job = jobs_.remove(job_id);
  } else if (job->attempt >= policy_.max_attempts) {
    l.kind = Loss::Kind::kExhausted;
    l.job = jobs_.remove(job_id);
  } else {
    l.kind = Loss::Kind::kRequeued;
    ++job->attempt;
    jobs_.requeue(*job);
    l.held = job;
  }
  return l;
}

std::vector<std::pair<std::string, std::string>> JobLife::overdue(const WorkerRegistry& workers,
                                                                  Clock::time_point now) const {
  // O(jobs on workers); the loop asks once per heartbeat.
  std::vector<std::pair<std::string, std::string>> overdue;  // (worker route, job id)
  const auto margin = std::chrono::milliseconds(policy_.overdue_margin_ms);
  workers.for_each([&](const WorkerState& w) {
    for (const auto& [id, footprint] : w.jobs) {
      const Job* job = jobs_.find(id);
      if (job == nullptr || job->state != Job::State::kRunning) continue;
      if (now - job->dispatched_at > std::chrono::milliseconds(job->request.timeout_ms) + margin) {
        overdue.emplace_back(w.routing_id, id);
      }
    }
  });
  return overdue;
}

JobLife::Cancel JobLife::cancel(const std::string& job_id, const std::string& route,
                                std::optional<Job>& ended) {
  Job* job = jobs_.find(job_id);
  if (job == nullptr) return Cancel::kUnknown;
  if (!route.empty()) job->routes.watch(route);  // the canceller hears the outcome too
  if (job->state != Job::State::kRunning) {
    ended = jobs_.remove(job_id);
    return Cancel::kEnded;
  }
  if (job->cancel_requested) return Cancel::kAsked;
  job->cancel_requested = true;
  return Cancel::kAskWorker;
}

}  // namespace paddock::broker
