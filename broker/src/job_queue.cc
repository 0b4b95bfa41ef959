#include "job_queue.h"

#include <algorithm>

#include "tenancy.h"

namespace paddock::broker {

void Routes::submitted(const std::string& route) {
  if (!route.empty()) submitter_ = route;
}

void Routes::watch(const std::string& route) {
  if (route.empty() || std::find(watchers_.begin(), watchers_.end(), route) != watchers_.end()) {
    return;
  }
  if (watchers_.size() >= kMaxWatchers) watchers_.erase(watchers_.begin());
  watchers_.push_back(route);
}

void Routes::merge(const Routes& later) {
  submitted(later.submitter_);
  for (const auto& w : later.watchers_) watch(w);
}

void Routes::forget(const std::string& route) {
  if (submitter_ == route) submitter_.clear();
  std::erase(watchers_, route);
}

std::vector<std::string> Routes::all() const {
  std::vector<std::string> out;
  out.reserve(watchers_.size() + 1);
  if (!submitter_.empty()) out.push_back(submitter_);
  for (const auto& w : watchers_) {
    if (w != submitter_) out.push_back(w);
  }
  return out;
}

QueuedRequest QueuedRequest::of(const schemas::JobRequest& request, std::string encoded) {
  return QueuedRequest{request.job_id,      request.image,      request.priority,
                       request.deadline_ms, request.timeout_ms, request.vcpus,
                       request.mem_mib,     request.stream,     std::move(encoded)};
}

size_t JobQueue::queued_of_tenant(std::string_view tenant) const {
  auto it = tenants_.find(tenant);
  return it == tenants_.end() ? 0 : it->second.queued;
}

size_t JobQueue::running_of_tenant(std::string_view tenant) const {
  auto it = tenants_.find(tenant);
  return it == tenants_.end() ? 0 : it->second.running;
}

void JobQueue::set_shares(ShareOf share_of) {
  share_of_ = std::move(share_of);
  refresh_shares();
}

void JobQueue::refresh_shares() {
  for (auto& [name, t] : tenants_) {
    unlist(t);
    t.share = share_of_ ? share_of_(name) : TenantShare{};
    list(t, /*lift=*/true);
  }
}

Job* JobQueue::find(const std::string& job_id) {
  auto it = jobs_.find(job_id);
  return it == jobs_.end() ? nullptr : &it->second;
}

const Job* JobQueue::find(const std::string& job_id) const {
  auto it = jobs_.find(job_id);
  return it == jobs_.end() ? nullptr : &it->second;
}

Job& JobQueue::push(QueuedRequest request, std::string route, Clock::time_point now) {
  const std::string id = request.job_id;
  Job job;
  job.request = std::move(request);
  job.routes.submitted(route);
  job.seq = next_seq_++;
  job.accepted_at = now;
  auto [it, inserted] = jobs_.emplace(id, std::move(job));
  enqueue(it->second);
  return it->second;
}

JobQueue::Tenant& JobQueue::tenant_of(const Job& job) {
  const auto name = key_tenant(job.request.job_id);
  auto it = tenants_.find(name);
  if (it == tenants_.end()) {
    it = tenants_.emplace(std::string(name), Tenant{}).first;
    Tenant& t = it->second;
    t.name = it->first;
    t.vtime = vnow_;
    if (share_of_) t.share = share_of_(name);
  }
  return it->second;
}

void JobQueue::list(Tenant& t, bool lift) {
  if (t.listed || !may_dispatch(t)) return;
  if (lift) t.vtime = std::max(t.vtime, vnow_);
  t.listed = true;
  t.listed_at = t.vtime;
  ready_.insert(Ready{t.vtime, t.name, &t});
}

void JobQueue::unlist(Tenant& t) {
  if (!t.listed) return;
  ready_.erase(Ready{t.listed_at, t.name, &t});
  t.listed = false;
}

void JobQueue::drop_if_idle(Tenant& t) {
  if (t.queued != 0 || t.running != 0) return;
  unlist(t);
  tenants_.erase(tenants_.find(t.name));  // `t` is gone
}

void JobQueue::enqueue(Job& job) {
  Tenant& t = tenant_of(job);
  t.images[job.request.image].emplace(key_of(job), &job);
  ++t.queued;
  list(t, /*lift=*/true);
  ++queued_;
  ++by_image_[job.request.image];
  ++by_priority_[job.request.priority];
  if (job.request.deadline_ms != 0) ++with_deadline_;
}

void JobQueue::unqueue(const Job& job) {
  auto t = tenants_.find(key_tenant(job.request.job_id));
  if (t == tenants_.end()) return;
  auto it = t->second.images.find(job.request.image);
  if (it == t->second.images.end() || it->second.erase(key_of(job)) == 0) return;
  if (it->second.empty()) t->second.images.erase(it);
  unlist(t->second);
  dequeued(t->second, job);
  list(t->second, /*lift=*/false);
  drop_if_idle(t->second);
}

// A queued job left its tenant's queue (REQUIRES: taken out of its Order already). The caller
// lists the tenant again if it may still be dispatched to.
void JobQueue::dequeued(Tenant& t, const Job& job) {
  --queued_;
  if (auto it = by_image_.find(job.request.image); it != by_image_.end() && --it->second == 0) {
    by_image_.erase(it);
  }
  auto it = by_priority_.find(job.request.priority);
  if (it != by_priority_.end() && --it->second == 0) by_priority_.erase(it);
  if (job.request.deadline_ms != 0) --with_deadline_;
  --t.queued;
}

void JobQueue::stopped_running(const Job& job) {
  auto it = tenants_.find(key_tenant(job.request.job_id));
  if (it == tenants_.end()) return;
  Tenant& t = it->second;
  if (t.running > 0) --t.running;
  list(t, /*lift=*/true);  // below its cap again: back at the current virtual time
  drop_if_idle(t);
}

const Job* JobQueue::peek(const Skip& skip) const {
  auto skipped = [&](const std::string& tenant, const std::string& image) {
    if (std::find(skip.images.begin(), skip.images.end(), image) != skip.images.end()) return true;
    for (const auto& [t, i] : skip.tenant_images) {
      if (t == tenant && i == image) return true;
    }
    return false;
  };
  for (const Ready& r : ready_) {
    const Job* best = nullptr;
    const Key* best_key = nullptr;
    for (const auto& [image, order] : r.tenant->images) {
      if (skipped(r.tenant->name, image)) continue;
      const auto& head = *order.begin();
      if (best_key == nullptr || head.first < *best_key) {
        best = head.second;
        best_key = &head.first;
      }
    }
    if (best != nullptr) return best;
  }
  return nullptr;
}

Job& JobQueue::start(const Job& job, const std::string& worker) {
  Tenant& t = tenants_.find(key_tenant(job.request.job_id))->second;
  return started(t, t.images.find(job.request.image), worker);
}

Job& JobQueue::started(Tenant& t, std::unordered_map<std::string, Order>::iterator queue,
                       const std::string& worker) {
  auto first = queue->second.begin();
  Job& job = *first->second;
  queue->second.erase(first);
  if (queue->second.empty()) t.images.erase(queue);
  // The dispatch to t: the virtual time is its, and its own advances by its weight's step. Its
  // place in ready_ moves with it (the node is reused: no allocation per dispatch).
  auto node =
      t.listed ? ready_.extract(Ready{t.listed_at, t.name, &t}) : decltype(ready_)::node_type{};
  t.listed = false;
  vnow_ = std::max(vnow_, t.vtime);
  t.vtime += 1.0 / t.share.weight;
  ++t.running;
  dequeued(t, job);
  if (node && may_dispatch(t)) {
    node.value().vtime = t.vtime;
    ready_.insert(std::move(node));
    t.listed = true;
    t.listed_at = t.vtime;
  } else {
    list(t, /*lift=*/false);
  }
  job.state = Job::State::kRunning;
  job.worker = worker;
  return job;
}

void JobQueue::requeue(Job& job) {
  if (job.state == Job::State::kRunning) stopped_running(job);
  job.state = Job::State::kQueued;
  job.worker.clear();
  job.cancel_requested = false;
  enqueue(job);
}

void JobQueue::wait(Job& job) {
  if (job.state == Job::State::kRunning) stopped_running(job);
  job.state = Job::State::kWaiting;
  job.worker.clear();
}

std::optional<Job> JobQueue::remove(const std::string& job_id) {
  auto it = jobs_.find(job_id);
  if (it == jobs_.end()) return std::nullopt;
  if (it->second.state == Job::State::kQueued) unqueue(it->second);
  if (it->second.state == Job::State::kRunning) stopped_running(it->second);
  Job job = std::move(it->second);
  jobs_.erase(it);
  return job;
}

std::vector<Job> JobQueue::take_expired(uint64_t now_unix_ms) {
  std::vector<Job> expired;
  if (with_deadline_ == 0) return expired;
  std::vector<std::string> ids;
  for (const auto& [name, t] : tenants_) {
    for (const auto& [image, order] : t.images) {
      for (const auto& [key, job] : order) {
        const auto& r = job->request;
        if (r.deadline_ms != 0 && r.deadline_ms <= now_unix_ms) ids.push_back(r.job_id);
      }
    }
  }
  for (const auto& id : ids) expired.push_back(*remove(id));
  return expired;
}

std::vector<Job> JobQueue::take_image(const std::string& image) {
  std::vector<Job> taken;
  std::vector<std::string> ids;
  for (const auto& [name, t] : tenants_) {
    auto queue = t.images.find(image);
    if (queue == t.images.end()) continue;
    for (const auto& [key, job] : queue->second) ids.push_back(job->request.job_id);
  }
  for (const auto& id : ids) taken.push_back(*remove(id));
  return taken;
}

}  // namespace paddock::broker
