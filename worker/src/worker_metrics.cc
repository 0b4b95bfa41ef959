#include "worker_metrics.h"

#include <algorithm>

namespace paddock::worker {

namespace m = paddock::metrics;

WorkerMetrics::WorkerMetrics(const std::string& worker_id, std::string_view backend, uint32_t slots)
    : slot_count_(slots),
      slots_(registry.gauge_family("paddock_worker_slots", "Job slots, busy or free.", {"state"})),
      jobs_(registry.counter_family("paddock_worker_jobs_total",
                                    "Jobs run, by outcome: ok (a RESULT, whatever its exit code) "
                                    "or error (an ERROR).",
                                    {"outcome"})),
      vm_start_(registry.histogram_family(
          "paddock_worker_vm_start_seconds",
          "Time to a running VM for a job: warm (a clone from a pool, or restored on demand) or "
          "cold (create and boot).",
          {"start"}, m::vm_start_buckets())),
      slots_busy_(slots_.with({"busy"})),
      slots_free_(slots_.with({"free"})),
      jobs_ok_(jobs_.with({"ok"})),
      jobs_error_(jobs_.with({"error"})),
      failed_(registry.counter_family("paddock_worker_jobs_failed_total",
                                      "Jobs answered ERROR, by variant and code.",
                                      {"variant", "code"})),
      job_duration_(registry.histogram(
          "paddock_worker_job_duration_seconds",
          "Time from a job's start on its slot to its answer: VM start and exec (the VM's "
          "teardown comes after the answer: paddock_worker_vm_teardown_seconds).",
          m::latency_buckets())),
      start_warm_(vm_start_.with({"warm"})),
      start_cold_(vm_start_.with({"cold"})),
      teardown_(registry.histogram("paddock_worker_vm_teardown_seconds",
                                   "Time to tear a job's VM down, after its answer was sent (its "
                                   "slot stays busy meanwhile).",
                                   m::vm_start_buckets())),
      output_sent_(registry.counter("paddock_worker_output_chunks_sent_total",
                                    "Live output chunks (OUTPUT) of streaming jobs sent to a "
                                    "broker.")),
      output_dropped_(registry.counter("paddock_worker_output_chunks_dropped_total",
                                       "Live output chunks of streaming jobs dropped: no broker "
                                       "connection, or too many messages waiting for it.")) {
  registry
      .gauge_family("paddock_worker_info", "Always 1: this worker's id and backend.",
                    {"worker_id", "backend"})
      .with({worker_id, backend})
      .set(1);
  slots_free_.set(slot_count_);
  registry.on_collect([this] {
    const int64_t busy = busy_.load(std::memory_order_relaxed);
    slots_busy_.set(static_cast<double>(busy));
    slots_free_.set(static_cast<double>(std::max<int64_t>(0, int64_t{slot_count_} - busy)));
  });
}

void WorkerMetrics::job_finished(bool ok, uint32_t code, std::string_view variant,
                                 std::chrono::steady_clock::duration took) {
  job_duration_.observe(took);
  if (ok) {
    jobs_ok_.inc();
    return;
  }
  jobs_error_.inc();
  const size_t slot = std::min<size_t>(code, failed_by_code_.size() - 1);
  m::Counter* c = failed_by_code_[slot].load(std::memory_order_acquire);
  if (c == nullptr) {
    // Two threads may get here at once: both find the same child.
    c = slot == failed_by_code_.size() - 1
            ? &failed_.with({"Unknown", "other"})
            : &failed_.with({std::string(variant), std::to_string(code)});
    failed_by_code_[slot].store(c, std::memory_order_release);
  }
  c->inc();
}

void WorkerMetrics::vm_started(bool warm, std::chrono::microseconds took) {
  (warm ? start_warm_ : start_cold_).observe(took);
}

void WorkerMetrics::watch(const WarmPools* pools) {
  auto& ready = registry.gauge_family("paddock_worker_warm_pool_ready",
                                      "Ready clones in a warm pool, by template.", {"template"});
  auto& target = registry.gauge_family(
      "paddock_worker_warm_pool_target",
      "Ready clones a warm pool aims at (between --warm-min and --warm-max).", {"template"});
  auto& broken = registry.gauge_family(
      "paddock_worker_warm_pool_broken",
      "1 if a pool's template could not be built or restored (its jobs boot cold).", {"template"});
  auto& misses = registry.counter_family(
      "paddock_worker_warm_pool_misses_total",
      "Jobs that found no ready clone in their pool (restored on demand, or booted cold).",
      {"template"});
  auto& waits = registry.counter_family(
      "paddock_worker_warm_pool_template_waits_total",
      "Jobs that waited for their pool's template being built instead of booting cold.",
      {"template"});
  // Under the registry's render lock: one hook runs at a time.
  registry.on_collect([pools, &ready, &target, &broken, &misses, &waits,
                       seen = std::map<std::string, std::pair<uint64_t, uint64_t>>{}]() mutable {
    for (const auto& [name, s] : pools->stats()) {
      ready.with({name}).set(static_cast<double>(s.ready));
      target.with({name}).set(static_cast<double>(s.target));
      broken.with({name}).set(s.state == TemplateState::kBroken ? 1 : 0);
      auto& [last_misses, last_waits] = seen[name];
      misses.with({name}).inc(s.misses - std::min(last_misses, s.misses));
      last_misses = s.misses;
      waits.with({name}).inc(s.template_waits - std::min(last_waits, s.template_waits));
      last_waits = s.template_waits;
    }
  });
}

}  // namespace paddock::worker
