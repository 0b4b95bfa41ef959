// A fixed set of job slots (threads). The loop submits tasks; each job's answer (task id,
// command, encoded body) and the end of its slot's work wait in a completion list that the loop
// takes whole, woken by
// an eventfd that is written only when the list goes from empty to not empty: one wakeup carries
// every outcome that finished meanwhile, and no slot owns a socket or a file descriptor (so
// --slots is not bounded by ZMQ_MAX_SOCKETS or the fd limit).
//
// Slots are woken sparingly (a wakeup is two context switches, which cost more than a job of the
// memory test double), by kick(), which the loop calls once per turn after submitting that turn's
// tasks: with no job running and no slot awake, one slot is woken for them all; otherwise a task
// waits for a slot to come back from its job. Only a task that has
// waited kHandoffWait makes the loop's kick() wake sleeping slots: one per such task beyond the
// free slots already awake if no slot came back from a job for kHandoffWait (long jobs: a burst
// of VM jobs gets a slot each within about kHandoffWait), else one more slot per kHandoffWait
// (slots come back, but not fast enough). Short jobs are run back to back by the few slots awake.
//
// Thread-safety: submit(), kick(), take_completions() and the destructor are called from the
// loop's thread only; completion_fd() is safe anywhere.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <optional>
#include <stop_token>
#include <string>
#include <thread>
#include <vector>

#include "paddock/schemas/frames.h"

namespace paddock::worker {

// Runs one job; returns the (command, encoded body) to send, or nullopt if the job was answered
// already with SlotPool::answer() (before its VM's teardown, which the slot then finished).
using JobRunner = std::function<std::optional<std::pair<schemas::Command, std::string>>(
    const schemas::JobDispatch&, uint64_t task_id, std::stop_token)>;

class SlotPool {
 public:
  using Clock = std::chrono::steady_clock;
  static constexpr std::chrono::milliseconds kHandoffWait{1};

  // A task's answer, the end of its slot's work, or both (the runner returned its answer). An
  // answer given early comes before the same task's end.
  struct Completion {
    uint64_t task_id = 0;
    bool has_answer = true;  // command and body are the task's answer
    bool slot_free = true;   // the task's slot is done with it (its VM torn down)
    schemas::Command command{};
    std::string body;
  };

  SlotPool(size_t slots, JobRunner runner);
  ~SlotPool();  // stops every running job (stop_token) and joins the slots
  SlotPool(const SlotPool&) = delete;
  SlotPool& operator=(const SlotPool&) = delete;

  // Queues a task; kick() wakes a slot for it.
  void submit(uint64_t task_id, schemas::JobDispatch dispatch, std::stop_source stop);
  // Wakes slots for the tasks submitted, as above. Returns when to call it again at the
  // latest (time_point::max() with no task waiting). Call every loop turn.
  Clock::time_point kick(Clock::time_point now);

  // A running task's answer, before its runner returns (which then returns nullopt). Safe from
  // any thread; at most once per task.
  void answer(uint64_t task_id, schemas::Command command, std::string body);
  // A running task's OUTPUT (live output of a streaming job), before its answer. Safe from any
  // thread; any number of times.
  void output(uint64_t task_id, std::string body);

  // Readable (poll) while completions wait; take_completions() clears it.
  int completion_fd() const { return event_fd_; }
  // Moves every waiting completion into `out` (cleared first), in the order they finished.
  void take_completions(std::vector<Completion>& out);

 private:
  struct Task {
    uint64_t task_id;
    schemas::JobDispatch dispatch;
    std::stop_source stop;
    Clock::time_point queued_at;
  };
  void slot_main(size_t slot, std::stop_token pool_stop);
  // REQUIRES: mu_ held. Wakes one sleeping slot if tasks wait and no free slot is awake.
  void wake_if_needed();
  void complete(Completion c);

  JobRunner runner_;
  const size_t slots_;
  std::mutex mu_;
  std::condition_variable_any cv_;
  std::deque<Task> tasks_;                 // guarded by mu_
  std::vector<std::stop_source> current_;  // per slot, the running job's; guarded by mu_
  size_t sleeping_ = 0;                    // slots waiting on cv_; guarded by mu_
  size_t running_ = 0;                     // slots running a job; guarded by mu_
  Clock::time_point last_return_{};        // a slot last came back from a job; guarded by mu_
  Clock::time_point next_ramp_{};          // kick()'s next gradual wake; guarded by mu_
  size_t wakes_pending_ = 0;  // wakeups handed to sleeping slots, not yet taken; guarded by mu_
  std::mutex done_mu_;
  std::vector<Completion> done_;  // guarded by done_mu_
  int event_fd_ = -1;
  std::vector<std::jthread> threads_;
};

}  // namespace paddock::worker
