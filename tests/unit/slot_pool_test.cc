// The worker's slot pool: every task runs once and its outcome comes back through the completion
// list and its eventfd; a burst of long jobs still gets a slot each (kick() wakes sleeping slots
// for tasks that waited); 1024 slots need no socket or fd each; the destructor stops running jobs.
#include <doctest/doctest.h>

#include <poll.h>

#include <atomic>
#include <chrono>
#include <set>
#include <thread>

#include "slot_pool.h"

using namespace std::chrono_literals;
using paddock::schemas::Command;
using paddock::schemas::JobDispatch;
using paddock::worker::SlotPool;

namespace {

// The worker loop's part: kick, wait for the fd (at most until kick's deadline), take outcomes.
void collect(SlotPool& pool, std::vector<SlotPool::Completion>& all, size_t want,
             std::chrono::seconds limit) {
  const auto give_up = SlotPool::Clock::now() + limit;
  std::vector<SlotPool::Completion> batch;
  while (all.size() < want && SlotPool::Clock::now() < give_up) {
    const auto next = pool.kick(SlotPool::Clock::now());
    const auto wait = std::min(next, give_up) - SlotPool::Clock::now();
    pollfd p{pool.completion_fd(), POLLIN, 0};
    const int ms = static_cast<int>(
        std::max<int64_t>(0, std::chrono::ceil<std::chrono::milliseconds>(wait).count()));
    if (::poll(&p, 1, ms) > 0) {
      pool.take_completions(batch);
      for (auto& c : batch) all.push_back(std::move(c));
    }
  }
}

}  // namespace

TEST_CASE("slot pool: every task runs once and comes back, with 1024 slots") {
  std::atomic<int> runs{0};
  SlotPool pool(1024, [&](const JobDispatch& d, uint64_t task_id, std::stop_token) {
    ++runs;
    return std::make_pair(Command::kResult, d.request.job_id + "/" + std::to_string(task_id));
  });
  constexpr size_t kTasks = 5000;
  std::vector<SlotPool::Completion> all;
  for (size_t i = 0; i < kTasks; ++i) {
    JobDispatch d;
    d.request.job_id = "job-" + std::to_string(i);
    pool.submit(i + 1, std::move(d), std::stop_source());
    if (i % 100 == 99) (void)pool.kick(SlotPool::Clock::now());  // a loop turn now and then
  }
  collect(pool, all, kTasks, 10s);
  REQUIRE(all.size() == kTasks);
  std::set<uint64_t> ids;
  for (const auto& c : all) {
    ids.insert(c.task_id);
    CHECK(c.command == Command::kResult);
    CHECK(c.body == "job-" + std::to_string(c.task_id - 1) + "/" + std::to_string(c.task_id));
  }
  CHECK(ids.size() == kTasks);
  CHECK(runs.load() == static_cast<int>(kTasks));
}

TEST_CASE("slot pool: a burst of long jobs runs at once, one slot each") {
  constexpr int kSlots = 16;
  std::atomic<int> running{0};
  std::atomic<int> most{0};
  SlotPool pool(kSlots, [&](const JobDispatch&, uint64_t, std::stop_token) {
    const int now = ++running;
    int seen = most.load();
    while (now > seen && !most.compare_exchange_weak(seen, now)) {
    }
    // Long: until every job of the burst is running (or a bound, so a failure cannot hang).
    const auto until = std::chrono::steady_clock::now() + 3s;
    while (most.load() < kSlots && std::chrono::steady_clock::now() < until) {
      std::this_thread::sleep_for(1ms);
    }
    --running;
    return std::make_pair(Command::kResult, std::string());
  });
  const auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < kSlots; ++i) pool.submit(i + 1, JobDispatch{}, std::stop_source());
  std::vector<SlotPool::Completion> all;
  collect(pool, all, kSlots, 10s);
  CHECK(all.size() == kSlots);
  CHECK(most.load() == kSlots);
  CHECK(std::chrono::steady_clock::now() - t0 < 2s);
}

TEST_CASE("slot pool: the destructor stops running jobs") {
  std::atomic<int> started{0};
  std::atomic<int> stopped{0};
  {
    SlotPool pool(4, [&](const JobDispatch&, uint64_t, std::stop_token st) {
      ++started;
      while (!st.stop_requested()) std::this_thread::sleep_for(1ms);
      ++stopped;
      return std::make_pair(Command::kError, std::string());
    });
    for (int i = 0; i < 4; ++i) pool.submit(i + 1, JobDispatch{}, std::stop_source());
    const auto until = std::chrono::steady_clock::now() + 5s;
    while (started.load() < 4 && std::chrono::steady_clock::now() < until) {
      (void)pool.kick(SlotPool::Clock::now());
      std::this_thread::sleep_for(1ms);
    }
    CHECK(started.load() == 4);
  }
  CHECK(stopped.load() == 4);
}

TEST_CASE("slot pool: an answer given early comes back before its slot is free") {
  std::atomic<bool> answer_seen{false};
  SlotPool* self = nullptr;
  SlotPool pool(1,
                [&](const JobDispatch&, uint64_t task_id,
                    std::stop_token) -> std::optional<std::pair<Command, std::string>> {
                  self->answer(task_id, Command::kResult, "early");
                  // The "teardown": the slot stays busy until the loop has taken the answer (or a
                  // bound, so a failure cannot hang).
                  const auto until = std::chrono::steady_clock::now() + 5s;
                  while (!answer_seen.load() && std::chrono::steady_clock::now() < until) {
                    std::this_thread::sleep_for(1ms);
                  }
                  return std::nullopt;
                });
  self = &pool;
  pool.submit(7, JobDispatch{}, std::stop_source());
  std::vector<SlotPool::Completion> all;
  collect(pool, all, 1, 10s);
  REQUIRE(all.size() == 1);
  CHECK(all[0].task_id == 7);
  CHECK(all[0].has_answer);
  CHECK_FALSE(all[0].slot_free);
  CHECK(all[0].body == "early");
  answer_seen.store(true);
  collect(pool, all, 2, 10s);
  REQUIRE(all.size() == 2);
  CHECK(all[1].task_id == 7);
  CHECK_FALSE(all[1].has_answer);
  CHECK(all[1].slot_free);
}
