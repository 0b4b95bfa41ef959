// The broker's job table and ready queues: every job the broker holds, queued or running, by id
// (its key, tenancy.h); queued jobs in one queue per tenant and image.
//
// Which job goes next (broker/README.md, "Fair share"): tenants share dispatch by weighted fair
// queuing. Each tenant has a virtual time; a dispatch to a tenant advances its time by
// 1 / weight, and the next job is the tenant's with the least time (ties: by name) among tenants
// that have queued jobs and are below their running cap. A tenant that had nothing to dispatch
// (no queued jobs, or at its cap) comes back at the current virtual time, not with credit saved
// up: a tenant that floods the queue and one that submits now and then each get their weight's
// share while both wait, and the newcomer's first job goes next. Within a tenant, jobs go by
// priority (higher first), then acceptance order (FIFO), across the images that a free worker
// has.
//
// Thread-safety: none; owned by the broker's event loop.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <limits>
#include <map>
#include <optional>
#include <set>
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
  uint32_t vcpus = 1;            // what it holds of a worker's capacity while it runs there
  uint32_t mem_mib = 128;
  bool stream = false;  // live output: its OUTPUT chunks go to the routes waiting for it
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

// How a tenant shares dispatch with the others (tenant_policy.h: weight, max_running).
struct TenantShare {
  double weight = 1.0;  // > 0
  uint64_t max_running = std::numeric_limits<uint64_t>::max();
};

class JobQueue {
 public:
  // A tenant's share, asked when the queue first holds one of its jobs and on refresh_shares().
  using ShareOf = std::function<TenantShare(std::string_view tenant)>;

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
    return it == by_image_.end() ? 0 : it->second;
  }
  // Queued jobs per priority (priorities with none are absent).
  const std::map<int32_t, size_t>& queued_by_priority() const { return by_priority_; }
  // Queued and running jobs of one tenant (tenancy.h: the tenant of their keys).
  size_t queued_of_tenant(std::string_view tenant) const;
  size_t running_of_tenant(std::string_view tenant) const;
  // Calls f(std::string_view tenant, size_t queued, size_t running) for every tenant with queued
  // or running jobs, by name.
  template <class F>
  void for_each_tenant(F&& f) const {
    for (const auto& [name, t] : tenants_) f(std::string_view(name), t.queued, t.running);
  }

  // Without it (or until it is set) every tenant has weight 1 and no running cap.
  void set_shares(ShareOf share_of);
  const ShareOf& shares() const { return share_of_; }
  // Asks share_of again for every tenant held (after the operator's file changed).
  void refresh_shares();

  Job* find(const std::string& job_id);
  const Job* find(const std::string& job_id) const;
  // REQUIRES: no job with this id is held. `route`: its submitter ("" for none: a job recovered
  // or claimed, whose submitter is not connected here).
  Job& push(QueuedRequest request, std::string route, Clock::time_point now);
  // What dispatch passes over this turn: every tenant's jobs of `images` (no worker that has the
  // image has a credit), and one tenant's jobs of one image (its next one fits no worker now).
  struct Skip {
    std::vector<std::string> images;
    std::vector<std::pair<std::string, std::string>> tenant_images;  // (tenant, image)
    void clear() {
      images.clear();
      tenant_images.clear();
    }
  };
  // The job that goes next (see above) among those `skip` does not pass over; nullptr if none.
  // Valid until the queue changes.
  const Job* peek(const Skip& skip) const;
  // REQUIRES: `job` is what peek() gave, the queue unchanged since. It is now running on
  // `worker`, charged to its tenant's share.
  Job& start(const Job& job, const std::string& worker);
  // Removes every queued job of `image`. Returns them.
  std::vector<Job> take_image(const std::string& image);
  // A running or waiting job goes back to the queue, ahead of younger jobs of its priority.
  void requeue(Job& job);
  // A running job waits for its retry's backoff (Job::State::kWaiting): it no longer counts
  // against its tenant's running cap.
  void wait(Job& job);
  // Forgets a job (finished, cancelled, failed). Returns it.
  std::optional<Job> remove(const std::string& job_id);
  // Removes queued jobs whose deadline (unix ms) is at or before `now_unix_ms`.
  std::vector<Job> take_expired(uint64_t now_unix_ms);

 private:
  using Key = std::pair<int64_t, uint64_t>;  // (-priority, seq)
  static Key key_of(const Job& j) { return {-static_cast<int64_t>(j.request.priority), j.seq}; }
  // Queued jobs of one tenant and image. Nodes of jobs_ do not move, so a job is held by address:
  // no copy of its id, no lookup by it.
  using Order = std::map<Key, Job*>;

  struct Tenant {
    std::string name;
    std::unordered_map<std::string, Order> images;  // images with queued jobs only
    size_t queued = 0;
    size_t running = 0;
    double vtime = 0;
    TenantShare share;
    bool listed = false;  // in ready_, at `listed_at`
    double listed_at = 0;
  };
  // ready_'s order: virtual time, then name.
  struct Ready {
    double vtime;
    std::string_view name;
    Tenant* tenant;
    bool operator<(const Ready& o) const {
      return vtime != o.vtime ? vtime < o.vtime : name < o.name;
    }
  };

  Tenant& tenant_of(const Job& job);
  // Whether `t` may be dispatched to: it has queued jobs and is below its running cap.
  static bool may_dispatch(const Tenant& t) {
    return t.queued > 0 && t.running < t.share.max_running;
  }
  // Into ready_ if it may be dispatched to; out of it. `lift`: one that was not in ready_ comes
  // in at the current virtual time at least.
  void list(Tenant& t, bool lift);
  void unlist(Tenant& t);
  // Forgets a tenant with nothing queued or running.
  void drop_if_idle(Tenant& t);
  void enqueue(Job& job);
  void unqueue(const Job& job);
  void dequeued(Tenant& t, const Job& job);
  void stopped_running(const Job& job);
  // The dispatch of `job`, the head of `t`'s queue `order` of its image: t's share is charged.
  Job& started(Tenant& t, std::unordered_map<std::string, Order>::iterator order,
               const std::string& worker);

  uint64_t next_seq_ = 0;
  size_t with_deadline_ = 0;  // queued jobs that have a deadline; skips the scan when 0
  size_t queued_ = 0;
  double vnow_ = 0;  // the virtual time: that of the tenant dispatched to last
  ShareOf share_of_;
  std::unordered_map<std::string, Job> jobs_;
  std::map<std::string, Tenant, std::less<>> tenants_;  // with queued or running jobs only
  std::set<Ready> ready_;
  std::unordered_map<std::string, size_t> by_image_;  // queued jobs per image; only those with any
  std::map<int32_t, size_t> by_priority_;
};

}  // namespace paddock::broker
