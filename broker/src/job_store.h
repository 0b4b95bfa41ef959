// Where the broker keeps its jobs: the storage mode, chosen once when the loop is built
// (make_job_store) and never asked about again. The loop calls the same hooks in every mode; what
// each does is its implementation's:
// - EmbeddedStore (embedded_store.h): this broker's memory, with or without its SQLite journal
//   (one broker, one file; the default).
// - SharedStore (shared_store.h): the PostgreSQL queue that several brokers share, of which this
//   broker holds the jobs it claimed for its workers.
// In both, the jobs this broker holds live in the loop's JobLife (job_life.h); a store decides
// what happens to jobs it does not hold, and when a turn's writes are durable.
//
// A turn (broker.cc): turn_start(); messages from workers, then from submitters, through the hooks
// below; before_dispatch(); dispatch; tick() once per heartbeat; commit(). What a turn says to
// submitters waits in the loop's outbox until commit() said kDone: nothing is sent that a crash
// could take back.
//
// Thread-safety: none; owned by the broker's event loop.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "broker_metrics.h"
#include "dashboard/api.h"
#include "job_life.h"
#include "journal.h"
#include "log_limiter.h"
#include "paddock/base/expected.h"
#include "paddock/broker/broker.h"
#include "paddock/schemas/codes.h"
#include "paddock/schemas/frames.h"
#include "pg_store.h"
#include "store.h"
#include "tenant_policy.h"
#include "timer_queue.h"
#include "worker_registry.h"

namespace paddock::broker {

// What a store may use of the loop that owns it (the loop implements it).
class LoopHost {
 public:
  virtual JobLife& life() = 0;
  virtual WorkerRegistry& workers() = 0;
  virtual TimerQueue& timers() = 0;
  virtual Stats& stats() = 0;
  virtual BrokerMetrics& metrics() = 0;
  virtual LogLimiter& log_limiter() = 0;
  virtual const Options& options() const = 0;
  // The turn's time (set after each poll), and the wall clock in unix ms.
  virtual Clock::time_point now() const = 0;
  virtual uint64_t now_unix_ms() const = 0;

  // A message to a submitter, sent after this turn's commit.
  virtual void to_client(const std::string& route, std::vector<std::string> parts) = 0;
  // A message to a submitter, sent now: it depends on no write of this turn.
  virtual void to_client_now(const std::string& route, std::vector<std::string> parts) = 0;
  // Drops what this turn would have said (its writes failed). Returns how many messages.
  virtual size_t discard_outbox() = 0;
  // Commits the turn (JobStore::commit) and, if it did, sends its outbox. The store's commit()
  // result.
  virtual bool commit_and_send() = 0;
  // Tells worker connection `worker` to stop job `job_id` (CANCEL). With `forget`, the worker no
  // longer counts the job as its own (its outcome is not the job's any more); a worker this broker
  // does not know is then not told.
  virtual void stop_on_worker(const std::string& worker, const std::string& job_id,
                              bool forget) = 0;
  // Answers a held job's submitter and watchers with an ERROR (counted, stored, dashboard).
  virtual void answer_error(const Job& job, schemas::JobCode code, const std::string& message,
                            bool retryable) = 0;
  // The operator's limits of `tenant` (tenant_policy.h), as last (re)loaded.
  virtual const TenantLimits& limits_of(std::string_view tenant) const = 0;
  // The REJECTED 108 QuotaExceeded (retryable) of job `job_id` of `tenant` at its limit `limit`
  // (a tenants-file key), counted and logged.
  virtual std::vector<std::string> quota_refusal(std::string_view tenant, std::string_view job_id,
                                                 const char* limit, std::string message) = 0;

 protected:
  ~LoopHost() = default;
};

class JobStore {
 public:
  // A SUBMIT body that decoded and whose job this broker did not hold when the loop looked.
  struct NewJob {
    schemas::JobRequest request;
    std::string_view body;
    size_t index = 0;  // of the body, in the message
  };
  // One SUBMIT body's reply: accepted (its job_id), or a REJECTED or ERROR message, or neither (a
  // shared-queue turn whose commit fails answers it REJECTED then).
  struct SubmitReply {
    std::string accepted;
    std::vector<std::string> message;
  };
  enum class Commit {
    kDone,    // the turn's writes are durable (or there were none): send its outbox
    kFailed,  // not committed: the turn's outbox was dropped; the loop goes on
    kFatal,   // not committed: the loop stops (Stats::journal_failed)
  };

  virtual ~JobStore() = default;

  // --- at start and stop
  // After construction, before any socket is bound (the embedded journal re-queues its jobs); a
  // Failure stops the broker from starting.
  virtual base::Status start() { return {}; }
  // The dashboard's read-only way to the store ({} without one).
  virtual dashboard::StoreLookup lookup() const { return {}; }
  // Keeps jobs and answers beyond memory (metrics and dashboard show its figures).
  virtual bool persistent() const { return false; }
  // The store enforces each tenant's max_queued (in submit) and max_running (in what it hands
  // this broker) over every broker that shares it: the loop does not count max_queued over the
  // jobs it holds.
  virtual bool global_tenant_limits() const { return false; }
  // The end of the stop line: what becomes of the jobs held (`stats`: the loop's).
  virtual std::string fate(size_t held, size_t queued, const Stats& stats) const = 0;
  // The loop stopped cleanly.
  virtual void leave() {}

  // --- the turn
  // A socket to poll for the store's own events (-1: none).
  virtual int event_socket() const { return -1; }
  virtual void turn_start() {}
  // A timer of the store's (TimerQueue::Kind::kClaim, kRejoin) came due.
  virtual void on_timer(TimerQueue::Kind) {}
  // Workers have free slots (READY, CREDIT).
  virtual void credits_freed() {}
  // After the turn's messages, before dispatch.
  virtual void before_dispatch() {}
  // Once per heartbeat.
  virtual void tick() {}
  // Whether the turn wrote anything (its commit's duration is then measured).
  virtual bool dirty() const { return false; }
  virtual Commit commit() { return Commit::kDone; }
  // Into the metrics' Stats (at publish).
  virtual void refresh(Stats&) {}

  // --- jobs
  // SUBMIT of jobs not held: fills in replies[job.index] of each; a stored answer of a job
  // submitted again goes to `known_answers` (sent after the replies).
  virtual void submit(const std::string& route, std::vector<NewJob>& jobs,
                      std::vector<SubmitReply>& replies,
                      std::vector<Store::Answer>& known_answers) = 0;
  // CANCEL of a job not held: answers `route`.
  virtual void cancel_unheld(const std::string& route, const std::string& job_id) = 0;
  // FETCH of a job not held: answers `route` (now or when the answer comes).
  virtual void fetch_unheld(const std::string& route, const std::string& job_id) = 0;
  // A worker's outcome for a job not held. true: taken (stored); false: stale.
  virtual bool outcome_unheld(const std::string& /*job_id*/, schemas::Command /*command*/,
                              std::string_view /*body*/) {
    return false;
  }
  // A held job was sent to a worker.
  virtual void dispatched(const Job&) {}
  // A running held job was CANCELled by a submitter.
  virtual void cancel_requested(const std::string&) {}
  // A held job's final answer (already encoded): stored, and sent to its routes.
  virtual void answer(const Job& job, schemas::Command command, const std::string& body) = 0;
  // A note for a submitter's answer dropped undelivered ("": none).
  virtual const char* undelivered_note() const { return ""; }
};

// The storage that `options` ask for (Options::store_url, Options::journal_path, or neither),
// opened: what can fail (a damaged journal, an unreachable server) happens here, before the loop
// exists. Both null: memory only.
struct OpenedStorage {
  std::unique_ptr<Journal> journal;
  std::unique_ptr<PgStore> queue;
};
base::Expected<OpenedStorage> open_storage(const Options& options);

// The JobStore over what open_storage opened; the mode is chosen here and never asked about again.
std::unique_ptr<JobStore> make_job_store(OpenedStorage storage, LoopHost& host);

}  // namespace paddock::broker
