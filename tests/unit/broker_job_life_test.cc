// A job's life in the broker (broker/src/job_life.h), driven directly: no sockets, no store.
#include <doctest/doctest.h>

#include "job_life.h"
#include "paddock/schemas/codec.h"

using namespace paddock::broker;
using std::chrono::milliseconds;
using Out = JobLife::Outcome::Kind;
using Loss = JobLife::Loss::Kind;

namespace {

QueuedRequest req(std::string id, uint32_t timeout_ms = 1000, uint64_t deadline_ms = 0) {
  paddock::schemas::JobRequest r;
  r.job_id = std::move(id);
  r.argv = {"true"};
  r.timeout_ms = timeout_ms;
  r.deadline_ms = deadline_ms;
  return QueuedRequest::of(r, paddock::schemas::encode(r));
}

// The job that goes next, now running on `worker` (as the loop's dispatch does); nullptr if none.
Job* start_next(JobLife& life, const std::string& worker) {
  const Job* next = life.jobs().peek({});
  return next == nullptr ? nullptr : &life.start(*next, worker);
}

LifePolicy policy(uint32_t max_attempts = 3) {
  LifePolicy p;
  p.max_attempts = max_attempts;
  p.retry_base_ms = 100;
  p.retry_cap_ms = 1000;
  p.overdue_margin_ms = 500;
  return p;
}

// Queues job `id` and starts it on worker `w` (as the loop's dispatch does).
Job& started(JobLife& life, const std::string& id, const std::string& w, Clock::time_point now,
             uint32_t timeout_ms = 1000) {
  life.jobs().push(req(id, timeout_ms), "client", now);
  Job* job = start_next(life, w);
  REQUIRE(job != nullptr);
  life.sent(*job, now);
  return *job;
}

}  // namespace

TEST_CASE(
    "job life: dispatch takes the best queued job, and an unsent one goes back with the same "
    "attempt") {
  JobLife life(policy());
  const auto now = Clock::now();
  life.jobs().push(req("a"), "client", now);
  Job* job = start_next(life, "w1");
  REQUIRE(job != nullptr);
  CHECK(job->state == Job::State::kRunning);
  CHECK(job->worker == "w1");
  CHECK(start_next(life, "w1") == nullptr);  // nothing else queued
  life.unsent(*job);
  CHECK(job->state == Job::State::kQueued);
  CHECK(job->attempt == 1);
  CHECK(life.jobs().queued() == 1);
}

TEST_CASE("job life: a job whose deadline passed is expired at dispatch") {
  JobLife life(policy());
  life.jobs().push(req("late", 1000, /*deadline_ms=*/5'000), "client", Clock::now());
  Job* job = start_next(life, "w1");
  REQUIRE(job != nullptr);
  CHECK(JobLife::expired(*job, 5'000));
  CHECK_FALSE(JobLife::expired(*job, 4'999));
  CHECK(life.finish("late").has_value());
  CHECK(life.jobs().size() == 0);
}

TEST_CASE("job life: the current assignment's outcome answers the job and removes it") {
  JobLife life(policy());
  started(life, "a", "w1", Clock::now());
  auto o = life.outcome("w1", "a", 1, /*retryable=*/false, 1.0);
  CHECK(o.kind == Out::kAnswer);
  REQUIRE(o.job.has_value());
  CHECK(o.job->request.job_id == "a");
  CHECK(o.job->routes.submitter() == "client");
  CHECK(life.jobs().find("a") == nullptr);
  // A second outcome of it finds nothing: each job is answered once.
  CHECK(life.outcome("w1", "a", 1, false, 1.0).kind == Out::kNotHeld);
}

TEST_CASE(
    "job life: an outcome of another attempt or another worker is stale and changes nothing") {
  JobLife life(policy());
  Job& job = started(life, "a", "w1", Clock::now());
  auto wrong_attempt = life.outcome("w1", "a", 2, false, 1.0);
  CHECK(wrong_attempt.kind == Out::kStale);
  CHECK(wrong_attempt.held == &job);
  CHECK(life.outcome("w2", "a", 1, false, 1.0).kind == Out::kStale);
  CHECK(job.state == Job::State::kRunning);
  CHECK(job.attempt == 1);
  CHECK(life.jobs().size() == 1);
}

TEST_CASE(
    "job life: a recovered job's attempt from before the restart answers it and its rerun is "
    "dropped") {
  JobLife life(policy());
  Job& job = started(life, "a", "w-new", Clock::now());
  job.recovered = true;
  job.recovered_attempt = 1;
  job.attempt = 2;  // sent again as attempt 2
  auto o = life.outcome("w-old", "a", 1, false, 1.0);
  CHECK(o.kind == Out::kRecovered);
  CHECK(o.rerun == "w-new");
  REQUIRE(o.job.has_value());
  CHECK(life.jobs().find("a") == nullptr);
}

TEST_CASE("job life: a retryable failure waits its backoff, then goes back with the next attempt") {
  JobLife life(policy(3));
  Job& job = started(life, "a", "w1", Clock::now());
  auto o = life.outcome("w1", "a", 1, /*retryable=*/true, /*jitter=*/1.0);
  CHECK(o.kind == Out::kRetry);
  CHECK(o.delay == milliseconds(100));  // base << 0
  CHECK(job.state == Job::State::kWaiting);
  CHECK(job.attempt == 2);
  CHECK(job.worker.empty());
  CHECK(life.jobs().queued() == 0);
  CHECK(life.release("a"));
  CHECK(job.state == Job::State::kQueued);
  CHECK_FALSE(life.release("a"));  // no longer waiting

  // Attempt 2 fails retryably too: twice the backoff (half of it with the lowest jitter).
  REQUIRE(start_next(life, "w1") == &job);
  o = life.outcome("w1", "a", 2, true, 0.5);
  CHECK(o.kind == Out::kRetry);
  CHECK(o.delay == milliseconds(100));  // (100 << 1) * 0.5
  CHECK(life.release("a"));
  // Attempt 3 is the last: its retryable failure is the answer.
  REQUIRE(start_next(life, "w1") == &job);
  o = life.outcome("w1", "a", 3, true, 1.0);
  CHECK(o.kind == Out::kAnswer);
}

TEST_CASE("job life: the retry backoff doubles per attempt up to its cap, scaled by the jitter") {
  CHECK(retry_backoff(1, 100, 1000, 1.0) == milliseconds(100));
  CHECK(retry_backoff(2, 100, 1000, 1.0) == milliseconds(200));
  CHECK(retry_backoff(4, 100, 1000, 1.0) == milliseconds(800));
  CHECK(retry_backoff(5, 100, 1000, 1.0) == milliseconds(1000));  // capped
  CHECK(retry_backoff(60, 100, 1000, 0.5) == milliseconds(500));  // shift bounded, capped
}

TEST_CASE("job life: a cancelled job's retryable failure is not retried") {
  JobLife life(policy(3));
  started(life, "a", "w1", Clock::now());
  std::optional<Job> ended;
  CHECK(life.cancel("a", "canceller", ended) == JobLife::Cancel::kAskWorker);
  CHECK_FALSE(ended.has_value());
  auto o = life.outcome("w1", "a", 1, true, 1.0);
  CHECK(o.kind == Out::kAnswer);
  REQUIRE(o.job.has_value());
  CHECK(o.job->routes.all() == std::vector<std::string>{"client", "canceller"});
}

TEST_CASE("job life: cancel ends a job not running, and asks a running one's worker once") {
  JobLife life(policy());
  const auto now = Clock::now();
  life.jobs().push(req("queued"), "client", now);
  std::optional<Job> ended;
  CHECK(life.cancel("queued", "canceller", ended) == JobLife::Cancel::kEnded);
  REQUIRE(ended.has_value());
  CHECK(ended->routes.all() == std::vector<std::string>{"client", "canceller"});
  CHECK(life.jobs().find("queued") == nullptr);

  Job& running = started(life, "running", "w1", now);
  ended.reset();
  CHECK(life.cancel("running", "c2", ended) == JobLife::Cancel::kAskWorker);
  CHECK(running.cancel_requested);
  CHECK(life.cancel("running", "c3", ended) == JobLife::Cancel::kAsked);
  CHECK_FALSE(ended.has_value());
  CHECK(life.cancel("nothing", "c", ended) == JobLife::Cancel::kUnknown);

  // A job waiting out its backoff is not running: cancel ends it.
  Job& waiting = started(life, "waiting", "w1", now);
  REQUIRE(life.outcome("w1", "waiting", 1, true, 1.0).kind == Out::kRetry);
  CHECK(waiting.state == Job::State::kWaiting);
  CHECK(life.cancel("waiting", "c", ended) == JobLife::Cancel::kEnded);
  CHECK_FALSE(life.release("waiting"));  // its timer finds nothing to release
}

TEST_CASE(
    "job life: a lost job goes back with its next attempt, ends WorkerLost on its last, Cancelled "
    "if asked") {
  JobLife life(policy(2));
  const auto now = Clock::now();
  Job& job = started(life, "a", "w1", now);
  auto l = life.lost("a");
  CHECK(l.kind == Loss::kRequeued);
  CHECK(l.held == &job);
  CHECK(job.attempt == 2);
  CHECK(job.state == Job::State::kQueued);
  REQUIRE(start_next(life, "w2") == &job);
  l = life.lost("a");
  CHECK(l.kind == Loss::kExhausted);
  REQUIRE(l.job.has_value());
  CHECK(l.job->attempt == 2);
  CHECK(life.jobs().find("a") == nullptr);

  started(life, "b", "w1", now);
  std::optional<Job> ended;
  REQUIRE(life.cancel("b", "", ended) == JobLife::Cancel::kAskWorker);
  CHECK(life.lost("b").kind == Loss::kCancelled);
}

TEST_CASE(
    "job life: overdue names running jobs past their timeout plus the margin, from their send") {
  JobLife life(policy());
  WorkerRegistry workers;
  const auto t0 = Clock::now();
  WorkerState& w = workers.add("w1", "worker-1", 4, t0, {});
  started(life, "short", "w1", t0, /*timeout_ms=*/1000);
  started(life, "long", "w1", t0, /*timeout_ms=*/60'000);
  w.jobs = {{"short", {}}, {"long", {}}};
  CHECK(life.overdue(workers, t0 + milliseconds(1500)).empty());  // timeout + margin, not past
  auto overdue = life.overdue(workers, t0 + milliseconds(1501));
  REQUIRE(overdue.size() == 1);
  CHECK(overdue[0] == std::pair<std::string, std::string>{"w1", "short"});
  // Taken back: it goes out again with its next attempt, and the late outcome of the first is
  // stale.
  CHECK(life.lost("short").kind == Loss::kRequeued);
  CHECK(life.outcome("w1", "short", 1, false, 1.0).kind == Out::kStale);
}
