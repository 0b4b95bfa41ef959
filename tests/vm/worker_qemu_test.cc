// The worker on the qemu backend, through a real broker: every job runs in a fresh cold-booted
// microVM that is torn down afterwards; nothing is left behind.
#include <doctest/doctest.h>
#include <signal.h>

#include <filesystem>

#include "../integration/harness.h"
#include "vm_fixture.h"

using namespace paddock;
using namespace paddock::testing;
namespace fs = std::filesystem;

TEST_CASE("qemu worker: 20 jobs in a row, each in its own VM, leave no QEMU, socket or directory") {
  if (!vm_tests_can_run()) return;
  TempDir dir;
  const std::string run_dir = "/run/paddock-test-worker-" + std::to_string(::getpid());
  auto broker = start_broker(dir);
  auto worker = start_worker(dir, broker.worker_endpoint, "vmw", 2,
                             {"--backend", "qemu", "--image-dir", guest_image_dir(), "--run-dir",
                              run_dir});
  client::Client c(broker.client_endpoint);
  std::vector<schemas::JobRequest> jobs;
  std::vector<std::string> ids;
  for (int i = 0; i < 20; ++i) {
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
  for (int i = 0; i < 20; ++i) {
    const auto& ev = answers.finals.at(ids[i]).front();
    REQUIRE_MESSAGE(ev.kind == client::Event::Kind::kResult, ev.error.message);
    CHECK(ev.result.stdout_data == "job " + std::to_string(i) + " on Linux\n");
    CHECK(ev.result.backend == "qemu");
    CHECK_FALSE(ev.result.warm);  // cold boot for now
    CHECK(ev.result.timings.start_us > 0);
    CHECK(ev.result.timings.exec_us > 0);
    CHECK(ev.result.timings.teardown_us > 0);
  }
  worker->signal(SIGTERM);
  auto code = worker->wait_for(30s);
  REQUIRE(code.has_value());
  CHECK(*code == 0);
  // Every VM directory (sockets, pidfile) is gone, and no QEMU names the run directory.
  CHECK(fs::is_empty(run_dir));
  CHECK(qemu_processes_under(run_dir) == 0);
  fs::remove_all(run_dir);
}
