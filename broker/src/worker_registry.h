// The workers the broker knows, by routing id: their credits (jobs they granted and have not been
// sent), the jobs they hold, when they were last heard from, and a round-robin of those that can
// take a job now.
//
// Thread-safety: none; owned by the broker's event loop.
#pragma once

#include <deque>
#include <set>
#include <string>
#include <unordered_map>
#include <vector>

#include "job_queue.h"

namespace paddock::broker {

struct WorkerState {
  std::string routing_id;
  std::string worker_id;  // the name the worker gave in READY
  uint32_t credits = 0;
  bool draining = false;
  std::set<std::string> jobs;  // job ids in flight on this worker
  Clock::time_point last_seen;
};

class WorkerRegistry {
 public:
  static constexpr uint32_t kMaxCredits = 4096;

  WorkerState* find(const std::string& routing_id);
  WorkerState& add(const std::string& routing_id, std::string worker_id, uint32_t credits,
                   Clock::time_point now);
  void grant(WorkerState& w, uint32_t credits);
  // Stops dispatching to `w`; its unused credits are withdrawn.
  void drain(WorkerState& w);
  // Removes the worker and returns the ids of the jobs it held.
  std::set<std::string> remove(const std::string& routing_id);
  // The next worker that has a credit, round-robin; nullptr if none.
  WorkerState* next_with_credit();
  // Workers not heard from since `cutoff`.
  std::vector<std::string> silent_since(Clock::time_point cutoff) const;
  std::vector<std::string> routing_ids() const;
  size_t size() const { return workers_.size(); }
  struct Totals {
    size_t credits = 0;
    size_t jobs = 0;  // in flight
  };
  // Over every worker: O(workers).
  Totals totals() const;

 private:
  void enlist(WorkerState& w);

  std::unordered_map<std::string, WorkerState> workers_;
  std::deque<std::string> ready_;  // may hold stale ids; skipped lazily
  std::set<std::string> in_ready_;
};

}  // namespace paddock::broker
