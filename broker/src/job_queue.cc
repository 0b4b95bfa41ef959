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
                       request.deadline_ms, request.timeout_ms, std::move(encoded)};
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

void JobQueue::enqueue(Job& job) {
  by_image_[job.request.image].emplace(key_of(job), &job);
  ++queued_;
  ++by_priority_[job.request.priority];
  const auto tenant = key_tenant(job.request.job_id);
  if (auto t = by_tenant_.find(tenant); t != by_tenant_.end()) {
    ++t->second;
  } else {
    by_tenant_.emplace(std::string(tenant), 1);
  }
  if (job.request.deadline_ms != 0) ++with_deadline_;
}

void JobQueue::unqueue(const Job& job) {
  auto it = by_image_.find(job.request.image);
  if (it == by_image_.end() || it->second.erase(key_of(job)) == 0) return;
  if (it->second.empty()) by_image_.erase(it);
  dequeued(job);
}

void JobQueue::dequeued(const Job& job) {
  --queued_;
  auto it = by_priority_.find(job.request.priority);
  if (it != by_priority_.end() && --it->second == 0) by_priority_.erase(it);
  if (job.request.deadline_ms != 0) --with_deadline_;
  auto t = by_tenant_.find(key_tenant(job.request.job_id));
  if (t != by_tenant_.end() && --t->second == 0) by_tenant_.erase(t);
}

const std::string* JobQueue::next_image(const std::vector<std::string>& skip) const {
  const std::string* best = nullptr;
  const Key* best_key = nullptr;
  for (const auto& [image, order] : by_image_) {
    if (std::find(skip.begin(), skip.end(), image) != skip.end()) continue;
    const Key& head = order.begin()->first;
    if (best_key == nullptr || head < *best_key) {
      best = &image;
      best_key = &head;
    }
  }
  return best;
}

Job* JobQueue::pop_next(const std::string& image, const std::string& worker) {
  auto queue = by_image_.find(image);
  if (queue == by_image_.end()) return nullptr;
  auto first = queue->second.begin();
  Job& job = *first->second;
  queue->second.erase(first);
  if (queue->second.empty()) by_image_.erase(queue);  // `image` may refer to the erased key
  dequeued(job);
  job.state = Job::State::kRunning;
  job.worker = worker;
  return &job;
}

void JobQueue::requeue(Job& job) {
  job.state = Job::State::kQueued;
  job.worker.clear();
  job.cancel_requested = false;
  enqueue(job);
}

std::optional<Job> JobQueue::remove(const std::string& job_id) {
  auto it = jobs_.find(job_id);
  if (it == jobs_.end()) return std::nullopt;
  if (it->second.state == Job::State::kQueued) unqueue(it->second);
  Job job = std::move(it->second);
  jobs_.erase(it);
  return job;
}

std::vector<Job> JobQueue::take_expired(uint64_t now_unix_ms) {
  std::vector<Job> expired;
  if (with_deadline_ == 0) return expired;
  std::vector<std::string> ids;
  for (const auto& [image, order] : by_image_) {
    for (const auto& [key, job] : order) {
      const auto& r = job->request;
      if (r.deadline_ms != 0 && r.deadline_ms <= now_unix_ms) ids.push_back(r.job_id);
    }
  }
  for (const auto& id : ids) expired.push_back(*remove(id));
  return expired;
}

std::vector<Job> JobQueue::take_image(const std::string& image) {
  std::vector<Job> taken;
  auto queue = by_image_.find(image);
  if (queue == by_image_.end()) return taken;
  std::vector<std::string> ids;
  for (const auto& [key, job] : queue->second) ids.push_back(job->request.job_id);
  for (const auto& id : ids) taken.push_back(*remove(id));
  return taken;
}

}  // namespace paddock::broker
