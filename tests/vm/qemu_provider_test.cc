// The QEMU backend with real microVMs (TCG on hosts without usable KVM): one VM runs a series of
// jobs through its guest agent; crashes and teardown are checked against the host's state.
#include <doctest/doctest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <csignal>
#include <thread>

#include <filesystem>
#include <fstream>

#include "paddock/runtime/qemu_provider.h"
#include "vm_fixture.h"

using namespace paddock;
using namespace paddock::runtime;
namespace fs = std::filesystem;

namespace {

ExecRequest shell(const std::string& script) {
  ExecRequest r;
  r.argv = {"/bin/sh", "-c", script};
  r.timeout_ms = 20'000;
  return r;
}

struct RunDir {
  std::string path = "/run/paddock-test-" + std::to_string(::getpid());
  ~RunDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
};

}  // namespace

TEST_CASE("qemu: one VM runs echo, exit codes, stderr, stdin, env, files, timeouts and caps") {
  if (!testing::vm_tests_can_run()) return;
  RunDir dir;
  auto opened = QemuProvider::open(testing::test_qemu_config(dir.path));
  REQUIRE_MESSAGE(opened, (opened ? "" : opened.error().message()));
  auto& p = *opened.value();
  REQUIRE(p.create("vm-a", VmSpec{"default", 1, 256}).ok());
  auto started = p.start("vm-a");
  REQUIRE_MESSAGE(started.ok(), (started.ok() ? "" : started.error().message()));
  MESSAGE("cold boot to agent ready: " << p.boot_us("vm-a") / 1000 << " ms (accel " << p.accel()
                                       << ")");

  {
    INFO("job: echo");
    ExecRequest r;
    r.argv = {"echo", "hello", "from", "a", "vm"};
    auto x = p.exec("vm-a", r, {});
    REQUIRE_MESSAGE(x, (x ? "" : x.error().message()));
    CHECK(x.value().stdout_data == "hello from a vm\n");
    CHECK(x.value().exit_code == 0);
  }
  {
    INFO("job: exit code, stderr and a computation in the guest");
    auto x = p.exec("vm-a", shell("echo $((6*7)); echo oops >&2; uname -s; exit 3"), {});
    REQUIRE(x);
    CHECK(x.value().stdout_data == "42\nLinux\n");
    CHECK(x.value().stderr_data == "oops\n");
    CHECK(x.value().exit_code == 3);
  }
  {
    INFO("job: stdin and env");
    auto r = shell("cat; echo \"$GREETING\"");
    r.stdin_data = "from stdin\n";
    r.env["GREETING"] = "bonjour";
    auto x = p.exec("vm-a", r, {});
    REQUIRE(x);
    CHECK(x.value().stdout_data == "from stdin\nbonjour\n");
  }
  {
    INFO("job: files in and out");
    auto r = shell("tr a-z A-Z < in/data.txt > out.txt; echo done");
    r.files.push_back({"in/data.txt", 0644, "make me loud"});
    r.files_out = {"out.txt", "missing.txt"};
    auto x = p.exec("vm-a", r, {});
    REQUIRE(x);
    CHECK(x.value().stdout_data == "done\n");
    REQUIRE(x.value().files.size() == 1);
    CHECK(x.value().files[0].path == "out.txt");
    CHECK(x.value().files[0].data == "MAKE ME LOUD");
  }
  {
    INFO("job: a timeout kills the job and keeps its output so far");
    auto r = shell("echo started; sleep 30; echo never");
    r.timeout_ms = 1500;
    auto x = p.exec("vm-a", r, {});
    REQUIRE(x);
    CHECK(x.value().timed_out);
    CHECK(x.value().stdout_data == "started\n");
    // The agent survived: the VM still answers.
    CHECK(p.exec("vm-a", shell("echo alive"), {}).value().stdout_data == "alive\n");
  }
  {
    INFO("job: output over the cap is cut and flagged");
    auto r = shell("head -c 100000 /dev/zero | tr '\\0' x; echo tail >&2");
    r.output_cap = 1000;
    auto x = p.exec("vm-a", r, {});
    REQUIRE(x);
    CHECK(x.value().stdout_data == std::string(1000, 'x'));
    CHECK(x.value().stdout_truncated);
    CHECK_FALSE(x.value().stderr_truncated);
    CHECK(x.value().stderr_data == "tail\n");
  }
  REQUIRE(p.destroy("vm-a").ok());
  CHECK(testing::qemu_processes_under(dir.path) == 0);
}

TEST_CASE("qemu: a job that crashes the guest kernel is a GuestAgent error quoting the console") {
  if (!testing::vm_tests_can_run()) return;
  RunDir dir;
  auto opened = QemuProvider::open(testing::test_qemu_config(dir.path));
  REQUIRE(opened);
  auto& p = *opened.value();
  REQUIRE(p.create("vm-crash", VmSpec{}).ok());
  REQUIRE(p.start("vm-crash").ok());
  auto x = p.exec("vm-crash", shell("echo c > /proc/sysrq-trigger; sleep 5"), {});
  REQUIRE_FALSE(x.ok());
  CHECK(x.error().variant() == Variant::kGuestAgent);
  CHECK(x.error().message().find("the VM stopped during the job") != std::string::npos);
  // The console's tail: the kernel's own words about the crash.
  CHECK_MESSAGE(x.error().message().find("sysrq") != std::string::npos, x.error().message());
  CHECK(p.destroy("vm-crash").ok());
  CHECK(testing::qemu_processes_under(dir.path) == 0);
  CHECK(testing::nothing_left_in(dir.path));
}

TEST_CASE("qemu: lifecycle errors and pause/resume on a real VM") {
  if (!testing::vm_tests_can_run()) return;
  RunDir dir;
  auto opened = QemuProvider::open(testing::test_qemu_config(dir.path));
  REQUIRE(opened);
  auto& p = *opened.value();
  CHECK(p.start("nope").error().variant() == Variant::kVmNotFound);
  REQUIRE(p.create("vm-l", VmSpec{}).ok());
  CHECK(p.create("vm-l", VmSpec{}).error().variant() == Variant::kVmAlreadyExists);
  CHECK(p.stop("vm-l").error().message() == "invalid vm transition for 'vm-l': created -> stopped");
  REQUIRE(p.start("vm-l").ok());
  CHECK(p.qemu_status("vm-l").value() == "running");
  REQUIRE(p.stop("vm-l").ok());
  CHECK(p.get("vm-l").value().state == VmState::kStopped);
  CHECK(p.qemu_status("vm-l").value() == "paused");  // QEMU agrees: the vCPUs are stopped
  REQUIRE(p.resume("vm-l").ok());
  CHECK(p.qemu_status("vm-l").value() == "running");
  CHECK(p.exec("vm-l", shell("echo back"), {}).value().stdout_data == "back\n");
  REQUIRE(p.destroy("vm-l").ok());
  CHECK(p.destroy("vm-l").error().variant() == Variant::kInvalidTransition);
  CHECK(p.create("vm-l", VmSpec{}).error().variant() == Variant::kVmAlreadyExists);
  CHECK(testing::qemu_processes_under(dir.path) == 0);
}

TEST_CASE("qemu: a missing image or QEMU binary is Unsupported with what to do") {
  RunDir dir;
  auto c = testing::test_qemu_config(dir.path);
  c.image_dir = "/nonexistent";
  auto r = QemuProvider::open(c);
  REQUIRE_FALSE(r);
  CHECK(r.error().variant() == Variant::kUnsupported);
  CHECK(r.error().message().find("build-guest-image.sh") != std::string::npos);
  c = testing::test_qemu_config(dir.path);
  c.qemu_binary = "qemu-system-nonexistent";
  r = QemuProvider::open(c);
  REQUIRE_FALSE(r);
  CHECK(r.error().message().find("apt-get install") != std::string::npos);
}

TEST_CASE("qemu: the startup sweep kills a QEMU and removes the directory a crash left") {
  if (!testing::vm_tests_can_run()) return;
  RunDir dir;
  const std::string leftover = dir.path + "/999-0";
  fs::create_directories(leftover);
  // A stand-in for a QEMU left running by a crashed worker: its command line names the directory.
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::execl("/bin/sh", "sh", "-c", "while :; do sleep 0.1; done", (leftover + "/").c_str(),
            static_cast<char*>(nullptr));
    ::_exit(127);
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  std::ofstream(leftover + "/qemu.pid") << pid;
  CHECK(QemuProvider::sweep(dir.path) == 1);
  CHECK_FALSE(fs::exists(leftover));
  int status = 0;
  REQUIRE(::waitpid(pid, &status, 0) == pid);
  CHECK(WIFSIGNALED(status));
  CHECK(WTERMSIG(status) == SIGKILL);
}
