#include "broker_metrics.h"

#include <string>

namespace paddock::broker {

namespace m = paddock::metrics;

BrokerMetrics::BrokerMetrics(bool journal)
    : dispatch_latency(
          registry.histogram("paddock_broker_dispatch_latency_seconds",
                             "Time from a job's acceptance to each of its dispatches to a worker.",
                             m::latency_buckets())),
      job_latency(
          registry.histogram("paddock_broker_job_latency_seconds",
                             "Time from a job's acceptance to its final answer (RESULT or ERROR).",
                             m::latency_buckets())),
      journal_commit(registry.histogram(
          "paddock_broker_journal_commit_seconds",
          "Time of one loop turn's journal commit (one fsync); none without a journal.",
          m::latency_buckets())),
      failed_(registry.counter_family("paddock_broker_jobs_failed_total",
                                      "Jobs whose final answer was an ERROR, by variant and code.",
                                      {"variant", "code"})),
      refused_(registry.counter_family(
          "paddock_broker_tenant_refusals_total",
          "Jobs refused at a limit of their tenant's (REJECTED 108, or ERROR 100 for a per-job "
          "cap), by tenant and limit.",
          {"tenant", "limit"})),
      answered_(registry.counter_family(
          "paddock_broker_tenant_jobs_answered_total",
          "Jobs answered, by tenant and outcome (result: a RESULT, whatever the exit code; error: "
          "an ERROR).",
          {"tenant", "outcome"})),
      tenant_jobs_(registry.gauge_family(
          "paddock_broker_tenant_jobs",
          "Jobs of a tenant held now, by state (queued: waiting for a worker; running: on one).",
          {"tenant", "state"})),
      queue_depth_(registry.gauge_family(
          "paddock_broker_queue_depth",
          "Jobs queued for a worker, by priority (beyond 32 priorities: \"other\").",
          {"priority"})),
      held_(registry.gauge("paddock_broker_jobs_held",
                           "Jobs held: queued, running, or waiting for a retry.")),
      running_(registry.gauge("paddock_broker_jobs_running", "Jobs on a worker now.")),
      waiting_(registry.gauge("paddock_broker_jobs_waiting_retry",
                              "Jobs waiting for their retry's backoff to pass.")),
      workers_(registry.gauge("paddock_broker_workers_connected", "Workers registered now.")),
      slots_free_(registry.gauge(
          "paddock_broker_worker_slots_free",
          "Credits: job slots the workers granted that the broker has not filled.")) {
  registry.gauge("paddock_broker_journal_enabled", "1 if the broker keeps a journal, else 0.")
      .set(journal ? 1 : 0);
  auto mirror = [&](uint64_t Stats::*field, const char* name, const char* help) {
    mirrored_.push_back({field, &registry.counter(name, help)});
  };
  mirror(&Stats::accepted, "paddock_broker_jobs_accepted_total", "Jobs accepted (SUBMIT).");
  mirror(&Stats::rejected, "paddock_broker_jobs_rejected_total",
         "Jobs refused because the queue was full (REJECTED QueueFull).");
  mirror(&Stats::invalid, "paddock_broker_invalid_requests_total",
         "Client messages answered ERROR InvalidRequest.");
  mirror(&Stats::results, "paddock_broker_jobs_completed_total",
         "Jobs whose final answer was a RESULT (whatever the exit code).");
  mirror(&Stats::retried, "paddock_broker_jobs_retried_total",
         "Retryable ERRORs sent out again after a backoff.");
  mirror(&Stats::requeued, "paddock_broker_jobs_requeued_total",
         "Jobs re-queued because their worker was lost.");
  mirror(&Stats::stale_outcomes, "paddock_broker_outcomes_stale_total",
         "Worker RESULTs and ERRORs dropped as stale: not of the job's current attempt on that "
         "worker.");
  mirror(&Stats::overdue, "paddock_broker_jobs_overdue_total",
         "Jobs a live worker held past their timeout plus --overdue-margin-ms without an answer, "
         "taken back (re-queued, or WorkerLost at the last attempt).");
  mirror(&Stats::recovered, "paddock_broker_jobs_recovered_total",
         "Jobs re-queued from the journal at start.");
  mirror(&Stats::quarantined, "paddock_broker_journal_quarantined_total",
         "Journal rows whose request or answer failed its checksum: quarantined, answered "
         "JournalDamaged (107).");
  mirror(&Stats::undeliverable, "paddock_broker_answers_undeliverable_total",
         "Answers dropped: the client was gone or not reading.");
  mirror(&Stats::output_forwarded, "paddock_broker_output_chunks_forwarded_total",
         "Live output chunks (OUTPUT) of streaming jobs sent to their submitters.");
  mirror(&Stats::output_dropped, "paddock_broker_output_chunks_dropped_total",
         "Live output chunks dropped: the submitter was gone, its pipe full or answers held for "
         "it (the RESULT still carries the output).");
  queue_depth_.with({"0"});  // the default priority shows from the start
}

void BrokerMetrics::failed(uint32_t code, std::string_view variant) {
  const size_t slot = std::min<size_t>(code, failed_by_code_.size() - 1);
  m::Counter*& c = failed_by_code_[slot];
  if (c == nullptr) {
    c = slot == failed_by_code_.size() - 1
            ? &failed_.with({"Unknown", "other"})
            : &failed_.with({std::string(variant), std::to_string(code)});
  }
  c->inc();
}

void BrokerMetrics::refused(std::string_view tenant, std::string_view limit) {
  // Tenants are the allowlist's names (bounded by it), limits a fixed set: bounded series.
  refused_.with({std::string(tenant), std::string(limit)}).inc();
}

BrokerMetrics::TenantSeries& BrokerMetrics::series(std::string_view tenant) {
  // Answers come in runs of one tenant's (and often there is one tenant): the last one first.
  if (last_ != nullptr && last_->first == tenant) return last_->second;
  // Tenants are the allowlist's names (bounded by it): bounded series, kept once seen.
  auto it = tenants_.find(tenant);
  if (it == tenants_.end()) {
    const std::string t(tenant);
    TenantSeries s{&answered_.with({t, "result"}), &answered_.with({t, "error"}),
                   &tenant_jobs_.with({t, "queued"}), &tenant_jobs_.with({t, "running"})};
    it = tenants_.emplace(t, s).first;
  }
  last_ = &*it;
  return it->second;
}

void BrokerMetrics::answered(std::string_view tenant, bool result) {
  TenantSeries& s = series(tenant);
  (result ? s.results : s.errors)->inc();
}

void BrokerMetrics::publish_tenants(const JobQueue& jobs) {
  // Tenants with nothing held are absent from the queue: their gauges go to 0.
  for (auto& [name, s] : tenants_) {
    s.queued->set(0);
    s.running->set(0);
  }
  jobs.for_each_tenant([&](std::string_view tenant, size_t queued, size_t running) {
    TenantSeries& s = series(tenant);
    s.queued->set(static_cast<double>(queued));
    s.running->set(static_cast<double>(running));
  });
}

void BrokerMetrics::publish(const Stats& stats, const LoopGauges& g) {
  if (g.jobs != nullptr) publish_tenants(*g.jobs);
  for (const auto& m : mirrored_) {
    m.counter->inc(stats.*m.field - published_.*m.field);
  }
  published_ = stats;
  if (g.queued_by_priority != nullptr) publish_queue_depths(*g.queued_by_priority);
  size_t queued = 0;
  if (g.queued_by_priority != nullptr) {
    for (const auto& [p, n] : *g.queued_by_priority) queued += n;
  }
  held_.set(static_cast<double>(g.held));
  running_.set(static_cast<double>(g.running));
  const size_t busy = queued + g.running;
  waiting_.set(g.held > busy ? static_cast<double>(g.held - busy) : 0.0);
  workers_.set(static_cast<double>(g.workers));
  slots_free_.set(static_cast<double>(g.credits));
}

void BrokerMetrics::publish_queue_depths(const std::map<int32_t, size_t>& by_priority) {
  double other = 0;
  for (const auto& [priority, n] : by_priority) {
    auto it = depth_by_priority_.find(priority);
    if (it == depth_by_priority_.end()) {
      if (depth_by_priority_.size() >= kMaxPrioritySeries) {
        other += static_cast<double>(n);
        continue;
      }
      it = depth_by_priority_.emplace(priority, &queue_depth_.with({std::to_string(priority)}))
               .first;
    }
    it->second->set(static_cast<double>(n));
  }
  for (const auto& [priority, gauge] : depth_by_priority_) {
    if (by_priority.count(priority) == 0) gauge->set(0);
  }
  if (depth_other_ == nullptr && other > 0) depth_other_ = &queue_depth_.with({"other"});
  if (depth_other_ != nullptr) depth_other_->set(other);
}

}  // namespace paddock::broker
