// The worker on the qemu backend, through a real broker: every job runs in a fresh microVM (cold
// booted, or a clone of a template snapshot) that is torn down afterwards; nothing is left behind.
#include <doctest/doctest.h>
#include <signal.h>

#include <sys/stat.h>

#include <cstdio>
#include <filesystem>
#include <map>
#include <optional>
#include <set>

#include "../integration/harness.h"
#include "test_internet.h"
#include "vm_fixture.h"

using namespace paddock;
using namespace paddock::testing;
namespace fs = std::filesystem;

namespace {

// A network namespace that plays the worker's host for its VMs' networks (so the test never
// touches the machine's own firewall), deleted at the end.
struct HostNetns {
  std::string name = "ptwk" + std::to_string(::getpid() % 100000);
  HostNetns() { REQUIRE(std::system(("ip netns add " + name).c_str()) == 0); }
  ~HostNetns() { (void)std::system(("ip netns delete " + name + " 2>/dev/null").c_str()); }
};

}  // namespace

TEST_CASE("qemu worker: 6 cold jobs, each in its own VM, leave no QEMU, socket or directory") {
  if (!vm_tests_can_run()) return;
  TempDir dir;
  const std::string run_dir = "/run/paddock-test-worker-" + std::to_string(::getpid());
  HostNetns host;
  auto broker = start_broker(dir);
  auto worker = start_worker(
      dir, broker.worker_endpoint, "vmw", 2,
      {"--backend", "qemu", "--image-dir", guest_image_dir(), "--run-dir", run_dir,
       "--snapshot-dir", run_dir + "-snap", "--warm", "off", "--net-host-netns", host.name});
  client::Client c(broker.client_endpoint);
  std::vector<schemas::JobRequest> jobs;
  std::vector<std::string> ids;
  for (int i = 0; i < 6; ++i) {
    auto j = job("vm-" + std::to_string(i),
                 {"/bin/sh", "-c", "echo job " + std::to_string(i) + " on $(uname -s)"});
    j.timeout_ms = 20'000;
    ids.push_back(j.job_id);
    jobs.push_back(std::move(j));
  }
  c.submit(jobs);
  auto answers = collect(c, ids, 300s);
  REQUIRE_MESSAGE(worker->running(), "the worker exited: " << slurp(worker->log() + ".err"));
  REQUIRE_MESSAGE(answers.all_exactly_once(ids), slurp(worker->log() + ".err"));
  for (int i = 0; i < 6; ++i) {
    const auto& ev = answers.finals.at(ids[i]).front();
    REQUIRE_MESSAGE(ev.kind == client::Event::Kind::kResult, ev.error.message);
    CHECK(ev.result.stdout_data == "job " + std::to_string(i) + " on Linux\n");
    CHECK(ev.result.backend == "qemu");
    CHECK_FALSE(ev.result.warm);  // --warm off
    CHECK(ev.result.template_vm.empty());
    CHECK(ev.result.timings.start_us > 0);
    CHECK(ev.result.timings.exec_us > 0);
    // Answered before the VM's teardown (PROTOCOL.md, JobResult): not part of the job's time.
    CHECK(ev.result.timings.teardown_us == 0);
    CHECK(ev.result.timings.total_us >= ev.result.timings.start_us + ev.result.timings.exec_us);
  }
  worker->signal(SIGTERM);
  auto code = worker->wait_for(30s);
  REQUIRE(code.has_value());
  CHECK(*code == 0);
  // Every VM directory (sockets, pidfile) is gone, and no QEMU names the run directory.
  CHECK(testing::nothing_left_in(run_dir));
  CHECK(qemu_processes_under(run_dir) == 0);
  fs::remove_all(run_dir);
  fs::remove_all(run_dir + "-snap");
}

namespace {

// Submits one job and waits for its answer.
client::Event run_one(client::Client& c, schemas::JobRequest j) {
  const std::string id = j.job_id;
  c.submit(std::vector<schemas::JobRequest>{std::move(j)});
  auto answers = collect(c, {id}, 120s);
  REQUIRE(answers.finals.count(id) == 1);
  return answers.finals.at(id).front();
}

}  // namespace

TEST_CASE(
    "qemu worker: warm jobs run in unique clones of one template that outlives the worker, and a "
    "corrupted template is rebuilt") {
  if (!vm_tests_can_run()) return;
  TempDir dir;
  const std::string run_dir = "/run/paddock-test-warm-" + std::to_string(::getpid());
  const std::string snap_dir = "/run/paddock-test-warmsnap-" + std::to_string(::getpid());
  HostNetns host;
  auto broker = start_broker(dir);
  const std::vector<std::string> flags = {
      "--backend",        "qemu",   "--image-dir",    guest_image_dir(),
      "--run-dir",        run_dir,  "--snapshot-dir", snap_dir,
      "--warm-min",       "1",      "--warm-max",     "2",
      "--net-host-netns", host.name};
  client::Client c(broker.client_endpoint);
  std::string template_vm;
  {
    auto worker = start_worker(dir, broker.worker_endpoint, "warm1", 2, flags);
    // The template is built in the background at start; a job that comes while it is being
    // built waits for it (--warm-template-wait-s, 120 s) rather than booting cold beside it.
    const auto deadline = std::chrono::steady_clock::now() + 120s;
    int n = 0;
    while (template_vm.empty() && std::chrono::steady_clock::now() < deadline) {
      auto ev = run_one(c, job("probe-" + std::to_string(n++), {"true"}));
      REQUIRE_MESSAGE(ev.kind == client::Event::Kind::kResult, ev.error.message);
      if (ev.result.warm) template_vm = ev.result.template_vm;
    }
    REQUIRE_MESSAGE(!template_vm.empty(),
                    "no warm job within 120 s: " << slurp(worker->log() + ".err"));
    CHECK(template_vm.rfind("tpl-default-1x128-", 0) == 0);
    CHECK_MESSAGE(n == 1, "the first job did not wait for the template: " << n << " jobs ran");

    std::vector<schemas::JobRequest> jobs;
    std::vector<std::string> ids;
    for (int i = 0; i < 10; ++i) {
      auto j = job("warm-" + std::to_string(i), {"/bin/sh", "-c",
                                                 "hostname; cat /proc/sys/kernel/random/boot_id; "
                                                 "head -c 8 /dev/urandom | od -An -tx1"});
      ids.push_back(j.job_id);
      jobs.push_back(std::move(j));
    }
    c.submit(jobs);
    auto answers = collect(c, ids, 300s);
    REQUIRE_MESSAGE(answers.all_exactly_once(ids), slurp(worker->log() + ".err"));
    std::set<std::string> outputs;
    for (const auto& id : ids) {
      const auto& ev = answers.finals.at(id).front();
      REQUIRE_MESSAGE(ev.kind == client::Event::Kind::kResult, ev.error.message);
      CHECK(ev.result.exit_code == 0);
      CHECK(ev.result.warm);
      CHECK(ev.result.template_vm == template_vm);
      CHECK(ev.result.stdout_data.rfind("paddock-warm1-warm-", 0) == 0);
      outputs.insert(ev.result.stdout_data);
    }
    CHECK(outputs.size() == ids.size());  // hostname, boot id and entropy differ in every clone

    worker->signal(SIGTERM);
    auto code = worker->wait_for(60s);
    REQUIRE(code.has_value());
    CHECK(*code == 0);
    CHECK(testing::nothing_left_in(run_dir));
    CHECK(qemu_processes_under(run_dir) == 0);
  }
  // The template stays on disk, and a restarted worker runs warm from it without a new boot.
  CHECK(fs::exists(snap_dir + "/" + template_vm + "/template/meta.json"));
  {
    auto worker = start_worker(dir, broker.worker_endpoint, "warm1", 1, flags);
    const auto deadline = std::chrono::steady_clock::now() + 60s;
    client::Event ev;
    int n = 0;
    do {
      ev = run_one(c, job("again-" + std::to_string(n++), {"true"}));
      REQUIRE_MESSAGE(ev.kind == client::Event::Kind::kResult, ev.error.message);
    } while (!ev.result.warm && std::chrono::steady_clock::now() < deadline);
    CHECK(ev.result.warm);
    CHECK(ev.result.template_vm == template_vm);
    worker->signal(SIGTERM);
    auto code = worker->wait_for(60s);
    REQUIRE(code.has_value());
    CHECK(*code == 0);
  }
  // A corrupted template is refused by its checksum; the worker deletes it and builds a new one.
  {
    const std::string memory = snap_dir + "/" + template_vm + "/template/memory";
    REQUIRE(::chmod(memory.c_str(), 0644) == 0);
    std::FILE* f = std::fopen(memory.c_str(), "r+b");
    REQUIRE(f != nullptr);
    std::fseek(f, 4 << 20, SEEK_SET);
    const int byte = std::fgetc(f);
    std::fseek(f, 4 << 20, SEEK_SET);
    std::fputc(byte ^ 0x5a, f);
    std::fclose(f);
  }
  {
    auto worker = start_worker(dir, broker.worker_endpoint, "warm1", 1, flags);
    const auto deadline = std::chrono::steady_clock::now() + 120s;
    client::Event ev;
    int n = 0;
    do {
      ev = run_one(c, job("rebuilt-" + std::to_string(n++), {"echo", "ok"}));
      REQUIRE_MESSAGE(ev.kind == client::Event::Kind::kResult, ev.error.message);
      CHECK(ev.result.stdout_data == "ok\n");
    } while (!ev.result.warm && std::chrono::steady_clock::now() < deadline);
    REQUIRE_MESSAGE(ev.result.warm, slurp(worker->log() + ".err"));
    CHECK(ev.result.template_vm != template_vm);
    CHECK_FALSE(fs::exists(snap_dir + "/" + template_vm));  // the refused one is gone
    CHECK(slurp(worker->log() + ".err").find("fails its checksum") != std::string::npos);
    worker->signal(SIGTERM);
    auto code = worker->wait_for(60s);
    REQUIRE(code.has_value());
    CHECK(*code == 0);
  }
  CHECK(testing::nothing_left_in(run_dir));
  CHECK(qemu_processes_under(run_dir) == 0);
  fs::remove_all(run_dir);
  fs::remove_all(snap_dir);
}

TEST_CASE("qemu worker: a job's egress rules reach its VM through broker and worker") {
  if (!vm_tests_can_run()) return;
  TempDir dir;
  TestInternet inet;  // the worker's VMs use namespace W as their host; A and B are test hosts
  const std::string run_dir = "/run/paddock-test-wnet-" + std::to_string(::getpid());
  auto broker = start_broker(dir);
  auto worker =
      start_worker(dir, broker.worker_endpoint, "wnet", 2,
                   {"--backend", "qemu", "--image-dir", guest_image_dir(), "--run-dir", run_dir,
                    "--snapshot-dir", run_dir + "-snap", "--warm", "off", "--net-host-netns",
                    inet.w, "--net-pool", "10.215.0.0/24", "--net-prefix", "wnet1"});
  client::Client c(broker.client_endpoint);
  const std::string probe =
      "for t in 198.18.1.2:8001 198.18.1.2:8002 198.18.2.2:8001; do "
      "nc -w 2 ${t%:*} ${t#*:} </dev/null 2>/dev/null; done; true";
  auto allowed = job("egress-a", {"/bin/sh", "-c", probe});
  allowed.timeout_ms = 30'000;
  schemas::EgressRule rule;
  rule.cidr = "198.18.1.2/32";
  rule.protocol = "tcp";
  rule.ports = {{8001, 8001}};
  allowed.egress = {rule};
  auto closed = job("egress-none", {"/bin/sh", "-c", probe});
  closed.timeout_ms = 30'000;
  c.submit(std::vector<schemas::JobRequest>{allowed, closed});
  auto answers = collect(c, {"egress-a", "egress-none"}, 300s);
  REQUIRE_MESSAGE(answers.all_exactly_once({"egress-a", "egress-none"}),
                  slurp(worker->log() + ".err"));
  const auto& a = answers.finals.at("egress-a").front();
  REQUIRE_MESSAGE(a.kind == client::Event::Kind::kResult, a.error.message);
  CHECK(a.result.stdout_data == "A-8001\n");  // 8002 and host B stay closed
  CHECK(a.result.usage.egress_blocked >= 2);
  CHECK(a.result.usage.bytes_in > 0);
  const auto& n = answers.finals.at("egress-none").front();
  REQUIRE_MESSAGE(n.kind == client::Event::Kind::kResult, n.error.message);
  CHECK(n.result.stdout_data == "");
  CHECK(n.result.usage.egress_blocked >= 3);
  worker->signal(SIGTERM);
  auto code = worker->wait_for(60s);
  REQUIRE(code.has_value());
  CHECK(*code == 0);
  CHECK(testing::nothing_left_in(run_dir));
  // The worker's network namespaces went with their VMs.
  CHECK(capture("ls /run/netns | grep -c '^wnet1-' || true") == "0\n");
  fs::remove_all(run_dir);
  fs::remove_all(run_dir + "-snap");
}

TEST_CASE(
    "qemu worker: a grader job prepares a program in step 1 and runs it on 5 inputs in steps 2-6 "
    "in one VM, one input failing, with six step results") {
  if (!vm_tests_can_run()) return;
  TempDir dir;
  const std::string run_dir = "/run/paddock-test-steps-" + std::to_string(::getpid());
  HostNetns host;
  auto broker = start_broker(dir);
  auto worker = start_worker(
      dir, broker.worker_endpoint, "stepw", 1,
      {"--backend", "qemu", "--image-dir", guest_image_dir(), "--run-dir", run_dir,
       "--snapshot-dir", run_dir + "-snap", "--warm", "off", "--net-host-netns", host.name});
  client::Client c(broker.client_endpoint);
  schemas::JobRequest j;
  j.job_id = "grader-1";
  j.timeout_ms = 120'000;
  // The submission; step 1 checks it and prepares the program the other steps run (a file that
  // exists only if step 1 ran in this VM), and says which boot it is.
  j.files = {schemas::FileIn{"submission.sh", 0644,
                             "read n\n[ \"$n\" -ge 0 ] || { echo \"negative: $n\" >&2; exit 2; }\n"
                             "echo \"$((n * n)) $(cat /proc/sys/kernel/random/boot_id)\"\n"}};
  auto step = [&](std::vector<std::string> argv, std::string in) {
    schemas::Step s;
    s.argv = std::move(argv);
    s.stdin_data = std::move(in);
    s.timeout_ms = 30'000;
    s.output_cap = j.output_cap;
    return s;
  };
  j.steps.push_back(step({"/bin/sh", "-c",
                          "sh -n submission.sh && cp submission.sh prepared.sh && "
                          "cat /proc/sys/kernel/random/boot_id"},
                         ""));
  for (const char* in : {"1\n", "2\n", "-4\n", "5\n", "12\n"}) {
    j.steps.push_back(step({"/bin/sh", "prepared.sh"}, in));
  }
  j.stop_on_failure = false;  // a grader runs every test case
  j.stream = true;            // and its output comes live, step by step
  c.submit(j);
  auto answers = collect(c, {"grader-1"}, 300s);
  REQUIRE_MESSAGE(answers.all_exactly_once({"grader-1"}), slurp(worker->log() + ".err"));
  const auto& ev = answers.finals.at("grader-1").front();
  REQUIRE_MESSAGE(ev.kind == client::Event::Kind::kResult, ev.error.message);
  const auto& r = ev.result;
  REQUIRE(r.steps.size() == 6);
  CHECK(r.steps[0].exit_code == 0);
  const std::string boot = r.steps[0].stdout_data;
  REQUIRE(boot.size() > 30);
  const std::vector<std::string> squares = {"1", "4", "", "25", "144"};
  for (size_t i = 1; i < 6; ++i) {
    CAPTURE(i);
    CHECK(r.steps[i].exec_us > 0);
    if (i == 3) {
      CHECK(r.steps[i].exit_code == 2);
      CHECK(r.steps[i].stderr_data == "negative: -4\n");
      continue;
    }
    CHECK(r.steps[i].exit_code == 0);
    // The square, and the same boot as step 1: one VM for all the steps.
    CHECK(r.steps[i].stdout_data == squares[i - 1] + " " + boot);
  }
  CHECK(r.exit_code == 0);  // the last step's
  CHECK(r.stdout_data.empty());
  // Each step's output came live too, marked with its step.
  std::map<std::pair<uint32_t, int>, std::string> live;
  for (const auto& e : answers.others) {
    if (e.kind != client::Event::Kind::kOutput) continue;
    REQUIRE(e.output.step.has_value());
    auto& got = live[{*e.output.step, static_cast<int>(e.output.stream)}];
    CHECK(e.output.offset == got.size());
    got += e.output.data;
  }
  CHECK(live[{0u, 1}] == boot);
  CHECK(live[{3u, 2}] == "negative: -4\n");
  CHECK(live[{5u, 1}] == "144 " + boot);
  worker->signal(SIGTERM);
  auto code = worker->wait_for(30s);
  REQUIRE(code.has_value());
  CHECK(*code == 0);
  CHECK(testing::nothing_left_in(run_dir));
  CHECK(qemu_processes_under(run_dir) == 0);
  fs::remove_all(run_dir);
  fs::remove_all(run_dir + "-snap");
}

TEST_CASE(
    "qemu worker: a streaming job's first line reaches its submitter seconds before its RESULT") {
  if (!vm_tests_can_run()) return;
  TempDir dir;
  const std::string run_dir = "/run/paddock-test-stream-" + std::to_string(::getpid());
  HostNetns host;
  auto broker = start_broker(dir);
  auto worker = start_worker(
      dir, broker.worker_endpoint, "streamw", 1,
      {"--backend", "qemu", "--image-dir", guest_image_dir(), "--run-dir", run_dir,
       "--snapshot-dir", run_dir + "-snap", "--warm", "off", "--net-host-netns", host.name});
  client::Client c(broker.client_endpoint);
  schemas::JobRequest j;
  j.job_id = "live-1";
  j.timeout_ms = 120'000;
  j.argv = {"/bin/sh", "-c", "echo first; sleep 3; echo second"};
  j.stream = true;
  c.submit(j);
  using Clock = std::chrono::steady_clock;
  std::optional<Clock::time_point> first_at, result_at;
  std::string streamed;
  std::optional<client::Event> final;
  const auto deadline = Clock::now() + 300s;
  while (!final && Clock::now() < deadline) {
    auto ev = c.next(1000ms);
    if (!ev) continue;
    if (ev->kind == client::Event::Kind::kOutput) {
      CHECK(ev->output.offset == streamed.size());
      streamed += ev->output.data;
      if (!first_at && streamed.find("first\n") != std::string::npos) first_at = Clock::now();
    } else if (ev->kind == client::Event::Kind::kResult ||
               ev->kind == client::Event::Kind::kError) {
      result_at = Clock::now();
      final = std::move(ev);
    }
  }
  REQUIRE_MESSAGE(final.has_value(), slurp(worker->log() + ".err"));
  REQUIRE_MESSAGE(final->kind == client::Event::Kind::kResult, final->error.message);
  CHECK(final->result.stdout_data == "first\nsecond\n");
  CHECK(streamed == "first\nsecond\n");
  REQUIRE(first_at.has_value());
  const auto ahead = std::chrono::duration_cast<std::chrono::milliseconds>(*result_at - *first_at);
  MESSAGE("\"first\" came " << ahead.count() << " ms before the RESULT");
  CHECK(ahead >= 2000ms);  // the guest sleeps 3 s between the lines
  worker->signal(SIGTERM);
  auto code = worker->wait_for(30s);
  REQUIRE(code.has_value());
  CHECK(*code == 0);
  CHECK(testing::nothing_left_in(run_dir));
  CHECK(qemu_processes_under(run_dir) == 0);
  fs::remove_all(run_dir);
  fs::remove_all(run_dir + "-snap");
}
