// A fault under a real worker (issue 7): the QEMU of a running job is SIGKILLed. The job ends with
// an ERROR that names what happened (or, if the VM was still booting, a retried boot runs it), and
// the worker stays healthy: the next job runs.
#include <doctest/doctest.h>
#include <signal.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <set>
#include <thread>

#include "../integration/harness.h"
#include "vm_fixture.h"

using namespace paddock;
using namespace paddock::testing;
using namespace std::chrono_literals;
namespace fs = std::filesystem;

namespace {

// The QEMU processes (jailed: the jailers' children) of VMs under `run_dir`.
std::vector<int> qemu_pids_under(const std::string& run_dir) {
  std::vector<int> pids;
  for (const auto& e : fs::directory_iterator("/proc")) {
    const std::string name = e.path().filename();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    try {  // a process may exit while it is read (ESRCH from the read)
      std::ifstream in(e.path() / "cmdline", std::ios::binary);
      std::string cmd((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
      if (cmd.find("paddock-jailer") == std::string::npos || cmd.find(run_dir) == std::string::npos)
        continue;
      std::ifstream children(e.path() / "task" / name / "children");
      for (int pid; children >> pid;) pids.push_back(pid);
    } catch (const std::exception&) {
      continue;
    }
  }
  return pids;
}

// Waits (up to 30 s) for the one QEMU of a 1-slot worker's first job.
std::vector<int> wait_for_qemu(const std::string& run_dir, Process& worker) {
  std::vector<int> pids;
  for (int i = 0; i < 300 && pids.empty(); ++i) {
    std::this_thread::sleep_for(100ms);
    pids = qemu_pids_under(run_dir);
  }
  REQUIRE_MESSAGE(pids.size() == 1, slurp(worker.log() + ".err"));
  return pids;
}

}  // namespace

TEST_CASE(
    "qemu worker: a QEMU killed mid-job ends that job with an ERROR, and the worker runs the next "
    "job") {
  if (!vm_tests_can_run()) return;
  TempDir dir;
  const std::string run_dir = "/run/paddock-test-fault-" + std::to_string(::getpid());
  auto broker = start_broker(dir);
  auto worker =
      start_worker(dir, broker.worker_endpoint, "fault", 1,
                   {"--backend", "qemu", "--image-dir", guest_image_dir(), "--run-dir", run_dir,
                    "--snapshot-dir", run_dir + "-snap", "--warm", "off", "--network", "off"});
  client::Client c(broker.client_endpoint);
  auto victim = job("victim", {"/bin/sh", "-c", "echo started; sleep 40"});
  victim.timeout_ms = 60'000;
  c.submit(std::vector<schemas::JobRequest>{victim});
  // The VM boots (seconds under TCG), then runs the job: kill its QEMU well after boot.
  const std::vector<int> pids = wait_for_qemu(run_dir, *worker);
  std::this_thread::sleep_for(15s);
  REQUIRE(::kill(pids.front(), SIGKILL) == 0);
  auto answers = collect(c, {"victim"}, 90s);
  REQUIRE_MESSAGE(answers.all_exactly_once({"victim"}), slurp(worker->log() + ".err"));
  const auto& ev = answers.finals.at("victim").front();
  if (ev.kind == client::Event::Kind::kError) {
    MESSAGE("the victim's ERROR: " << ev.error.variant << " (" << ev.error.code
                                   << "): " << ev.error.message.substr(0, 200));
    CHECK(ev.error.message.find("killed by signal 9") != std::string::npos);
  } else {
    MESSAGE("the kill came during boot: the retried boot ran the job");
    CHECK(ev.result.stdout_data == "started\n");
  }
  REQUIRE_MESSAGE(worker->running(), slurp(worker->log() + ".err"));
  auto next = job("next", {"echo", "still healthy"});
  next.timeout_ms = 20'000;
  c.submit(std::vector<schemas::JobRequest>{next});
  auto after = collect(c, {"next"}, 120s);
  REQUIRE(after.all_exactly_once({"next"}));
  const auto& n = after.finals.at("next").front();
  REQUIRE_MESSAGE(n.kind == client::Event::Kind::kResult, n.error.message);
  CHECK(n.result.stdout_data == "still healthy\n");
  worker->signal(SIGTERM);
  CHECK(worker->wait_for(30s) == std::optional<int>(0));
  CHECK(nothing_left_in(run_dir));
  CHECK(qemu_pids_under(run_dir).empty());
  fs::remove_all(run_dir);
  fs::remove_all(run_dir + "-snap");
}

TEST_CASE(
    "qemu worker: CANCEL of a running job stops its VM and answers Cancelled, and nothing is "
    "left") {
  if (!vm_tests_can_run()) return;
  TempDir dir;
  const std::string run_dir = "/run/paddock-test-cancel-" + std::to_string(::getpid());
  auto broker = start_broker(dir);
  auto worker =
      start_worker(dir, broker.worker_endpoint, "cancel", 1,
                   {"--backend", "qemu", "--image-dir", guest_image_dir(), "--run-dir", run_dir,
                    "--snapshot-dir", run_dir + "-snap", "--warm", "off", "--network", "off"});
  client::Client c(broker.client_endpoint);
  auto long_job = job("long", {"/bin/sh", "-c", "sleep 120"});
  long_job.timeout_ms = 180'000;
  c.submit(std::vector<schemas::JobRequest>{long_job});
  // Its VM boots (seconds under TCG) and the job starts: cancel it well after boot.
  (void)wait_for_qemu(run_dir, *worker);
  std::this_thread::sleep_for(12s);
  const auto t0 = std::chrono::steady_clock::now();
  c.cancel("long");
  auto answers = collect(c, {"long"}, 60s);
  const auto took = std::chrono::steady_clock::now() - t0;
  REQUIRE_MESSAGE(answers.all_exactly_once({"long"}), slurp(worker->log() + ".err"));
  const auto& ev = answers.finals.at("long").front();
  REQUIRE(ev.kind == client::Event::Kind::kError);
  CHECK(ev.error.code == 101);
  CHECK(ev.error.variant == "Cancelled");
  MESSAGE(
      "cancel to answer: " << std::chrono::duration_cast<std::chrono::milliseconds>(took).count()
                           << " ms");
  // The VM is gone at once, not when the job's sleep would have ended.
  for (int i = 0; i < 100 && !qemu_pids_under(run_dir).empty(); ++i) {
    std::this_thread::sleep_for(100ms);
  }
  CHECK(qemu_pids_under(run_dir).empty());
  worker->signal(SIGTERM);
  CHECK(worker->wait_for(30s) == std::optional<int>(0));
  CHECK(nothing_left_in(run_dir));
  fs::remove_all(run_dir);
  fs::remove_all(run_dir + "-snap");
}

TEST_CASE(
    "qemu worker: the broker SIGKILLed and restarted on its journal mid-batch, every job is "
    "answered once") {
  if (!vm_tests_can_run()) return;
  TempDir dir;
  const std::string run_dir = "/run/paddock-test-restart-" + std::to_string(::getpid());
  const std::vector<std::string> broker_args = {"--journal", dir.path() + "/journal.db",
                                                "--heartbeat-ms", "100"};
  auto broker = start_broker(dir, broker_args);
  const std::string client_ep = broker.client_endpoint, worker_ep = broker.worker_endpoint;
  auto worker = start_worker(
      dir, worker_ep, "restart", 2,
      {"--backend", "qemu", "--image-dir", guest_image_dir(), "--run-dir", run_dir,
       "--snapshot-dir", run_dir + "-snap", "--network", "off", "--heartbeat-ms", "100"});
  std::vector<schemas::JobRequest> jobs;
  std::vector<std::string> ids;
  for (int i = 0; i < 6; ++i) {
    ids.push_back("rs-" + std::to_string(i));
    jobs.push_back(job(ids.back(), {"/bin/sh", "-c", "sleep 1; echo " + ids.back()}));
    jobs.back().timeout_ms = 60'000;
  }
  std::map<std::string, std::vector<client::Event>> finals;
  auto take = [&](client::Client& c, std::chrono::seconds within, size_t until) {
    const auto deadline = std::chrono::steady_clock::now() + within;
    while (finals.size() < until && std::chrono::steady_clock::now() < deadline) {
      auto ev = c.next(100ms);
      if (!ev) continue;
      if (ev->kind == client::Event::Kind::kResult) finals[ev->result.job_id].push_back(*ev);
      if (ev->kind == client::Event::Kind::kError) finals[ev->error.job_id].push_back(*ev);
    }
  };
  {
    client::Client c(client_ep);
    c.submit(jobs);
    // The template boots (seconds under TCG); kill the broker once jobs are flowing, with the
    // others queued or running in clones. The first jobs boot cold beside the template: on a
    // loaded machine three TCG boots at once can miss the 60 s boot timeout and be retried, so
    // the wait allows for a second boot attempt.
    take(c, 240s, 2);
    REQUIRE_MESSAGE(finals.size() >= 2, slurp(worker->log() + ".err"));
    broker.process->signal(SIGKILL);
    REQUIRE(broker.process->wait_for(5s).has_value());
    while (auto ev = c.next(0ms)) {
      if (ev->kind == client::Event::Kind::kResult) finals[ev->result.job_id].push_back(*ev);
    }
  }
  const size_t before_restart = finals.size();
  broker = start_broker(dir, broker_args, client_ep, worker_ep);
  client::Client c(client_ep);
  for (const auto& id : ids) {
    if (!finals.count(id)) c.fetch(id);
  }
  take(c, 120s, ids.size());
  take(c, 1s, ids.size() + 1);  // late duplicates
  MESSAGE(before_restart << " of " << ids.size() << " jobs answered before the broker died");
  for (const auto& id : ids) {
    CAPTURE(id);
    REQUIRE_MESSAGE(finals.count(id) == 1, slurp(worker->log() + ".err"));
    const auto& ev = finals.at(id).front();
    REQUIRE_MESSAGE(ev.kind == client::Event::Kind::kResult, ev.error.message);
    CHECK(ev.result.stdout_data == id + "\n");
    CHECK(finals.at(id).size() == 1);
  }
  REQUIRE(worker->running());
  worker->signal(SIGTERM);
  CHECK(worker->wait_for(30s) == std::optional<int>(0));
  CHECK(nothing_left_in(run_dir));
  CHECK(qemu_pids_under(run_dir).empty());
  fs::remove_all(run_dir);
  fs::remove_all(run_dir + "-snap");
}

namespace {

// Every process whose command line names `run_dir` (the jailers: QEMU's own command line holds
// only paths inside its chroot) and their children (the QEMUs).
std::set<int> vm_processes_under(const std::string& run_dir) {
  std::set<int> pids;
  for (const auto& e : fs::directory_iterator("/proc")) {
    const std::string name = e.path().filename();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    try {  // a process may exit while it is read (ESRCH from the read)
      std::ifstream in(e.path() / "cmdline", std::ios::binary);
      std::string cmd((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
      if (cmd.find("paddock-jailer") == std::string::npos || cmd.find(run_dir) == std::string::npos)
        continue;
      pids.insert(std::stoi(name));
      std::ifstream children(e.path() / "task" / name / "children");
      for (int pid; children >> pid;) pids.insert(pid);
    } catch (const std::exception&) {
      continue;
    }
  }
  return pids;
}

// Whether `pid` still runs: it exists and is not a zombie (a dead jailer reparented to a pid 1
// that does not reap stays a zombie; it runs nothing).
bool still_runs(int pid) {
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  if (!std::getline(stat, line)) return false;
  const auto close = line.rfind(')');
  return close != std::string::npos && close + 2 < line.size() && line[close + 2] != 'Z' &&
         line[close + 2] != 'X';
}

}  // namespace

TEST_CASE("qemu worker: a worker SIGKILLed with jobs running takes every VM process with it") {
  if (!vm_tests_can_run()) return;
  TempDir dir;
  const std::string run_dir = "/run/paddock-test-wkill-" + std::to_string(::getpid());
  auto broker = start_broker(dir);
  const std::vector<std::string> args = {"--backend", "qemu",  "--image-dir",    guest_image_dir(),
                                         "--run-dir", run_dir, "--snapshot-dir", run_dir + "-snap",
                                         "--network", "off"};
  // Warm pools on: a template, pooled clones and the jobs' VMs are all jailed QEMUs.
  auto worker = start_worker(dir, broker.worker_endpoint, "wkill", 2, args);
  client::Client c(broker.client_endpoint);
  std::vector<schemas::JobRequest> jobs;
  for (const char* id : {"held-1", "held-2"}) {
    jobs.push_back(job(id, {"/bin/sh", "-c", "sleep 300"}));
    jobs.back().timeout_ms = 600'000;
  }
  c.submit(jobs);
  // Wait for VMs (boots take seconds under TCG): at least two jailed QEMUs running.
  std::set<int> before;
  for (int i = 0; i < 1800; ++i) {
    before = vm_processes_under(run_dir);
    if (qemu_pids_under(run_dir).size() >= 2) break;
    REQUIRE_MESSAGE(worker->running(), slurp(worker->log() + ".err"));
    std::this_thread::sleep_for(100ms);
  }
  REQUIRE_MESSAGE(qemu_pids_under(run_dir).size() >= 2, slurp(worker->log() + ".err"));
  before = vm_processes_under(run_dir);
  MESSAGE(before.size() << " jailer and QEMU processes before the kill");
  const auto t0 = std::chrono::steady_clock::now();
  worker->signal(SIGKILL);
  REQUIRE(worker->wait_for(10s).has_value());
  // Gone without anybody stopping them: the parent-death signal, re-armed after the jailer
  // dropped its privileges, kills each jailer, and each QEMU dies with its jailer. Nothing else
  // would stop them (without the re-arm they ran on for good), so the wait is for the condition,
  // with a deadline long enough for a loaded machine; the time it took is reported.
  auto alive = [&] {
    std::vector<int> out;
    for (int pid : before) {
      if (still_runs(pid)) out.push_back(pid);
    }
    for (int pid : vm_processes_under(run_dir)) {
      if (still_runs(pid) && !before.count(pid)) out.push_back(pid);
    }
    return out;
  };
  for (int i = 0; i < 1500 && !alive().empty(); ++i) std::this_thread::sleep_for(20ms);
  const auto took =
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0);
  MESSAGE("every VM process of the SIGKILLed worker gone after " << took.count() << " ms");
  CHECK(alive().empty());
  // The held jobs go back to the queue when the broker finds the worker dead: cancel them, so
  // the next worker's one slot runs the probe. That worker, on the same run directory, sweeps
  // what the dead one left (chroots, cgroups).
  c.cancel("held-1");
  c.cancel("held-2");
  auto cancelled = collect(c, {"held-1", "held-2"}, 60s);
  CHECK(cancelled.all_exactly_once({"held-1", "held-2"}));
  auto next = start_worker(dir, broker.worker_endpoint, "wkill-2", 1, args);
  auto probe = job("after", {"echo", "swept"});
  probe.timeout_ms = 120'000;
  c.submit(std::vector<schemas::JobRequest>{probe});
  auto answers = collect(c, {"after"}, 240s);
  REQUIRE_MESSAGE(answers.finals.count("after"), slurp(next->log() + ".err"));
  next->signal(SIGTERM);
  CHECK(next->wait_for(60s) == std::optional<int>(0));
  CHECK(nothing_left_in(run_dir));
  CHECK(vm_processes_under(run_dir).empty());
  fs::remove_all(run_dir);
  fs::remove_all(run_dir + "-snap");
}
