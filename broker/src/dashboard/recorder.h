// The dashboard's side of the broker's loop: it keeps, at a bounded cost per job, what the
// dashboard shows that the loop does not keep anyway — the last finished jobs (a ring of
// `recent_capacity` immutable records), each job's dispatches, the error counts by code, and
// throughput and latency per second — and publishes Snapshots of them and of the loop's state
// into a SnapshotBox for the HTTP threads (snapshot.h).
//
// Cost on the loop: dispatched() appends to the job's attempt list (capped); answered() makes one
// record and pushes it on the ring (no JSON, no lookup by name); publish() copies pointers to the
// ring's records, the workers and the running jobs (at most Snapshot::kMaxRunningShown), at most
// every kPublishInterval.
//
// Thread-safety: every method on the loop's thread, except box(), whose SnapshotBox any thread
// may read.
#pragma once

#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <string>

#include "dashboard/snapshot.h"
#include "job_queue.h"
#include "worker_registry.h"

namespace paddock::broker::dashboard {

class Recorder {
 public:
  // Distinct error codes counted apart; further ones are counted together (ErrorCount::kOther).
  static constexpr size_t kMaxErrorCodes = 64;

  Recorder(size_t recent_capacity, bool journal, uint64_t started_unix_ms);

  // A job was sent to worker `worker_id` (its attempt is job.attempt).
  void dispatched(Job& job, const std::string& worker_id, uint64_t unix_ms);
  // The job's last dispatch ended without answering it: "retry", "worker lost" or "overdue" (the
  // held-job watchdog took it back).
  void attempt_ended(Job& job, const char* outcome, std::string detail = {});
  // The job's final answer, a RESULT (`result`) or an ERROR (`error`): the job becomes a record
  // at the front of the recent jobs; the oldest goes past the capacity.
  void answered(const Job& job, const schemas::JobResult* result, const schemas::JobError* error,
                Clock::time_point now, uint64_t unix_ms);

  // The loop's state, read by publish().
  struct LoopState {
    const JobQueue* jobs = nullptr;
    const WorkerRegistry* workers = nullptr;
    const Stats* stats = nullptr;
    size_t running = 0;  // jobs on workers
  };
  // Builds a snapshot and publishes it. REQUIRES: every pointer of `loop` set.
  void publish(const LoopState& loop, Clock::time_point now, uint64_t unix_ms);

  const SnapshotBox& box() const { return box_; }
  size_t recent_size() const { return recent_.size(); }

 private:
  size_t capacity_;
  bool journal_;
  uint64_t started_unix_ms_;
  std::deque<std::shared_ptr<const JobRecord>> recent_;  // newest first
  std::map<uint32_t, ErrorCount> errors_;
  // Answered per tenant: (RESULTs, ERRORs). Tenants are the allowlist's names: bounded.
  std::map<std::string, std::pair<uint64_t, uint64_t>, std::less<>> answered_;
  TimeSeries series_;
  Stats counted_;  // the Stats already counted in series_
  SnapshotBox box_;
};

}  // namespace paddock::broker::dashboard
