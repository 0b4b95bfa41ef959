// The broker's metrics (broker/README.md, "Metrics"). The loop updates them: histograms and the
// failures by variant as things happen (relaxed atomics, no lock, no allocation once a variant
// was seen), and the rest from its own state and Stats in publish(), at most every
// kPublishInterval, so that a scrape on the HTTP thread never touches the loop's state.
//
// Thread-safety: every method is called on the loop's thread; the registry is rendered on the
// HTTP server's threads.
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <map>
#include <string_view>

#include "job_queue.h"
#include "paddock/broker/broker.h"
#include "paddock/metrics/metrics.h"

namespace paddock::broker {

// The loop's state that publish() turns into gauges.
struct LoopGauges {
  const std::map<int32_t, size_t>* queued_by_priority = nullptr;
  size_t held = 0;
  size_t running = 0;  // on workers
  size_t workers = 0;
  size_t credits = 0;              // slots the workers granted and the broker has not used
  const JobQueue* jobs = nullptr;  // its tenants' queued and running jobs
};

class BrokerMetrics {
 public:
  static constexpr auto kPublishInterval = std::chrono::milliseconds(20);
  // Priorities with a series of their own; jobs of further ones are counted under "other".
  static constexpr size_t kMaxPrioritySeries = 32;

  explicit BrokerMetrics(bool journal);

  metrics::Registry registry;
  metrics::Histogram& dispatch_latency;
  metrics::Histogram& job_latency;
  metrics::Histogram& journal_commit;

  // A final ERROR answer: counted by its code and variant (the variant of a code's first failure
  // names it from then on).
  void failed(uint32_t code, std::string_view variant);
  // A job of `tenant` refused at one of its limits (tenant_policy.h: "max_queued", "submit_rate",
  // "max_vcpus", ..., "images").
  void refused(std::string_view tenant, std::string_view limit);
  // A job of `tenant` answered: a RESULT (`result`) or an ERROR.
  void answered(std::string_view tenant, bool result);
  void publish(const Stats& stats, const LoopGauges& gauges);

 private:
  void publish_queue_depths(const std::map<int32_t, size_t>& by_priority);
  void publish_tenants(const JobQueue& jobs);

  metrics::Family<metrics::Counter>& failed_;
  metrics::Family<metrics::Counter>& refused_;
  metrics::Family<metrics::Counter>& answered_;
  metrics::Family<metrics::Gauge>& tenant_jobs_;
  struct TenantSeries {
    metrics::Counter* results = nullptr;
    metrics::Counter* errors = nullptr;
    metrics::Gauge* queued = nullptr;
    metrics::Gauge* running = nullptr;
  };
  TenantSeries& series(std::string_view tenant);
  std::map<std::string, TenantSeries, std::less<>> tenants_;
  std::pair<const std::string, TenantSeries>* last_ = nullptr;  // series()'s latest, in tenants_
  std::array<metrics::Counter*, 128> failed_by_code_{};  // codes 0..127; others share the last
  metrics::Family<metrics::Gauge>& queue_depth_;
  std::map<int32_t, metrics::Gauge*> depth_by_priority_;
  metrics::Gauge* depth_other_ = nullptr;
  metrics::Gauge& held_;
  metrics::Gauge& running_;
  metrics::Gauge& waiting_;
  metrics::Gauge& workers_;
  metrics::Gauge& slots_free_;
  struct Mirrored {  // a Stats field and the counter that mirrors it
    uint64_t Stats::*field;
    metrics::Counter* counter;
  };
  std::vector<Mirrored> mirrored_;
  Stats published_;
};

}  // namespace paddock::broker
