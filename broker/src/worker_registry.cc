#include "worker_registry.h"

#include <algorithm>

namespace paddock::broker {

WorkerState* WorkerRegistry::find(const std::string& routing_id) {
  auto it = workers_.find(routing_id);
  return it == workers_.end() ? nullptr : &it->second;
}

WorkerState& WorkerRegistry::add(const std::string& routing_id, std::string worker_id,
                                 uint32_t credits, Clock::time_point now,
                                 std::vector<std::string> images) {
  if (workers_.empty()) fleet_since_ = now;
  WorkerState& w = workers_[routing_id];
  w.routing_id = routing_id;
  w.worker_id = std::move(worker_id);
  w.last_seen = now;
  w.images = images.empty() ? std::vector<std::string>{"default"} : std::move(images);
  for (const auto& image : w.images) ++rings_[image].workers;
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

std::set<std::string> WorkerRegistry::remove(const std::string& routing_id, Clock::time_point now) {
  auto it = workers_.find(routing_id);
  if (it == workers_.end()) return {};
  for (const auto& image : it->second.images) {
    ImageRing& ring = rings_[image];
    --ring.workers;
    ring.last_had = now;
  }
  std::set<std::string> jobs;
  for (const auto& [key, f] : it->second.jobs) jobs.insert(jobs.end(), key);
  workers_.erase(it);
  return jobs;
}

void WorkerRegistry::enlist(WorkerState& w) {
  if (w.credits == 0) return;
  for (const auto& image : w.images) {
    ImageRing& ring = rings_[image];
    if (ring.in_ready.insert(w.routing_id).second) ring.ready.push_back(w.routing_id);
  }
}

void WorkerRegistry::hold(WorkerState& w, const std::string& key, Footprint f) {
  if (!w.jobs.emplace(key, f).second) return;
  w.used_vcpus += f.vcpus;
  w.used_mem_mib += f.mem_mib;
}

void WorkerRegistry::release(WorkerState& w, const std::string& key) {
  auto it = w.jobs.find(key);
  if (it == w.jobs.end()) return;
  w.used_vcpus -= std::min<uint64_t>(w.used_vcpus, it->second.vcpus);
  w.used_mem_mib -= std::min<uint64_t>(w.used_mem_mib, it->second.mem_mib);
  w.jobs.erase(it);
}

WorkerState* WorkerRegistry::next_with_credit(const std::string& image, Footprint need,
                                              bool* credit) {
  if (credit != nullptr) *credit = false;
  auto found = rings_.find(image);
  if (found == rings_.end()) return nullptr;
  ImageRing& ring = found->second;
  // One pass at most: a worker with credits but no room for `need` keeps its place in the ring
  // (moved to the back), for a job that fits it.
  for (size_t n = ring.ready.size(); n > 0 && !ring.ready.empty(); --n) {
    std::string id = std::move(ring.ready.front());
    ring.ready.pop_front();
    ring.in_ready.erase(id);
    WorkerState* w = find(id);
    if (w == nullptr || w->credits == 0 || w->draining) continue;
    if (credit != nullptr) *credit = true;
    const bool fits = w->fits(need);
    if (!fits || w->credits > 1) {  // back of this ring: round-robin between workers
      ring.in_ready.insert(id);
      ring.ready.push_back(std::move(id));
    }
    if (fits) return w;
  }
  return nullptr;
}

bool WorkerRegistry::never_fits(const std::string& image, Footprint need, Footprint* most) const {
  bool any = false;
  Footprint largest;
  for (const auto& [id, w] : workers_) {
    if (std::find(w.images.begin(), w.images.end(), image) == w.images.end()) continue;
    if (w.could_fit(need)) return false;
    any = true;
    largest.vcpus = std::max(largest.vcpus, w.capacity_vcpus);
    largest.mem_mib = std::max(largest.mem_mib, w.capacity_mem_mib);
  }
  if (any && most != nullptr) *most = largest;
  return any;
}

bool WorkerRegistry::image_unknown(const std::string& image, Clock::time_point now,
                                   std::chrono::milliseconds grace) const {
  if (workers_.empty()) return false;
  Clock::time_point since = fleet_since_;
  auto it = rings_.find(image);
  if (it != rings_.end()) {
    if (it->second.workers > 0) return false;
    since = std::max(since, it->second.last_had);
  }
  return now - since >= grace;
}

std::vector<std::string> WorkerRegistry::images() const {
  std::vector<std::string> out;
  for (const auto& [image, ring] : rings_) {
    if (ring.workers > 0) out.push_back(image);
  }
  std::sort(out.begin(), out.end());
  return out;
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
