// The workers the broker knows, by routing id: their credits (jobs they granted and have not been
// sent), the images they have, the jobs they hold, when they were last heard from, and per image a
// round-robin of those that have it and can take a job now. An image's round-robin holds each
// worker that has it at most once; a worker that has run out of credits stays in the others until
// they reach it (skipped lazily), so no step costs more than O(images of one worker).
//
// Thread-safety: none; owned by the broker's event loop.
#pragma once

#include <chrono>
#include <deque>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "job_queue.h"
#include "paddock/schemas/messages.h"

namespace paddock::broker {

// What a job holds of a worker's capacity while it runs there.
struct Footprint {
  uint32_t vcpus = 0;
  uint32_t mem_mib = 0;
};

struct WorkerState {
  std::string routing_id;
  std::string worker_id;  // the name the worker gave in READY
  uint32_t credits = 0;
  bool draining = false;
  std::vector<std::string> images;  // from READY's "image:<name>" capabilities; distinct
  // Job keys in flight on this worker, and what each holds of it (WorkerRegistry::hold).
  std::map<std::string, Footprint> jobs;
  // What it can commit to guests at once (READY's "vcpus:<n>", "mem_mib:<n>"; 0: it did not
  // say, no bound), and what its jobs hold now.
  uint32_t capacity_vcpus = 0;
  uint32_t capacity_mem_mib = 0;
  uint64_t used_vcpus = 0;
  uint64_t used_mem_mib = 0;
  // Whether a job of `f` fits now, beside the jobs it holds; whether it would fit on its own.
  bool fits(Footprint f) const {
    return (capacity_vcpus == 0 || used_vcpus + f.vcpus <= capacity_vcpus) &&
           (capacity_mem_mib == 0 || used_mem_mib + f.mem_mib <= capacity_mem_mib);
  }
  bool could_fit(Footprint f) const {
    return (capacity_vcpus == 0 || f.vcpus <= capacity_vcpus) &&
           (capacity_mem_mib == 0 || f.mem_mib <= capacity_mem_mib);
  }
  Clock::time_point last_seen;
  // What the dashboard shows of it.
  std::string host;  // its connection's peer address; "" if ZeroMQ did not say
  // From its latest HEARTBEAT's WorkerStatus; nullopt until one came (an older worker sends none).
  std::optional<schemas::WorkerStatus> status;
  std::string backend;       // READY's "backend:<name>" capability; "" if none
  uint32_t ready_slots = 0;  // the credits READY granted
  uint64_t connected_unix_ms = 0;
  uint64_t answered = 0;  // RESULTs and ERRORs it sent
};

class WorkerRegistry {
 public:
  static constexpr uint32_t kMaxCredits = 4096;

  WorkerState* find(const std::string& routing_id);
  // REQUIRES: `images` distinct. None: the worker has "default" (a worker that predates images).
  WorkerState& add(const std::string& routing_id, std::string worker_id, uint32_t credits,
                   Clock::time_point now, std::vector<std::string> images = {});
  void grant(WorkerState& w, uint32_t credits);
  // Stops dispatching to `w`; its unused credits are withdrawn.
  void drain(WorkerState& w);
  // Removes the worker and returns the ids of the jobs it held.
  std::set<std::string> remove(const std::string& routing_id, Clock::time_point now);
  // A job (its key) is on `w` now, holding `f` of its capacity; it no longer is.
  void hold(WorkerState& w, const std::string& key, Footprint f);
  void release(WorkerState& w, const std::string& key);
  // The next worker that has `image`, a credit and room for `need` (WorkerState::fits),
  // round-robin; nullptr if none. `credit`, if given: whether any worker with `image` had a
  // credit (so none had room).
  WorkerState* next_with_credit(const std::string& image, Footprint need = {},
                                bool* credit = nullptr);
  // Whether connected workers have `image` and none of them could ever fit `need`. Then `most`:
  // the largest capacity among them (vCPUs and MiB, each its own largest).
  bool never_fits(const std::string& image, Footprint need, Footprint* most) const;
  // Whether a job of `image` should be answered UnknownImage now: workers are connected, none of
  // them has it, and none has had it for `grace`, counted from the later of the last time a
  // connected worker had it and the moment the first worker connected (after a time with none).
  // With no worker connected nothing is unknown: the fleet may be starting or reconnecting.
  bool image_unknown(const std::string& image, Clock::time_point now,
                     std::chrono::milliseconds grace) const;
  // The images connected workers have, sorted.
  std::vector<std::string> images() const;
  // Workers not heard from since `cutoff`.
  std::vector<std::string> silent_since(Clock::time_point cutoff) const;
  std::vector<std::string> routing_ids() const;
  // Calls f(const WorkerState&) for every worker, in no particular order.
  template <class F>
  void for_each(F&& f) const {
    for (const auto& [id, w] : workers_) f(w);
  }
  size_t size() const { return workers_.size(); }
  struct Totals {
    size_t credits = 0;
    size_t jobs = 0;  // in flight
  };
  // Over every worker: O(workers).
  Totals totals() const;

 private:
  struct ImageRing {
    std::deque<std::string> ready;  // routing ids; may hold stale ones, skipped lazily
    std::unordered_set<std::string> in_ready;
    size_t workers = 0;          // connected workers that have the image
    Clock::time_point last_had;  // when the last of them left
  };
  void enlist(WorkerState& w);

  std::unordered_map<std::string, WorkerState> workers_;
  std::unordered_map<std::string, ImageRing> rings_;  // by image; kept once seen (for last_had)
  Clock::time_point fleet_since_;  // when the first worker connected after a time with none
};

}  // namespace paddock::broker
