#include "worker_registry.h"

#include <algorithm>

namespace paddock::broker {

WorkerState* WorkerRegistry::find(const std::string& routing_id) {
  auto it = workers_.find(routing_id);
  return it == workers_.end() ? nullptr : &it->second;
}

WorkerState& WorkerRegistry::add(const std::string& routing_id, std::string worker_id,
                                 uint32_t credits, Clock::time_point now) {
  WorkerState& w = workers_[routing_id];
  w.routing_id = routing_id;
  w.worker_id = std::move(worker_id);
  w.last_seen = now;
  grant(w, credits);
  return w;
}

void WorkerRegistry::grant(WorkerState& w, uint32_t credits) {
  if (w.draining) return;
  w.credits = std::min<uint32_t>(kMaxCredits, w.credits + credits);
  enlist(w);
}

void WorkerRegistry::drain(WorkerState& w) {
  w.draining = true;
  w.credits = 0;
}

std::set<std::string> WorkerRegistry::remove(const std::string& routing_id) {
  auto it = workers_.find(routing_id);
  if (it == workers_.end()) return {};
  std::set<std::string> jobs = std::move(it->second.jobs);
  workers_.erase(it);
  return jobs;
}

void WorkerRegistry::enlist(WorkerState& w) {
  if (w.credits > 0 && in_ready_.insert(w.routing_id).second) ready_.push_back(w.routing_id);
}

WorkerState* WorkerRegistry::next_with_credit() {
  while (!ready_.empty()) {
    std::string id = std::move(ready_.front());
    ready_.pop_front();
    in_ready_.erase(id);
    WorkerState* w = find(id);
    if (w == nullptr || w->credits == 0 || w->draining) continue;
    if (w->credits > 1) enlist(*w);  // back of the ring: round-robin between workers
    return w;
  }
  return nullptr;
}

std::vector<std::string> WorkerRegistry::silent_since(Clock::time_point cutoff) const {
  std::vector<std::string> out;
  for (const auto& [id, w] : workers_) {
    if (w.last_seen < cutoff) out.push_back(id);
  }
  return out;
}

WorkerRegistry::Totals WorkerRegistry::totals() const {
  Totals t;
  for (const auto& [id, w] : workers_) {
    t.credits += w.credits;
    t.jobs += w.jobs.size();
  }
  return t;
}

std::vector<std::string> WorkerRegistry::routing_ids() const {
  std::vector<std::string> out;
  out.reserve(workers_.size());
  for (const auto& [id, w] : workers_) out.push_back(id);
  return out;
}

}  // namespace paddock::broker
