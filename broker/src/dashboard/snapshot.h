// What the dashboard shows, as immutable values: the broker's loop builds a Snapshot from its
// state every kPublishInterval at most (and only when something changed) and publishes it in a
// SnapshotBox; the HTTP threads render JSON from the latest one. A handler never touches the
// loop's state, and the loop never builds JSON.
//
// Thread-safety: a Snapshot and the JobRecords it points to are immutable once published and may
// be read from any thread; SnapshotBox's methods may be called from any thread.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "dashboard/time_series.h"
#include "job_queue.h"
#include "paddock/broker/broker.h"
#include "paddock/schemas/messages.h"

namespace paddock::broker::dashboard {

constexpr auto kPublishInterval = std::chrono::milliseconds(250);

// A request as the dashboard shows it: sizes and names, no payloads (stdin, files, env values).
struct RequestSummary {
  std::string image;
  std::vector<std::string> argv;  // at most kMaxArgs, each at most kMaxArgBytes
  bool argv_truncated = false;
  std::vector<std::string> env_names;  // at most kMaxArgs
  std::vector<std::string> steps;  // a job with steps: each one's argv joined, cut to kMaxArgBytes
  uint64_t stdin_bytes = 0;
  size_t files_in = 0;
  size_t files_out = 0;
  size_t egress_rules = 0;
  std::map<std::string, std::string> tags;  // at most kMaxArgs, values cut to kMaxArgBytes
  uint32_t vcpus = 0;
  uint32_t mem_mib = 0;
  uint32_t timeout_ms = 0;
  int32_t priority = 0;
  uint64_t deadline_unix_ms = 0;

  static constexpr size_t kMaxArgs = 32;
  static constexpr size_t kMaxArgBytes = 256;
  static RequestSummary of(const schemas::JobRequest& request);
};

// One job as the dashboard knows it: finished (recent jobs), on a worker (running), or read back
// from the journal.
struct JobRecord {
  enum class Status { kRunning, kOk, kExitNonzero, kError, kHeld };
  std::string job_id;
  Status status = Status::kRunning;
  RequestSummary request;
  // With a RESULT: stdout and stderr cut to kOutputHead bytes (their full sizes in the result's
  // usage are not kept), and no files' data; the same for each of its steps.
  std::optional<schemas::JobResult> result;
  size_t stdout_bytes = 0;
  size_t stderr_bytes = 0;
  std::optional<schemas::JobError> error;
  std::vector<AttemptRecord> attempts;  // at most Job::kMaxAttemptRecords, oldest first
  uint64_t accepted_unix_ms = 0;
  uint64_t finished_unix_ms = 0;  // 0 while not finished
  uint64_t latency_us = 0;        // acceptance to the answer, as the broker measured it
  bool recovered = false;         // re-queued from the journal at a restart

  static constexpr size_t kOutputHead = 512;
  // The answer, cut to what a record keeps, and the status it gives: kOk for a RESULT with exit 0
  // (no signal, no timeout), kExitNonzero for another RESULT, kError for an ERROR.
  void set_result(const schemas::JobResult& r);
  void set_error(const schemas::JobError& e);
};

const char* status_name(JobRecord::Status s);

struct WorkerView {
  std::string worker_id;
  std::string host;  // the peer address of its connection, as ZeroMQ saw it; "" if unknown
  // From the worker's heartbeats (PROTOCOL.md "Worker session"): its hostname, "" until it said;
  // its warm pools, nullopt until it said (an older worker never does).
  std::string hostname;
  std::optional<std::vector<schemas::WarmPoolStatus>> warm_pools;
  std::string backend;  // from READY's "backend:<name>" capability; "" if not said
  std::vector<std::string> images;
  uint32_t ready_slots = 0;  // the slots it granted in READY
  uint32_t busy = 0;         // jobs on it now
  uint32_t free = 0;         // credits the broker has not used
  // What it said it can commit (0: not said) and what its jobs hold now.
  uint32_t capacity_vcpus = 0;
  uint32_t capacity_mem_mib = 0;
  uint64_t used_vcpus = 0;
  uint64_t used_mem_mib = 0;
  bool draining = false;
  uint64_t connected_unix_ms = 0;
  uint64_t last_heard_unix_ms = 0;
  uint64_t jobs_answered = 0;  // RESULTs and ERRORs it sent while connected
};

struct ErrorCount {
  static constexpr uint32_t kOther = UINT32_MAX;  // the codes past Recorder::kMaxErrorCodes
  uint32_t code = 0;
  std::string variant;
  uint64_t count = 0;
};

// One tenant's jobs (tenancy.h): held now, and answered since the broker started.
struct TenantView {
  std::string tenant;
  size_t queued = 0;
  size_t running = 0;
  uint64_t completed = 0;  // RESULTs
  uint64_t failed = 0;     // ERRORs
};

struct Snapshot {
  uint64_t generated_unix_ms = 0;
  uint64_t started_unix_ms = 0;
  bool journal = false;
  Stats totals;
  size_t held = 0;
  size_t queued = 0;
  size_t running = 0;
  size_t waiting_retry = 0;
  std::map<int32_t, size_t> queued_by_priority;
  std::vector<TenantView> tenants;        // by name: those with jobs held or answered
  std::vector<ErrorCount> errors;         // by code
  std::vector<TimeSeries::Point> series;  // the last TimeSeries::kSeconds, oldest first
  uint64_t window_count = 0;              // jobs answered in the series' window
  uint64_t window_p50_us = 0;
  uint64_t window_p99_us = 0;
  std::vector<WorkerView> workers;  // by worker_id
  size_t recent_capacity = 0;
  std::vector<std::shared_ptr<const JobRecord>> recent;        // finished, newest first
  std::vector<std::shared_ptr<const JobRecord>> running_jobs;  // at most kMaxRunningShown
  static constexpr size_t kMaxRunningShown = 500;

  // The record of `job_id` among the recent and running jobs; nullptr if none.
  std::shared_ptr<const JobRecord> find(const std::string& job_id) const;
};

class SnapshotBox {
 public:
  void publish(std::shared_ptr<const Snapshot> s) {
    std::lock_guard lock(mu_);
    current_ = std::move(s);
  }
  // The latest snapshot; never null once the loop published its first (the broker does at start).
  std::shared_ptr<const Snapshot> get() const {
    std::lock_guard lock(mu_);
    return current_;
  }

 private:
  mutable std::mutex mu_;
  std::shared_ptr<const Snapshot> current_ = std::make_shared<const Snapshot>();
};

}  // namespace paddock::broker::dashboard
