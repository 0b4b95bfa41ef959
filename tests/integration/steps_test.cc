// Jobs with steps (PROTOCOL.md, "Steps"), end to end through a real broker and worker over
// loopback TCP, on the in-memory TEST DOUBLE backend (it interprets argv as a script: nothing is
// executed). What is checked here is the worker's and the wire's part: order, the job's env under
// each step's, files that persist between steps in one VM, the job's timeout over all steps,
// stop_on_failure, cancel. tests/vm has the same on QEMU with a real program.
#include <doctest/doctest.h>

#include "dashboard_probe.h"
#include "harness.h"

using namespace paddock;
using namespace paddock::testing;

namespace {

schemas::Step step(std::vector<std::string> argv) {
  schemas::Step s;
  s.argv = std::move(argv);
  return s;
}

schemas::JobRequest with_steps(std::string id, std::vector<schemas::Step> steps) {
  schemas::JobRequest r;
  r.job_id = std::move(id);
  for (auto& s : steps) {
    s.timeout_ms = r.timeout_ms;
    s.output_cap = r.output_cap;
  }
  r.steps = std::move(steps);
  return r;
}

// The one final answer of `id` (a copy: `a` is often a temporary).
client::Event only(const Answers& a, const std::string& id) {
  REQUIRE(a.finals.count(id) == 1);
  REQUIRE(a.finals.at(id).size() == 1);
  return a.finals.at(id).front();
}

}  // namespace

TEST_CASE(
    "steps: run in order in one VM, each with the job's env under its own, and the job's files "
    "there for every step") {
  TempDir dir;
  auto broker = start_broker(dir);
  auto worker = start_worker(dir, broker.worker_endpoint, "w1", 2);
  client::Client c(broker.client_endpoint);

  auto j =
      with_steps("s-env", {step({"env", "A"}), step({"env", "B"}), step({"cat"}), step({"true"})});
  j.env = {{"A", "job"}, {"B", "job"}};
  j.steps[1].env = {{"B", "step"}};
  j.steps[2].stdin_data = "fed to step 3";
  j.files = {schemas::FileIn{"notes.txt", 0644, "written before step 1"}};
  j.steps[3].files_out = {"notes.txt"};
  c.submit(j);
  const auto ev = only(collect(c, {"s-env"}, 30s), "s-env");
  REQUIRE(ev.kind == client::Event::Kind::kResult);
  const auto& r = ev.result;
  REQUIRE(r.steps.size() == 4);
  CHECK(r.steps[0].stdout_data == "job\n");
  CHECK(r.steps[1].stdout_data == "step\n");
  CHECK(r.steps[2].stdout_data == "fed to step 3");
  REQUIRE(r.steps[3].files.size() == 1);
  CHECK(r.steps[3].files[0].data == "written before step 1");
  // The job's own outcome: the last step's status, its output in the steps only.
  CHECK(r.exit_code == 0);
  CHECK(r.stdout_data.empty());
  CHECK(r.files.empty());
}

TEST_CASE(
    "steps: after a failed step the rest are not run unless stop_on_failure is false, and the "
    "job's exit status is the last step run's") {
  TempDir dir;
  auto broker = start_broker(dir);
  auto worker = start_worker(dir, broker.worker_endpoint, "w1", 2);
  client::Client c(broker.client_endpoint);

  auto stop = with_steps("s-stop", {step({"echo", "one"}), step({"exit", "4"}), step({"echo"})});
  auto go_on = stop;
  go_on.job_id = "s-go-on";
  go_on.stop_on_failure = false;
  c.submit(std::vector<schemas::JobRequest>{stop, go_on});
  const auto answers = collect(c, {"s-stop", "s-go-on"}, 30s);
  REQUIRE(answers.all_exactly_once({"s-stop", "s-go-on"}));
  const auto a = only(answers, "s-stop");
  REQUIRE(a.kind == client::Event::Kind::kResult);
  REQUIRE(a.result.steps.size() == 2);
  CHECK(a.result.steps[1].exit_code == 4);
  CHECK(a.result.exit_code == 4);
  const auto b = only(answers, "s-go-on");
  REQUIRE(b.kind == client::Event::Kind::kResult);
  REQUIRE(b.result.steps.size() == 3);
  CHECK(b.result.steps[2].exit_code == 0);
  CHECK(b.result.exit_code == 0);
}

TEST_CASE(
    "steps: the job's timeout bounds all steps together: the step running when it runs out is "
    "timed out and no step runs after it") {
  TempDir dir;
  auto broker = start_broker(dir);
  auto worker = start_worker(dir, broker.worker_endpoint, "w1", 2);
  client::Client c(broker.client_endpoint);

  // Each step alone is within its own timeout (the job's 1500 ms); together they are not.
  auto j = with_steps("s-time", {step({"sleep", "600"}), step({"sleep", "600"}),
                                 step({"sleep", "600"}), step({"echo", "late"})});
  j.timeout_ms = 1500;
  for (auto& s : j.steps) s.timeout_ms = 1500;
  j.stop_on_failure = false;  // even so: no time is left
  c.submit(j);
  const auto ev = only(collect(c, {"s-time"}, 30s), "s-time");
  REQUIRE(ev.kind == client::Event::Kind::kResult);
  const auto& r = ev.result;
  REQUIRE(r.steps.size() == 3);
  CHECK_FALSE(r.steps[0].timed_out);
  CHECK_FALSE(r.steps[1].timed_out);
  CHECK(r.steps[2].timed_out);
  CHECK(r.steps[2].exit_code == 137);
  CHECK(r.timed_out);
  CHECK(r.exit_code == 137);
}

TEST_CASE("steps: a CANCEL stops the step running and the job ends Cancelled") {
  TempDir dir;
  auto broker = start_broker(dir, {"--metrics-address", "127.0.0.1:0"});
  auto worker = start_worker(dir, broker.worker_endpoint, "w1", 2);
  client::Client c(broker.client_endpoint);

  auto j = with_steps("s-cancel", {step({"true"}), step({"sleep", "600000"}), step({"true"})});
  j.timeout_ms = 600'000;
  for (auto& s : j.steps) s.timeout_ms = 600'000;
  c.submit(j);
  REQUIRE(wait_until_running(broker.metrics_address, "s-cancel"));
  c.cancel("s-cancel");
  const auto ev = only(collect(c, {"s-cancel"}, 30s), "s-cancel");
  REQUIRE(ev.kind == client::Event::Kind::kError);
  CHECK(ev.error.variant == "Cancelled");
  CHECK(ev.error.message == "cancelled while running");
}
