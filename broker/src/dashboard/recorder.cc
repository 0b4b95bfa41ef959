#include "dashboard/recorder.h"

#include <algorithm>

#include "paddock/schemas/codec.h"
#include "paddock/schemas/codes.h"
#include "tenancy.h"

namespace paddock::broker::dashboard {

namespace {

uint64_t to_unix_ms(Clock::time_point t, Clock::time_point now, uint64_t now_unix_ms) {
  const auto ago = std::chrono::duration_cast<std::chrono::milliseconds>(now - t).count();
  return ago > 0 && static_cast<uint64_t>(ago) < now_unix_ms ? now_unix_ms - ago : now_unix_ms;
}

std::shared_ptr<JobRecord> record_of(const Job& job, Clock::time_point now, uint64_t unix_ms) {
  auto r = std::make_shared<JobRecord>();
  r->job_id = job.request.job_id;
  // The broker keeps the request encoded (QueuedRequest): decoded again here, with the dashboard
  // on only. It was decoded on submit, so this cannot fail but for a bug; then no summary.
  if (auto request = schemas::decode_job_request(job.request.encoded)) {
    r->request = RequestSummary::of(*request);
  }
  r->attempts = job.attempts;
  r->accepted_unix_ms = to_unix_ms(job.accepted_at, now, unix_ms);
  r->recovered = job.recovered;
  return r;
}

}  // namespace

Recorder::Recorder(size_t recent_capacity, bool journal, uint64_t started_unix_ms)
    : capacity_(std::max<size_t>(1, recent_capacity)),
      journal_(journal),
      started_unix_ms_(started_unix_ms) {}

void Recorder::dispatched(Job& job, const std::string& worker_id, uint64_t unix_ms) {
  if (job.attempts.size() >= Job::kMaxAttemptRecords) job.attempts.erase(job.attempts.begin());
  AttemptRecord a;
  a.attempt = job.attempt;
  a.worker_id = worker_id;
  a.dispatched_unix_ms = unix_ms;
  job.attempts.push_back(std::move(a));
}

void Recorder::attempt_ended(Job& job, const char* outcome, std::string detail) {
  if (job.attempts.empty() || job.attempts.back().outcome != "running") return;
  job.attempts.back().outcome = outcome;
  job.attempts.back().detail = std::move(detail);
}

void Recorder::answered(const Job& job, const schemas::JobResult* result,
                        const schemas::JobError* error, Clock::time_point now, uint64_t unix_ms) {
  auto r = record_of(job, now, unix_ms);
  r->finished_unix_ms = unix_ms;
  {
    const auto tenant = key_tenant(job.request.job_id);
    auto it = answered_.find(tenant);
    if (it == answered_.end()) it = answered_.emplace(std::string(tenant), std::pair{0, 0}).first;
    ++(result != nullptr ? it->second.first : it->second.second);
  }
  r->latency_us = static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::microseconds>(now - job.accepted_at).count());
  std::string detail;
  if (result != nullptr) {
    r->set_result(*result);
  } else if (error != nullptr) {
    r->set_error(*error);
    detail = error->variant + " (" + std::to_string(error->code) + ")";
    auto it = errors_.find(error->code);
    if (it == errors_.end()) {
      const bool room = errors_.size() < kMaxErrorCodes;
      const uint32_t key = room ? error->code : ErrorCount::kOther;
      it = errors_.try_emplace(key, ErrorCount{key, room ? error->variant : "other", 0}).first;
    }
    ++it->second.count;
  }
  // The answering attempt, if the job was on a worker (not for one answered in the queue).
  if (!r->attempts.empty() && r->attempts.back().outcome == "running") {
    r->attempts.back().outcome = result != nullptr ? "result" : "error";
    r->attempts.back().detail = std::move(detail);
  }
  series_.latency(unix_ms / 1000, r->latency_us);
  recent_.push_front(std::move(r));
  if (recent_.size() > capacity_) recent_.pop_back();
}

void Recorder::publish(const LoopState& loop, Clock::time_point now, uint64_t unix_ms) {
  const uint64_t unix_s = unix_ms / 1000;
  const Stats& stats = *loop.stats;
  series_.count(unix_s, static_cast<uint32_t>(stats.accepted - counted_.accepted),
                static_cast<uint32_t>(stats.results - counted_.results),
                static_cast<uint32_t>(stats.errors - counted_.errors));
  counted_ = stats;

  auto s = std::make_shared<Snapshot>();
  s->generated_unix_ms = unix_ms;
  s->started_unix_ms = started_unix_ms_;
  s->journal = journal_;
  s->totals = stats;
  s->held = loop.jobs->size();
  s->queued = loop.jobs->queued();
  s->running = loop.running;
  s->waiting_retry = s->held > s->queued + s->running ? s->held - s->queued - s->running : 0;
  s->queued_by_priority = loop.jobs->queued_by_priority();
  {
    std::map<std::string, TenantView, std::less<>> tenants;
    for (const auto& [name, n] : answered_) {
      tenants[name] = TenantView{name, 0, 0, n.first, n.second};
    }
    loop.jobs->for_each_tenant([&](std::string_view name, size_t queued, size_t running) {
      auto it = tenants.find(name);
      if (it == tenants.end()) it = tenants.emplace(std::string(name), TenantView{}).first;
      it->second.tenant = name;
      it->second.queued = queued;
      it->second.running = running;
    });
    for (auto& [name, v] : tenants) s->tenants.push_back(std::move(v));
  }
  for (const auto& [code, e] : errors_) s->errors.push_back(e);
  s->series = series_.points(unix_s);
  const LatencyBuckets window = series_.window(unix_s);
  s->window_count = window.count();
  s->window_p50_us = window.percentile(50);
  s->window_p99_us = window.percentile(99);
  s->recent_capacity = capacity_;
  s->recent.assign(recent_.begin(), recent_.end());
  loop.workers->for_each([&](const WorkerState& w) {
    WorkerView v;
    v.worker_id = w.worker_id;
    v.host = w.host;
    if (w.status) {
      v.hostname = w.status->host;
      v.warm_pools = w.status->warm_pools;
    }
    v.backend = w.backend;
    v.images = w.images;
    v.ready_slots = w.ready_slots;
    v.busy = static_cast<uint32_t>(w.jobs.size());
    v.free = w.credits;
    v.capacity_vcpus = w.capacity_vcpus;
    v.capacity_mem_mib = w.capacity_mem_mib;
    v.used_vcpus = w.used_vcpus;
    v.used_mem_mib = w.used_mem_mib;
    v.draining = w.draining;
    v.connected_unix_ms = w.connected_unix_ms;
    v.last_heard_unix_ms = to_unix_ms(w.last_seen, now, unix_ms);
    v.jobs_answered = w.answered;
    s->workers.push_back(std::move(v));
    for (const auto& [id, footprint] : w.jobs) {
      if (s->running_jobs.size() >= Snapshot::kMaxRunningShown) break;
      const Job* job = loop.jobs->find(id);
      if (job == nullptr) continue;
      s->running_jobs.push_back(record_of(*job, now, unix_ms));
    }
  });
  std::sort(s->workers.begin(), s->workers.end(),
            [](const WorkerView& a, const WorkerView& b) { return a.worker_id < b.worker_id; });
  box_.publish(std::move(s));
}

}  // namespace paddock::broker::dashboard
