// Per-job images on the qemu backend, through a real broker and a jailed worker: a worker with the
// default image and the test-minimal root filesystem image (built by the "vm: build rootfs test
// image" fixture) runs each job in its image, warm, in a unique clone of that image's template;
// an image it does not have is UnknownImage. When the python image is built on this machine, a
// `python3 -c 'print(1)'` job runs end to end from the paddock CLI and from the Python client
// (skipped loudly otherwise).
#include <doctest/doctest.h>
#include <signal.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <set>

#include "../integration/harness.h"
#include "vm_fixture.h"

using namespace paddock;
using namespace paddock::testing;
namespace fs = std::filesystem;

namespace {

client::Event run_one(client::Client& c, schemas::JobRequest j) {
  const std::string id = j.job_id;
  c.submit(std::vector<schemas::JobRequest>{std::move(j)});
  auto answers = collect(c, {id}, 180s, 0ms);
  REQUIRE(answers.finals.count(id) == 1);
  return answers.finals.at(id).front();
}

schemas::JobRequest in_image(std::string id, std::string image, std::string script) {
  auto j = job(std::move(id), {"/bin/busybox", "sh", "-c", std::move(script)});
  j.image = std::move(image);
  j.timeout_ms = 30'000;
  return j;
}

// Runs `command` through the shell with its stdout in `out`; returns its exit status.
int shell(const std::string& command, const std::string& out) {
  const int status = std::system((command + " >" + out + " 2>" + out + ".err").c_str());
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

}  // namespace

TEST_CASE(
    "qemu worker images: jobs run warm in clones of their image's template, python from the CLI "
    "and the Python client") {
  if (!vm_tests_can_run()) return;
  const std::string minimal = first_line(PADDOCK_ROOTFS_IMAGE_FILE);
  REQUIRE_MESSAGE(!minimal.empty(),
                  "no rootfs test image: the 'vm: build rootfs test image' "
                  "fixture did not run or failed");
  const std::string python = first_line(PADDOCK_PYTHON_IMAGE_FILE);
  const bool have_python = !python.empty() && python.rfind("none", 0) != 0;
  TempDir dir;
  const std::string run_dir = "/run/paddock-test-images-" + std::to_string(::getpid());
  auto broker = start_broker(dir, {"--image-grace-ms", "0"});
  std::vector<std::string> flags = {"--backend",      "qemu",
                                    "--image-dir",    guest_image_dir(),
                                    "--image",        "test-minimal=" + minimal,
                                    "--run-dir",      run_dir,
                                    "--snapshot-dir", run_dir + "-snap",
                                    "--network",      "off",
                                    "--warm-min",     "1",
                                    "--warm-max",     "1",
                                    "--warm-images",  "default,test-minimal"};
  if (have_python) flags.insert(flags.end(), {"--image", "python=" + python});
  auto worker = start_worker(dir, broker.worker_endpoint, "imgw", 2, flags);
  client::Client c(broker.client_endpoint);

  // Each image's first jobs wait for its template being built; then they run warm.
  // test-minimal's warm-up (tests/vm/test-minimal.image) ran in its template before the
  // snapshot: its mark is in every clone, its scratch directory is not.
  const std::string probe =
      "cat /proc/sys/kernel/random/boot_id; echo ${PADDOCK_TEST_IMAGE:-none}; "
      "grep VERSION_ID /etc/os-release 2>/dev/null || echo no-os-release; "
      "cat /var/tmp/paddock-warmed 2>/dev/null || echo not-warmed; "
      "ls /tmp/paddock-warmup 2>/dev/null || echo no-scratch";
  std::map<std::string, std::set<std::string>> outputs;
  for (const std::string image : {"default", "test-minimal"}) {
    const auto deadline = std::chrono::steady_clock::now() + 240s;
    int n = 0, warm = 0;
    while (warm < 2 && std::chrono::steady_clock::now() < deadline) {
      auto ev = run_one(c, in_image(image + "-" + std::to_string(n++), image, probe));
      REQUIRE_MESSAGE(ev.kind == client::Event::Kind::kResult,
                      ev.error.message << "\n"
                                       << slurp(worker->log() + ".err"));
      CHECK(ev.result.exit_code == 0);
      if (!ev.result.warm) continue;
      ++warm;
      CHECK(ev.result.template_vm.rfind("tpl-" + image + "-1x128-", 0) == 0);
      outputs[image].insert(ev.result.stdout_data);
    }
    REQUIRE_MESSAGE(warm == 2, "no two warm '" << image << "' jobs within 240 s: "
                                               << slurp(worker->log() + ".err"));
  }
  // Two clones of one template never share a boot id; each ran in its own image.
  REQUIRE(outputs["default"].size() == 2);
  REQUIRE(outputs["test-minimal"].size() == 2);
  for (const auto& out : outputs["test-minimal"]) {
    CHECK(out.find("\ntest-minimal\nVERSION_ID=\"12\"\nwarmed\nno-scratch\n") != std::string::npos);
  }
  for (const auto& out : outputs["default"]) {
    CHECK(out.find("\nnone\nno-os-release\nnot-warmed\nno-scratch\n") != std::string::npos);
  }

  auto unknown = run_one(c, in_image("nope-1", "no-such-image", "true"));
  REQUIRE(unknown.kind == client::Event::Kind::kError);
  CHECK(unknown.error.variant == "UnknownImage");
  CHECK(unknown.error.message.find("'no-such-image'") != std::string::npos);
  CHECK(unknown.error.message.find("test-minimal") != std::string::npos);

  if (!have_python) {
    MESSAGE("SKIPPED LOUDLY: the python image is not built here ("
            << python << "); build it with tools/build-image.sh python --agent "
            << "<build>/agent/guest/paddock-agent to run python from the CLI and the client");
  } else {
    // The CLI: its stdout is the job's, its exit status the job's.
    const std::string cli_out = dir.path() + "/cli.out";
    const int cli =
        shell(std::string(PADDOCK_CLI_BIN) + " submit --broker " + broker.client_endpoint +
                  " --image python --timeout-ms 60000 -- " + "python3 -c 'print(1)'",
              cli_out);
    CHECK_MESSAGE(cli == 0, slurp(cli_out + ".err") << slurp(worker->log() + ".err"));
    CHECK(slurp(cli_out) == "1\n");
    // The Python client, as a submitter would use it.
    const std::string py_out = dir.path() + "/client.out";
    const std::string script =
        "import sys; sys.path.insert(0, '" PADDOCK_SOURCE_DIR
        "/tools/python'); "
        "from paddock_client import Client, job; "
        "c = Client(sys.argv[1]); "
        "e = c.run_jobs([job('py-client-1', ['python3', '-c', 'print(1)'], image='python', "
        "timeout_ms=60000)], timeout_s=180)['py-client-1']; "
        "print(e.kind, e.body.get('exit_code'), repr(e.body.get('stdout')), e.message)";
    const int py =
        shell("/usr/bin/python3 -c \"" + script + "\" " + broker.client_endpoint, py_out);
    CHECK_MESSAGE(py == 0, slurp(py_out + ".err"));
    CHECK(slurp(py_out) == "result 0 b'1\\n' None\n");
  }

  worker->signal(SIGTERM);
  auto code = worker->wait_for(60s);
  REQUIRE(code.has_value());
  CHECK(*code == 0);
  CHECK(testing::nothing_left_in(run_dir));
  CHECK(qemu_processes_under(run_dir) == 0);
  fs::remove_all(run_dir);
  fs::remove_all(run_dir + "-snap");
}
