// The worker's metrics (worker/README.md, "Metrics"): jobs by outcome and failed variant, job
// durations, VM start times by warm or cold, slots busy and free, and each warm pool's size, read
// from the pools at every scrape.
//
// Thread-safety: every method may be called from any thread (slot threads report jobs); the
// registry is rendered on the HTTP server's threads.
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <map>
#include <string>
#include <string_view>

#include "paddock/metrics/metrics.h"
#include "paddock/worker/warm_pool.h"

namespace paddock::worker {

class WorkerMetrics {
 public:
  WorkerMetrics(const std::string& worker_id, std::string_view backend, uint32_t slots);

  metrics::Registry registry;

  // A slot took a job, and is busy with it until slot_freed() (after its VM's teardown).
  void job_started() { busy_.fetch_add(1, std::memory_order_relaxed); }
  void slot_freed() { busy_.fetch_sub(1, std::memory_order_relaxed); }
  // A job's answer, `took` after it started: ok (a RESULT, whatever its exit code) or an ERROR of
  // `code` / `variant`.
  void job_finished(bool ok, uint32_t code, std::string_view variant,
                    std::chrono::steady_clock::duration took);
  void vm_started(bool warm, std::chrono::microseconds took);
  void vm_torn_down(std::chrono::microseconds took) { teardown_.observe(took); }
  // A streaming job's OUTPUT chunk sent, or dropped (no broker connection, or its backlog full).
  void output_sent() { output_sent_.inc(); }
  void output_dropped() { output_dropped_.inc(); }

  // Every scrape reads the pools' sizes. REQUIRES: `pools` outlives every render (stop the HTTP
  // server first).
  void watch(const WarmPools* pools);

 private:
  const uint32_t slot_count_;
  std::atomic<int64_t> busy_{0};
  metrics::Family<metrics::Gauge>& slots_;
  metrics::Family<metrics::Counter>& jobs_;
  metrics::Family<metrics::Histogram>& vm_start_;
  metrics::Gauge& slots_busy_;
  metrics::Gauge& slots_free_;
  metrics::Counter& jobs_ok_;
  metrics::Counter& jobs_error_;
  metrics::Family<metrics::Counter>& failed_;
  std::array<std::atomic<metrics::Counter*>, 128> failed_by_code_{};  // others share the last
  metrics::Histogram& job_duration_;
  metrics::Histogram& start_warm_;
  metrics::Histogram& start_cold_;
  metrics::Histogram& teardown_;
  metrics::Counter& output_sent_;
  metrics::Counter& output_dropped_;
};

}  // namespace paddock::worker
