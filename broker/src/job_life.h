// A job's life in the broker, as a state machine over the jobs it holds (JobQueue). No sockets, no
// store, no clock of its own: the loop feeds it events and carries out what it decides (send,
// answer, store, arm a timer), so every transition is unit-testable (tests/unit/
// broker_job_life_test.cc).
//
//   accepted ──> kQueued ──start()──> kRunning ──outcome()──> answered        (the job leaves)
//                  ^  ^                 │  │ │
//                  │  └──unsent()───────┘  │ └──outcome(), retryable──> kWaiting ──release()──┐
//                  │                       │                            (backoff)             │
//                  ├───────────────────────┴──lost(): worker gone or overdue, attempts left ──┤
//                  └───────────────────────────────────────────────────────────────────────────┘
//   From any state: cancel() of a job not running ends it (Cancelled); of a running one, asks its
//   worker to stop and the outcome, or a loss, ends it Cancelled. lost() on the last attempt ends
//   it WorkerLost (retryable: the submitter may try again). An outcome is the job's only if it is
//   of the current assignment (this worker, this attempt); any other is stale and dropped, except
//   the outcome of a recovered job's attempt from before a restart (`recovered_attempt`), which is
//   its answer.
//
// "Ends" means the transition returns the job, removed: the caller answers it. The states, the
// attempts and the backoff are PROTOCOL.md's ("Worker session", "Retries") and broker/README.md's.
//
// Thread-safety: none; owned by the broker's event loop.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "job_queue.h"
#include "worker_registry.h"

namespace paddock::broker {

struct LifePolicy {
  uint32_t max_attempts = 3;
  uint32_t retry_base_ms = 200;
  uint32_t retry_cap_ms = 5'000;
  uint32_t overdue_margin_ms = 10'000;  // the held-job watchdog's margin past a job's timeout
};

// The backoff before a retryable failure's next attempt: base << (attempt - 1), at most cap, times
// a jitter in [0.5, 1.0] (`jitter`: the caller's random draw, so that tests choose it).
std::chrono::milliseconds retry_backoff(uint32_t attempt, uint32_t base_ms, uint32_t cap_ms,
                                        double jitter);

class JobLife {
 public:
  explicit JobLife(LifePolicy policy) : policy_(policy) {}

  JobQueue& jobs() { return jobs_; }
  const JobQueue& jobs() const { return jobs_; }
  const LifePolicy& policy() const { return policy_; }
  // Forgets every job held (a shared-queue broker whose turn failed: the queue gives them back).
  void reset() {
    auto shares = jobs_.shares();
    jobs_ = JobQueue();
    jobs_.set_shares(std::move(shares));
  }

  // --- dispatch
  // The job jobs().peek() gave (REQUIRES: the queue unchanged since), now kRunning on `worker`.
  // Whether its deadline passed is the caller's question (expired()); if so it ends it (finish()).
  Job& start(const Job& job, const std::string& worker) { return jobs_.start(job, worker); }
  static bool expired(const Job& job, uint64_t now_unix_ms) {
    return job.request.deadline_ms != 0 && job.request.deadline_ms <= now_unix_ms;
  }
  // The JOB message went out at `now`: the held-job watchdog counts from here.
  void sent(Job& job, Clock::time_point now) { job.dispatched_at = now; }
  // The JOB message could not be sent: back to the queue, same attempt.
  void unsent(Job& job) { jobs_.requeue(job); }

  // --- a worker's RESULT or ERROR for (job_id, attempt), from worker connection `worker`
  struct Outcome {
    enum class Kind {
      kAnswer,     // the current assignment's: `job` (removed) is answered by this outcome
      kRecovered,  // a recovered job's attempt from before the restart: likewise; `rerun` is the
                   // worker running it again ("" if none), whose run is to be dropped
      kRetry,      // retryable, attempts left, not cancelled: `held` waits `delay`, then release()
      kNotHeld,    // no such job here (the caller's store may know it)
      kStale,      // held, but not this assignment: dropped; `held` is the job as it is now
    };
    Kind kind = Kind::kStale;
    std::optional<Job> job;
    Job* held = nullptr;
    std::string rerun;
    std::chrono::milliseconds delay{0};
  };
  // `jitter`: in [0.5, 1.0], the retry's random draw (ignored unless kRetry).
  Outcome outcome(const std::string& worker, const std::string& job_id, uint32_t attempt,
                  bool retryable, double jitter);
  // A waiting job's backoff ended: back to the queue. false if it no longer waits (cancelled,
  // answered, or a different job of the same id since).
  bool release(const std::string& job_id);

  // --- its worker is gone, or held it past its timeout plus the margin (overdue())
  struct Loss {
    enum class Kind {
      kCancelled,  // a cancel was asked: `job` (removed) ends Cancelled
      kExhausted,  // that was its last attempt: `job` (removed) ends WorkerLost
      kRequeued,   // `held` is queued again for its next attempt
    };
    Kind kind = Kind::kRequeued;
    std::optional<Job> job;
    Job* held = nullptr;
  };
  // REQUIRES: `job_id` is held.
  Loss lost(const std::string& job_id);
  // Running jobs held past their timeout plus the margin at `now`: (worker route, job id). A
  // worker says nothing of a job between JOB and its outcome, so the bound counts from the send.
  std::vector<std::pair<std::string, std::string>> overdue(const WorkerRegistry& workers,
                                                           Clock::time_point now) const;

  // --- CANCEL from a submitter
  enum class Cancel {
    kUnknown,    // not held
    kEnded,      // it was not running: it ends Cancelled (the caller answers `ended` and it is
                 // removed: see cancel()'s `ended`)
    kAskWorker,  // running: the first cancel; tell its worker to stop
    kAsked,      // running, and its worker was told before
  };
  // `route` ("" for none: a cancel relayed by another broker) hears the job's answer too.
  // `ended`: the job removed, for kEnded.
  Cancel cancel(const std::string& job_id, const std::string& route, std::optional<Job>& ended);

  // Removes a job that ends for another reason (expired, a stored answer, unknown image).
  std::optional<Job> finish(const std::string& job_id) { return jobs_.remove(job_id); }

 private:
  LifePolicy policy_;
  JobQueue jobs_;
};

}  // namespace paddock::broker
