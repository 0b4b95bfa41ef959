#include "slot_pool.h"

#include <spdlog/spdlog.h>

#include "paddock/schemas/frames.h"

namespace paddock::worker {

SlotPool::SlotPool(zmq::context_t& context, std::string completions, size_t slots, JobRunner runner)
    : context_(context), completions_(std::move(completions)), runner_(std::move(runner)) {
  threads_.reserve(slots);
  for (size_t i = 0; i < slots; ++i) {
    threads_.emplace_back([this](std::stop_token st) { slot_main(st); });
  }
}

SlotPool::~SlotPool() {
  {
    std::lock_guard lock(mu_);
    for (auto& s : running_) s.request_stop();
  }
  for (auto& t : threads_) t.request_stop();
  cv_.notify_all();
  threads_.clear();  // joins
}

void SlotPool::submit(uint64_t task_id, schemas::JobDispatch dispatch, std::stop_source stop) {
  {
    std::lock_guard lock(mu_);
    tasks_.push_back(Task{task_id, std::move(dispatch), std::move(stop)});
  }
  cv_.notify_one();
}

void SlotPool::slot_main(std::stop_token pool_stop) {
  zmq::socket_t out(context_, zmq::socket_type::push);
  out.set(zmq::sockopt::linger, 0);
  out.connect(completions_);
  while (true) {
    Task task;
    {
      std::unique_lock lock(mu_);
      if (!cv_.wait(lock, pool_stop, [&] { return !tasks_.empty(); })) return;
      task = std::move(tasks_.front());
      tasks_.pop_front();
      running_.push_back(task.stop);
    }
    auto [command, body] = runner_(task.dispatch, task.task_id, task.stop.get_token());
    {
      std::lock_guard lock(mu_);
      std::erase_if(running_, [&](const std::stop_source& s) { return s == task.stop; });
    }
    if (pool_stop.stop_requested()) return;  // shutting down: the loop reads no more
    const uint64_t id = task.task_id;
    out.send(zmq::buffer(&id, sizeof id), zmq::send_flags::sndmore);
    const char cmd = static_cast<char>(command);
    out.send(zmq::buffer(&cmd, 1), zmq::send_flags::sndmore);
    out.send(zmq::buffer(body), zmq::send_flags::none);
  }
}

}  // namespace paddock::worker
