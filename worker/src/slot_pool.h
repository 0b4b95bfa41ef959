// A fixed set of job slots (threads). Each finished job's outcome is sent, encoded as a message
// (task id, command, body), on an inproc PUSH socket to the worker's loop, which owns every
// socket to the brokers.
//
// Thread-safety: submit() and the destructor are called from the loop's thread only.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <stop_token>
#include <string>
#include <thread>
#include <vector>

#include <zmq.hpp>

#include "paddock/schemas/frames.h"

namespace paddock::worker {

// Runs one job; returns the (command, encoded body) to send.
using JobRunner = std::function<std::pair<schemas::Command, std::string>(
    const schemas::JobDispatch&, uint64_t task_id, std::stop_token)>;

class SlotPool {
 public:
  // `completions` is an inproc endpoint already bound by the caller's PULL socket.
  SlotPool(zmq::context_t& context, std::string completions, size_t slots, JobRunner runner);
  ~SlotPool();  // stops every running job (stop_token) and joins the slots

  void submit(uint64_t task_id, schemas::JobDispatch dispatch, std::stop_source stop);

 private:
  struct Task {
    uint64_t task_id;
    schemas::JobDispatch dispatch;
    std::stop_source stop;
  };
  void slot_main(std::stop_token pool_stop);

  zmq::context_t& context_;
  std::string completions_;
  JobRunner runner_;
  std::mutex mu_;
  std::condition_variable_any cv_;
  std::deque<Task> tasks_;
  std::vector<std::stop_source> running_;  // guarded by mu_
  std::vector<std::jthread> threads_;
};

}  // namespace paddock::worker
