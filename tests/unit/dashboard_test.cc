// The broker's dashboard (broker/src/dashboard/): the latency buckets and time series, the
// recorder's bounded ring and snapshots, the access rules, and the JSON it renders.
#include <doctest/doctest.h>
#include <sys/stat.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "dashboard/access.h"
#include "dashboard/api.h"
#include "dashboard/recorder.h"
#include "dashboard/time_series.h"
#include "paddock/schemas/codec.h"

using namespace paddock::broker;
using namespace paddock::broker::dashboard;
namespace sc = paddock::schemas;

namespace {

constexpr uint64_t kNowUnixMs = 1'700'000'000'000;

Job job(const std::string& id, std::vector<std::string> argv = {"true"}, int32_t priority = 0) {
  sc::JobRequest r;
  r.job_id = id;
  r.argv = std::move(argv);
  r.priority = priority;
  Job j;
  j.request = QueuedRequest::of(r, sc::encode(r));
  j.accepted_at = Clock::now();
  return j;
}

// A runtime variant's ERROR, as a worker sends it (InvalidTransition is code 3).
sc::JobError invalid_transition(const std::string& id, const std::string& message) {
  sc::JobError e;
  e.job_id = id;
  e.code = 3;
  e.variant = "InvalidTransition";
  e.message = message;
  return e;
}

std::shared_ptr<const Snapshot> publish(Recorder& r, const JobQueue& jobs,
                                        const WorkerRegistry& workers, const Stats& stats) {
  Recorder::LoopState state{&jobs, &workers, &stats, 0};
  r.publish(state, Clock::now(), kNowUnixMs);
  return r.box().get();
}

paddock::metrics::HttpRequest request_with(const std::string& header, const std::string& value) {
  paddock::metrics::HttpRequest req;
  req.headers.emplace(header, value);
  return req;
}

}  // namespace

TEST_CASE("dashboard latency buckets: percentiles within 6.25 percent of the exact ones") {
  LatencyBuckets b;
  std::mt19937_64 rng(3);
  std::lognormal_distribution<double> dist(8.0, 2.0);  // microseconds, over several decades
  std::vector<uint64_t> samples;
  for (int i = 0; i < 20'000; ++i) samples.push_back(1 + static_cast<uint64_t>(dist(rng)));
  for (auto v : samples) b.record(v);
  std::sort(samples.begin(), samples.end());
  CHECK(b.count() == samples.size());
  for (double q : {1.0, 50.0, 90.0, 99.0, 100.0}) {
    const auto rank =
        static_cast<size_t>(std::ceil(q / 100.0 * static_cast<double>(samples.size())));
    const double exact = static_cast<double>(samples[rank - 1]);
    CAPTURE(q);
    CHECK(std::abs(static_cast<double>(b.percentile(q)) - exact) <= 0.0625 * exact + 0.5);
  }
}

TEST_CASE("dashboard latency buckets: exact below 16 us and empty is zero") {
  LatencyBuckets b;
  CHECK(b.percentile(50) == 0);
  for (uint64_t v : {3, 5, 7, 9, 11}) b.record(v);
  CHECK(b.percentile(50) == 7);
  CHECK(b.percentile(100) == 11);
  b.record(uint64_t{1} << 40);  // beyond the top bucket: counted there
  CHECK(b.count() == 6);
  CHECK(b.percentile(100) > (uint64_t{1} << 35));
}

TEST_CASE("dashboard time series: a point per second over the window and old seconds drop out") {
  TimeSeries s;
  const uint64_t t = kNowUnixMs / 1000;
  s.count(t - 2, 5, 3, 1);
  s.latency(t - 2, 1000);
  s.count(t, 2, 0, 0);
  s.count(t - TimeSeries::kSeconds, 100, 100, 100);  // same slot as t, and older: ignored
  auto points = s.points(t);
  REQUIRE(points.size() == TimeSeries::kSeconds);
  CHECK(points.back().unix_s == t);
  CHECK(points.back().accepted == 2);
  const auto& p = points[points.size() - 3];
  CHECK(p.unix_s == t - 2);
  CHECK(p.accepted == 5);
  CHECK(p.completed == 3);
  CHECK(p.failed == 1);
  CHECK(p.p50_us >= 937);  // the middle of its bucket: within 6.25%
  CHECK(p.p50_us <= 1063);
  CHECK(s.window(t).count() == 1);
  // Later, the second t - 2 has left the window.
  CHECK(s.window(t - 2 + TimeSeries::kSeconds).count() == 0);
  CHECK(s.points(t + TimeSeries::kSeconds)[TimeSeries::kSeconds - 3].accepted == 0);
}

TEST_CASE("dashboard recorder: the recent jobs are a ring of the newest") {
  Recorder r(3, false, kNowUnixMs);
  for (int i = 0; i < 10; ++i) {
    auto j = job("j" + std::to_string(i));
    sc::JobResult res;
    res.job_id = j.request.job_id;
    r.answered(j, &res, nullptr, Clock::now(), kNowUnixMs);
  }
  CHECK(r.recent_size() == 3);
  JobQueue jobs;
  WorkerRegistry workers;
  Stats stats;
  auto s = publish(r, jobs, workers, stats);
  REQUIRE(s->recent.size() == 3);
  CHECK(s->recent_capacity == 3);
  CHECK(s->recent[0]->job_id == "j9");
  CHECK(s->recent[2]->job_id == "j7");
  CHECK(s->find("j9") != nullptr);
  CHECK(s->find("j0") == nullptr);
}

TEST_CASE("dashboard recorder: attempts name their workers and outcomes and are capped") {
  Recorder r(10, false, kNowUnixMs);
  auto j = job("retried");
  r.dispatched(j, "w1", kNowUnixMs);
  r.attempt_ended(j, "retry", "Jailer (11)");
  j.attempt = 2;
  r.dispatched(j, "w2", kNowUnixMs + 5);
  auto e = invalid_transition("retried", "bad state");
  r.answered(j, nullptr, &e, Clock::now(), kNowUnixMs + 9);
  JobQueue jobs;
  WorkerRegistry workers;
  Stats stats;
  auto s = publish(r, jobs, workers, stats);
  auto rec = s->find("retried");
  REQUIRE(rec);
  REQUIRE(rec->attempts.size() == 2);
  CHECK(rec->attempts[0].worker_id == "w1");
  CHECK(rec->attempts[0].outcome == "retry");
  CHECK(rec->attempts[1].worker_id == "w2");
  CHECK(rec->attempts[1].outcome == "error");
  CHECK(rec->attempts[1].detail == "InvalidTransition (" + std::to_string(e.code) + ")");
  CHECK(rec->status == JobRecord::Status::kError);
  REQUIRE(s->errors.size() == 1);
  CHECK(s->errors[0].variant == "InvalidTransition");
  CHECK(s->errors[0].count == 1);

  auto many = job("many");
  for (uint32_t i = 1; i <= 40; ++i) {
    many.attempt = i;
    r.dispatched(many, "w", kNowUnixMs);
    r.attempt_ended(many, "worker lost");
  }
  CHECK(many.attempts.size() == Job::kMaxAttemptRecords);
  CHECK(many.attempts.back().attempt == 40);
}

TEST_CASE("dashboard recorder: a snapshot shows the queue and the workers and their running jobs") {
  Recorder r(10, true, kNowUnixMs);
  JobQueue jobs;
  WorkerRegistry workers;
  jobs.push(job("queued").request, "c", Clock::now());
  jobs.push(job("high", {"true"}, 7).request, "c", Clock::now());
  auto& w = workers.add("route-1", "w1", 4, Clock::now(), {"default", "python"});
  w.host = "127.0.0.1";
  w.backend = "memory";
  jobs.push(job("on-w1").request, "c", Clock::now());
  const Job* next = jobs.peek({});
  REQUIRE(next != nullptr);
  Job* running = &jobs.start(*next, "route-1");
  // Priority first: "high" was popped; it now runs on w1.
  CHECK(running->request.job_id == "high");
  w.jobs.emplace("high", Footprint{});
  --w.credits;
  Stats stats;
  stats.accepted = 3;
  Recorder::LoopState state{&jobs, &workers, &stats, 1};
  r.publish(state, Clock::now(), kNowUnixMs);
  auto s = r.box().get();
  CHECK(s->journal);
  CHECK(s->totals.accepted == 3);
  CHECK(s->held == 3);
  CHECK(s->queued == 2);
  CHECK(s->running == 1);
  CHECK(s->queued_by_priority.at(0) == 2);
  REQUIRE(s->workers.size() == 1);
  CHECK(s->workers[0].worker_id == "w1");
  CHECK(s->workers[0].busy == 1);
  CHECK(s->workers[0].free == 3);
  CHECK(s->workers[0].images == std::vector<std::string>{"default", "python"});
  REQUIRE(s->running_jobs.size() == 1);
  CHECK(s->running_jobs[0]->job_id == "high");
  CHECK(s->series.back().accepted == 3);
  // By tenant (these ids have none: the tenant ""), and a tenant's job once answered.
  jobs.push(job("bob/b-1").request, "c", Clock::now());
  auto answered = jobs.remove("high");
  sc::JobResult result;
  result.job_id = "high";
  r.answered(*answered, &result, nullptr, Clock::now(), kNowUnixMs);
  r.publish(state, Clock::now(), kNowUnixMs);
  s = r.box().get();
  REQUIRE(s->tenants.size() == 2);
  CHECK(s->tenants[0].tenant.empty());
  CHECK(s->tenants[0].queued == 2);
  CHECK(s->tenants[0].running == 0);
  CHECK(s->tenants[0].completed == 1);
  CHECK(s->tenants[1].tenant == "bob");
  CHECK(s->tenants[1].queued == 1);
  CHECK(s->tenants[1].completed == 0);
}

TEST_CASE("dashboard access: loopback without a token is open and elsewhere it is not served") {
  Access open("", true);
  CHECK(open.served());
  CHECK(open.check({}) == Access::Verdict::kAllowed);
  Access refused("", false);
  CHECK_FALSE(refused.served());
  CHECK(refused.check(request_with("authorization", "Bearer anything")) ==
        Access::Verdict::kNotServed);
}

TEST_CASE("dashboard access: with a token only a matching bearer or cookie is let in") {
  const std::string token = "0123456789abcdef-token";
  for (bool loopback : {true, false}) {
    Access a(token, loopback);
    CHECK(a.served());
    CHECK(a.check({}) == Access::Verdict::kNeedsToken);
    CHECK(a.check(request_with("authorization", "Bearer " + token)) == Access::Verdict::kAllowed);
    CHECK(a.check(request_with("authorization", "Bearer " + token + "x")) ==
          Access::Verdict::kNeedsToken);
    CHECK(a.check(request_with("authorization", "Basic " + token)) == Access::Verdict::kNeedsToken);
    CHECK(a.check(request_with("cookie", "a=b; paddock_dashboard=" + token + "; c=d")) ==
          Access::Verdict::kAllowed);
    CHECK(a.check(request_with("cookie", "paddock_dashboard=wrong")) ==
          Access::Verdict::kNeedsToken);
  }
}

TEST_CASE("dashboard access: constant time compare matches exactly") {
  CHECK(constant_time_equal("secret-token", "secret-token"));
  CHECK_FALSE(constant_time_equal("secret-tokem", "secret-token"));
  CHECK_FALSE(constant_time_equal("secret", "secret-token"));
  CHECK_FALSE(constant_time_equal("secret-token-longer", "secret-token"));
  CHECK_FALSE(constant_time_equal("", ""));
}

TEST_CASE("dashboard access: a token file must be private and long enough") {
  const std::string path = "/tmp/paddock-dashboard-token-" + std::to_string(::getpid());
  auto write = [&](const std::string& text, mode_t mode) {
    std::ofstream(path, std::ios::trunc) << text;
    ::chmod(path.c_str(), mode);
  };
  write("  0123456789abcdefXYZ  \nsecond line\n", 0600);
  // The Failure's message, or "" when the token was read.
  auto refusal = [&] {
    auto token = read_token_file(path);
    return token ? std::string() : token.error().message;
  };
  REQUIRE(read_token_file(path));
  CHECK(*read_token_file(path) == "0123456789abcdefXYZ");
  write("0123456789abcdefXYZ\n", 0640);
  CHECK(refusal().find("chmod 600") != std::string::npos);
  write("short\n", 0600);
  CHECK(refusal().find("at least 16") != std::string::npos);
  write("0123456789abcdef;injected\n", 0600);
  CHECK(refusal().find("printable") != std::string::npos);
  ::unlink(path.c_str());
  CHECK(refusal().find(path) != std::string::npos);
}

TEST_CASE("dashboard json: overview counts errors by variant and code and the queue by priority") {
  Snapshot s;
  s.totals.accepted = 40;
  s.totals.results = 30;
  s.totals.errors = 10;
  s.queued = 5;
  s.queued_by_priority = {{0, 3}, {5, 2}};
  s.tenants = {{"alice", 4, 1, 20, 2}, {"bob", 1, 0, 10, 8}};
  s.errors = {{3, "InvalidTransition", 10}, {ErrorCount::kOther, "other", 2}};
  s.series.resize(TimeSeries::kSeconds);
  s.series[TimeSeries::kSeconds - 2].completed = 20;  // the last complete second
  s.series[TimeSeries::kSeconds - 1].completed = 99;  // the current one: not in the rate
  auto j = overview_json(s);
  CHECK(j["api_version"] == 1);
  CHECK(j["totals"]["accepted"] == 40);
  CHECK(j["totals"]["completed"] == 30);
  CHECK(j["totals"]["failed"] == 10);
  CHECK(j["queue"]["by_priority"][0]["priority"] == 5);  // higher first
  CHECK(j["queue"]["by_priority"][1]["queued"] == 3);
  REQUIRE(j["queue"]["by_tenant"].size() == 2);
  CHECK(j["queue"]["by_tenant"][0]["tenant"] == "alice");
  CHECK(j["queue"]["by_tenant"][0]["running"] == 1);
  CHECK(j["queue"]["by_tenant"][1]["failed"] == 8);
  CHECK(j["errors"][0]["variant"] == "InvalidTransition");
  CHECK(j["errors"][0]["code"] == 3);
  CHECK(j["errors"][1]["code"] == "other");
  CHECK(j["rates"]["completed_per_s"].get<double>() == doctest::Approx(2.0));
  CHECK(j["series"]["points"].size() == TimeSeries::kSeconds);
}

TEST_CASE(
    "dashboard json: a failed job shows its variant code and message and a result its output") {
  JobRecord failed;
  failed.job_id = "bad";
  failed.status = JobRecord::Status::kError;
  failed.set_error(invalid_transition("bad", "no such transition"));
  auto j = job_json(failed, "recent");
  CHECK(j["status"] == "error");
  CHECK(j["variant"] == "InvalidTransition");
  CHECK(j["error"]["code"] == 3);
  CHECK(j["error"]["message"] == "no such transition");
  CHECK(j["result"].is_null());

  JobRecord ok;
  ok.job_id = "ok";
  ok.status = JobRecord::Status::kOk;
  sc::JobResult r;
  r.stdout_data = std::string(10'000, 'x');
  r.warm = true;
  ok.set_result(r);
  auto k = job_json(ok, "recent");
  CHECK(k["exit_code"] == 0);
  CHECK(k["warm"] == true);
  CHECK(k["result"]["stdout_bytes"] == 10'000);
  CHECK(k["result"]["stdout_head"].get<std::string>().size() == JobRecord::kOutputHead);
}

TEST_CASE("dashboard json: a request shows env names and not their values") {
  sc::JobRequest q;
  q.job_id = "j";
  q.argv = {"printenv", "SECRET"};
  q.env = {{"SECRET", "hunter2"}};
  q.stdin_data = "private input";
  JobRecord r;
  r.request = RequestSummary::of(q);
  const std::string text = job_json(r, "running").dump();
  CHECK(text.find("SECRET") != std::string::npos);
  CHECK(text.find("hunter2") == std::string::npos);
  CHECK(text.find("private input") == std::string::npos);
  CHECK(job_json(r, "running")["request"]["stdin_bytes"] == 13);
}
