// The broker's job table and ready queues: every job the broker holds, queued or running, by id;
// queued jobs in one queue per image, each ordered by priority (higher first), then by acceptance
// order (FIFO). The broker dispatches the best head among the images a free worker has.
//
// Thread-safety: none; owned by the broker's event loop.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "paddock/schemas/messages.h"

namespace paddock::broker {

using Clock = std::chrono::steady_clock;

// One dispatch of a job to a worker and how it ended, kept for the dashboard (only when it runs).
struct AttemptRecord {
  uint32_t attempt = 0;
  std::string worker_id;
  uint64_t dispatched_unix_ms = 0;
  // "running", "result", "error", "retry" (a retryable ERROR; sent out again), "worker lost",
  // "overdue" (taken back by the held-job watchdog).
  std::string outcome = "running";
  std::string detail;  // "Variant (code)" for "error" and "retry"
};

// Who hears a job's final answer (PROTOCOL.md, "Client session"): the connection that submitted
// it most recently — a SUBMIT of the same job_id from another connection takes the place of the
// one before — and every connection that FETCHed or CANCELled it (at most kMaxWatchers; past that
// the oldest watcher goes). A connection that plays several parts hears the answer once.
class Routes {
 public:
  static constexpr size_t kMaxWatchers = 8;

  // `route` SUBMITted the job (again): it replaces the submitter. "" is ignored.
  void submitted(const std::string& route);
  // `route` FETCHed or CANCELled the job: it hears the answer too.
  void watch(const std::string& route);
  // Routes gathered after these (e.g. while the job waited elsewhere): `later`'s submitter, if it
  // has one, replaces this one; its watchers are added.
  void merge(const Routes& later);
  // `route` no longer waits (neither as submitter nor as watcher).
  void forget(const std::string& route);
  bool empty() const { return submitter_.empty() && watchers_.empty(); }
  const std::string& submitter() const { return submitter_; }
  // Every route that gets the answer, each once, the submitter first.
  std::vector<std::string> all() const;

 private:
  std::string submitter_;
  std::vector<std::string> watchers_;
};

// A job's request as the broker keeps it: the fields that route and order it, and the request as
// its submitter encoded it, which decode_job_request accepted on submit. JOB messages carry those
// bytes as they are (encode_job_dispatch): the broker neither keeps a decoded copy nor encodes
// one again per dispatch.
struct QueuedRequest {
  std::string job_id;
  std::string image = "default";
  int32_t priority = 0;
  uint64_t deadline_ms = 0;
  uint32_t timeout_ms = 30'000;  // the held-job watchdog's bound (with its margin)
  std::string encoded;

  // REQUIRES: `request` is what decode_job_request(encoded) gave.
  static QueuedRequest of(const schemas::JobRequest& request, std::string encoded);
};

struct Job {
  // kWaiting: a retryable failure's backoff; held, neither queued nor running.
  enum class State { kQueued, kRunning, kWaiting };

  QueuedRequest request;
  // The client connections that get the final answer (routing ids).
  Routes routes;
  uint32_t attempt = 1;
  State state = State::kQueued;
  std::string worker;  // routing id of the worker running it
  bool cancel_requested = false;
  bool recovered = false;  // re-queued from the journal: a worker from before may still report it
  // Of a recovered job: the attempt that was on a worker when its broker stopped (0: none), whose
  // outcome, from whichever worker, is taken as the job's answer.
  uint32_t recovered_attempt = 0;
  // When its current dispatch was sent (running jobs): the watchdog's start.
  Clock::time_point dispatched_at;
  int64_t journal_row = 0;  // its row in the journal (Journal::accepted), 0 without one
  uint64_t seq = 0;
  Clock::time_point accepted_at;
  // With the dashboard on: its dispatches, oldest first; past kMaxAttemptRecords the oldest go.
  std::vector<AttemptRecord> attempts;

  static constexpr size_t kMaxAttemptRecords = 16;
};

class JobQueue {
 public:
  size_t size() const { return jobs_.size(); }
  size_t queued() const { return queued_; }
  // Calls f(const Job&) for every job held, in no particular order.
  template <class F>
  void for_each(F&& f) const {
    for (const auto& [id, job] : jobs_) f(job);
  }
  // Queued jobs of one image.
  size_t queued_of(const std::string& image) const {
    auto it = by_image_.find(image);
    return it == by_image_.end() ? 0 : it->second.size();
  }
  // Queued jobs per priority (priorities with none are absent).
  const std::map<int32_t, size_t>& queued_by_priority() const { return by_priority_; }
  // Queued jobs of one tenant (tenancy.h: the tenant of their keys).
  size_t queued_of_tenant(std::string_view tenant) const {
    auto it = by_tenant_.find(tenant);
    return it == by_tenant_.end() ? 0 : it->second;
  }

  Job* find(const std::string& job_id);
  const Job* find(const std::string& job_id) const;
  // REQUIRES: no job with this id is held. `route`: its submitter ("" for none: a job recovered
  // or claimed, whose submitter is not connected here).
  Job& push(QueuedRequest request, std::string route, Clock::time_point now);
  // The image of the best queued job (priority, then age) among images not in `skip`; nullptr
  // if none. O(images with queued jobs). Valid until the queue changes.
  const std::string* next_image(const std::vector<std::string>& skip) const;
  // The next queued job of `image` by priority and age, now marked running on `worker`; nullptr
  // if none.
  Job* pop_next(const std::string& image, const std::string& worker);
  // Removes every queued job of `image`. Returns them.
  std::vector<Job> take_image(const std::string& image);
  // A running job goes back to the queue, ahead of younger jobs of its priority.
  void requeue(Job& job);
  // Forgets a job (finished, cancelled, failed). Returns it.
  std::optional<Job> remove(const std::string& job_id);
  // Removes queued jobs whose deadline (unix ms) is at or before `now_unix_ms`.
  std::vector<Job> take_expired(uint64_t now_unix_ms);

 private:
  using Key = std::pair<int64_t, uint64_t>;  // (-priority, seq)
  static Key key_of(const Job& j) { return {-static_cast<int64_t>(j.request.priority), j.seq}; }
  void enqueue(Job& job);
  void dequeued(const Job& job);

  // Queued jobs of one image. Nodes of jobs_ do not move, so a job is held by address: no copy of
  // its id, no lookup by it.
  using Order = std::map<Key, Job*>;
  void unqueue(const Job& job);

  uint64_t next_seq_ = 0;
  size_t with_deadline_ = 0;  // queued jobs that have a deadline; skips the scan when 0
  size_t queued_ = 0;
  std::unordered_map<std::string, Job> jobs_;
  std::unordered_map<std::string, Order> by_image_;       // images with queued jobs only
  std::map<int32_t, size_t> by_priority_;                 // of order_
  std::map<std::string, size_t, std::less<>> by_tenant_;  // tenants with queued jobs only
};

}  // namespace paddock::broker
