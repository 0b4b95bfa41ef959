// Internal: the broker's event loop, which ties its parts together. It owns them and holds no job
// logic of its own beyond routing events between them:
// - Transport (transport.h): the two ROUTER sockets, frames in and out, answers held for slow
//   submitters.
// - JobLife (job_life.h): the jobs held and every transition of their life.
// - JobStore (job_store.h): the storage mode, chosen once here; what happens to jobs not held and
//   when a turn's writes are durable.
// - WorkerRegistry (worker_registry.h): workers, their credits and images.
// - TimerQueue (timer_queue.h): every timer; the loop polls until its earliest.
// broker.cc runs the loop and dispatches; client_side.cc reads submitters' messages;
// worker_side.cc reads workers' messages.
#pragma once

#include <atomic>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include <zmq.hpp>

#include "broker_metrics.h"
#include "curve_auth.h"
#include "dashboard/access.h"
#include "dashboard/api.h"
#include "dashboard/recorder.h"
#include "job_life.h"
#include "job_store.h"
#include "log_limiter.h"
#include "paddock/broker/broker.h"
#include "paddock/metrics/http_server.h"
#include "paddock/schemas/codes.h"
#include "paddock/schemas/frames.h"
#include "tenant_policy.h"
#include "timer_queue.h"
#include "transport.h"
#include "worker_registry.h"

namespace paddock::broker {

class Broker::Loop final : private LoopHost {
 public:
  // `options` as checked() returned them, `storage` as open_storage() opened it. Nothing here
  // fails; start() does what can.
  Loop(Options options, OpenedStorage storage);

  // A Failure if the security options would carry plaintext off this machine; `options`
  // otherwise (so that it runs before anything is opened).
  static base::Expected<Options> checked(Options options);
  // Starts the store (the journal re-queues its jobs), binds both endpoints and starts the
  // metrics server if asked; a Failure naming what could not be done.
  base::Status start();

  Stats run(const std::atomic<bool>& stop, std::atomic<bool>& reload);

  zmq::context_t context{1};
  std::string client_endpoint;
  std::string worker_endpoint;
  std::string metrics_address;   // bound; "" without a metrics server
  std::string curve_public_key;  // "" in plaintext

 private:
  // LoopHost (job_store.h)
  JobLife& life() override { return life_; }
  WorkerRegistry& workers() override { return registry_; }
  TimerQueue& timers() override { return timers_; }
  Stats& stats() override { return stats_; }
  BrokerMetrics& metrics() override { return metrics_; }
  LogLimiter& log_limiter() override { return protocol_log_; }
  const Options& options() const override { return options_; }
  Clock::time_point now() const override { return now_; }
  uint64_t now_unix_ms() const override;
  void to_client(const std::string& route, std::vector<std::string> parts) override;
  void to_client_now(const std::string& route, std::vector<std::string> parts) override;
  size_t discard_outbox() override;
  bool commit_and_send() override;
  void stop_on_worker(const std::string& worker, const std::string& job_id, bool forget) override;
  void answer_error(const Job& job, schemas::JobCode code, const std::string& message,
                    bool retryable) override;
  const TenantLimits& limits_of(std::string_view tenant) const override {
    return tenants_.of(tenant);
  }
  std::vector<std::string> quota_refusal(std::string_view tenant, std::string_view job_id,
                                         const char* limit, std::string message) override;

  // client_side.cc
  // `tenant`: the submitter's (tenancy.h); its job_ids are keyed with it.
  void on_client_message(const std::string& route, std::string_view tenant,
                         std::span<const std::string_view> parts);
  void on_submit(const std::string& route, std::string_view tenant,
                 const std::vector<std::string_view>& bodies);
  void on_cancel(const std::string& route, std::string_view tenant, std::string_view body);
  void on_fetch(const std::string& route, std::string_view tenant,
                const std::vector<std::string_view>& bodies);
  // An ERROR 100 InvalidRequest (counted and logged); `index`: the body it answers, of a message
  // with bodies (PROTOCOL.md, "JobError"), nullopt for a message that broke the frame rules.
  std::vector<std::string> invalid_reply(std::string job_id, const std::string& message,
                                         std::optional<uint32_t> index);
  void reply_invalid(const std::string& route, std::string job_id, const std::string& message,
                     std::optional<uint32_t> index = std::nullopt);
  // Whether a new job of `tenant` (not held) may be queued under its limits (tenant_policy.h):
  // nullopt, or the reply that refuses it (REJECTED 108, or ERROR 100 for a per-job cap).
  // `queued_before`: its tenant's jobs accepted earlier in the same SUBMIT.
  std::optional<std::vector<std::string>> admit(std::string_view tenant,
                                                const schemas::JobRequest& request, uint32_t index,
                                                size_t queued_before);
  // Reads Options::tenants_file again (Broker::reload()).
  void reload_tenants();

  // worker_side.cc
  // `first`: the message's first frame after the routing id (its connection's properties).
  void on_worker_message(const std::string& route, std::span<const std::string_view> parts,
                         const zmq::message_t& first);
  void on_ready(const std::string& route, std::string_view body, const zmq::message_t& first);
  // A streaming job's OUTPUT: to the routes waiting for its answer, if it is the job's current
  // attempt on this worker; else dropped.
  void on_output(WorkerState& w, std::string_view body);
  // The key of the job a worker's outcome or OUTPUT names (its echoed tenant, or none).
  std::string key_of_answer(const WorkerState& w, std::string_view tenant,
                            std::string_view job_id) const;
  // A RESULT or ERROR: checked, then JobLife::outcome decides whose it is.
  void on_outcome(WorkerState& w, schemas::Command command, std::string_view body);
  // Logs a dropped outcome (counted): `held`, the job as it is now (nullptr: not held).
  void stale_outcome(const WorkerState& w, bool is_result, const std::string& job_id,
                     uint32_t attempt, const Job* held);
  void worker_gone(const std::string& route, const char* why);

  // broker.cc
  void dispatch();
  // Answers every queued job of `image` ERROR UnknownImage, naming the images there are.
  void fail_unknown_image(std::string image);
  // A job that no connected worker with its image could ever fit: answered TooLarge (109).
  void fail_too_large(const Job& job, Footprint most);
  void tick();
  // The held-job watchdog (Options::overdue_margin_ms): jobs on live workers past their bound.
  void take_back_overdue();
  // Sends a job's final answer (RESULT or ERROR, already encoded) to every waiting route, through
  // the store; the decoded answer (one of `result`, `error`) is for the dashboard.
  void answer(const Job& job, schemas::Command command, const std::string& body,
              const schemas::JobResult* result, const schemas::JobError* error);
  // Control messages to a worker (jobs go through dispatch()): a full pipe drops one, which the
  // next tick repeats; an unreachable worker is gone.
  void to_worker(const std::string& route, std::vector<std::string> parts);
  // The loop's state into the metrics' gauges and counters (at most every kPublishInterval).
  void publish_metrics();
  // The dashboard's snapshot (at most every dashboard::kPublishInterval).
  void publish_dashboard();
  // After a turn: publishes what it changed, or arms the timer that wakes the loop to.
  void publish_if_due(bool changed);

  Options options_;
  Stats stats_;
  LogLimiter protocol_log_{20};  // protocol violations logged per second at most
  Clock::time_point now_;
  TimerQueue timers_;
  JobLife life_;
  WorkerRegistry registry_;
  JobQueue::Skip blocked_;  // dispatch()'s, kept for its capacity
  std::mt19937_64 rng_{std::random_device{}()};
  // What this turn says to submitters, sent after the store's commit (JobStore::commit).
  std::vector<std::pair<std::string, std::vector<std::string>>> outbox_;
  // Chosen once, here; before metrics_, which asks it what to show.
  std::unique_ptr<JobStore> store_;
  // Tenants: the operator's limits, and each tenant's submit-rate bucket (tokens, last refill).
  TenantPolicy tenants_;
  struct Bucket {
    double tokens = 0;
    Clock::time_point at{};
  };
  std::map<std::string, Bucket, std::less<>> buckets_;
  BrokerMetrics metrics_;
  bool publish_pending_ = false;    // something happened since the last publish_metrics()
  Clock::time_point next_publish_;  // the rate limit: not before (TimerQueue::Kind::kMetrics wakes)
  std::unique_ptr<Transport> transport_;
  // With CURVE: the ZAP handler and the handshake monitors of both endpoints.
  std::unique_ptr<ZapHandler> zap_;
  std::unique_ptr<HandshakeMonitor> client_handshakes_;
  std::unique_ptr<HandshakeMonitor> worker_handshakes_;
  // With the metrics server: what the dashboard shows (nullptr without a server).
  std::unique_ptr<dashboard::Access> dashboard_access_;
  std::unique_ptr<dashboard::Recorder> dashboard_;
  bool dashboard_pending_ = false;    // something happened since the last publish_dashboard()
  Clock::time_point next_dashboard_;  // likewise (TimerQueue::Kind::kDashboard wakes)
  // Last: its threads read metrics_ and the dashboard's snapshots, so it stops first.
  std::unique_ptr<metrics::HttpServer> http_;
};

}  // namespace paddock::broker
