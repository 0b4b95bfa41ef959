#include "slot_pool.h"

#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <system_error>

namespace paddock::worker {

SlotPool::SlotPool(size_t slots, JobRunner runner)
    : runner_(std::move(runner)), slots_(slots), current_(slots) {
  event_fd_ = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (event_fd_ < 0) {
    throw std::system_error(errno, std::generic_category(), "eventfd for slot completions");
  }
  threads_.reserve(slots);
  for (size_t i = 0; i < slots; ++i) {
    threads_.emplace_back([this, i](std::stop_token st) { slot_main(i, st); });
  }
}

SlotPool::~SlotPool() {
  {
    std::lock_guard lock(mu_);
    for (auto& s : current_) s.request_stop();
  }
  for (auto& t : threads_) t.request_stop();
  cv_.notify_all();
  threads_.clear();  // joins
  ::close(event_fd_);
}

void SlotPool::wake_if_needed() {
  if (tasks_.empty() || sleeping_ <= wakes_pending_) return;
  const size_t free_awake = slots_ - sleeping_ - running_ + wakes_pending_;
  if (free_awake > 0) return;
  ++wakes_pending_;
  cv_.notify_one();
}

void SlotPool::submit(uint64_t task_id, schemas::JobDispatch dispatch, std::stop_source stop) {
  std::lock_guard lock(mu_);
  tasks_.push_back(Task{task_id, std::move(dispatch), std::move(stop), Clock::now()});
}

SlotPool::Clock::time_point SlotPool::kick(Clock::time_point now) {
  std::lock_guard lock(mu_);
  // With no job running, no slot comes back for the tasks: one is woken now (for all of them).
  if (running_ == 0) wake_if_needed();
  size_t overdue = 0;
  for (const Task& t : tasks_) {
    if (now - t.queued_at < kHandoffWait) break;  // FIFO: the rest are younger
    ++overdue;
  }
  const size_t free_awake = slots_ - sleeping_ - running_ + wakes_pending_;
  // Slots coming back from jobs keep up with short jobs: then one more slot per kHandoffWait at
  // most (jobs a little longer get more slots gradually). None came back for kHandoffWait (long
  // jobs, VMs): one slot per overdue task.
  size_t wake = overdue > free_awake ? overdue - free_awake : 0;
  if (wake > 0 && now - last_return_ < kHandoffWait) {
    wake = now >= next_ramp_ ? 1 : 0;
    if (wake > 0) next_ramp_ = now + kHandoffWait;
  }
  for (; wake > 0 && sleeping_ > wakes_pending_; --wake) {
    ++wakes_pending_;
    cv_.notify_one();
  }
  if (overdue < tasks_.size()) return tasks_[overdue].queued_at + kHandoffWait;
  return tasks_.empty() ? Clock::time_point::max() : now + kHandoffWait;
}

void SlotPool::take_completions(std::vector<Completion>& out) {
  out.clear();
  // Read the counter before taking the list: a completion added after the swap finds the list
  // empty and writes the eventfd again, so none is left without a wakeup.
  uint64_t ignored = 0;
  (void)!::read(event_fd_, &ignored, sizeof ignored);
  std::lock_guard lock(done_mu_);
  out.swap(done_);
}

void SlotPool::answer(uint64_t task_id, schemas::Command command, std::string body) {
  complete(Completion{task_id, true, false, command, std::move(body)});
}

void SlotPool::output(uint64_t task_id, std::string body) {
  complete(Completion{task_id, true, false, schemas::Command::kOutput, std::move(body)});
}

void SlotPool::complete(Completion c) {
  bool was_empty = false;
  {
    std::lock_guard lock(done_mu_);
    was_empty = done_.empty();
    done_.push_back(std::move(c));
  }
  if (was_empty) {
    const uint64_t one = 1;
    (void)!::write(event_fd_, &one, sizeof one);
  }
}

void SlotPool::slot_main(size_t slot, std::stop_token pool_stop) {
  std::unique_lock lock(mu_);
  while (true) {
    if (tasks_.empty()) {
      // Sleeps until wake_if_needed() hands this slot a wakeup (a spurious wake keeps waiting).
      ++sleeping_;
      const bool woken = cv_.wait(lock, pool_stop, [&] { return wakes_pending_ > 0; });
      --sleeping_;
      if (!woken) return;
      --wakes_pending_;
      continue;  // the task it was woken for may have been taken by a slot already awake
    }
    Task task = std::move(tasks_.front());
    tasks_.pop_front();
    current_[slot] = task.stop;
    ++running_;
    lock.unlock();
    auto answered = runner_(task.dispatch, task.task_id, task.stop.get_token());
    if (pool_stop.stop_requested()) return;  // shutting down: the loop reads no more
    if (answered) {
      complete(Completion{task.task_id, true, true, answered->first, std::move(answered->second)});
    } else {
      complete(Completion{task.task_id, false, true, {}, {}});
    }
    lock.lock();
    current_[slot] = std::stop_source(std::nostopstate);
    --running_;
    last_return_ = Clock::now();
  }
}

}  // namespace paddock::worker
