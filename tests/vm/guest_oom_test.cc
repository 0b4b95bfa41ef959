// A job that allocates beyond its VM's memory: the guest kernel's OOM killer ends it, the agent
// reports oom_killed (it compares the guest's oom_kill counter before and after the job), and the
// VM lives on to run the next job.
#include <doctest/doctest.h>
#include <unistd.h>

#include <csignal>
#include <filesystem>
#include <string>

#include "paddock/runtime/qemu_provider.h"
#include "vm_fixture.h"

using namespace paddock;
using namespace paddock::runtime;
namespace fs = std::filesystem;

namespace {

ExecRequest shell(const std::string& script, uint32_t timeout_ms = 20'000) {
  ExecRequest r;
  r.argv = {"/bin/sh", "-c", script};
  r.timeout_ms = timeout_ms;
  return r;
}

struct RunDir {
  std::string path = "/run/paddock-test-oom-" + std::to_string(::getpid());
  ~RunDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
};

// Busybox ash keeps a command substitution's whole output in the shell's memory: 400 MB of 'a'
// in a 128 MiB guest. The shell holding it is the biggest process, so the OOM killer picks it.
constexpr const char* kHog = "x=$(head -c 400000000 /dev/zero | tr '\\0' a); echo never";

}  // namespace

TEST_CASE("guest OOM: a job that allocates beyond its VM's memory is oom_killed, the VM lives on") {
  if (!testing::vm_tests_can_run()) return;
  RunDir dir;
  auto opened = QemuProvider::open(testing::test_qemu_config(dir.path));
  REQUIRE_MESSAGE(opened, (opened ? "" : opened.error().message()));
  auto& p = *opened.value();
  REQUIRE(p.create("vm-oom", VmSpec{"default", 1, 128}).ok());
  auto started = p.start("vm-oom");
  REQUIRE_MESSAGE(started.ok(), (started.ok() ? "" : started.error().message()));

  {
    INFO("a normal job is not oom_killed");
    auto x = p.exec("vm-oom", shell("echo fine"), {});
    REQUIRE_MESSAGE(x, (x ? "" : x.error().message()));
    CHECK(x.value().stdout_data == "fine\n");
    CHECK(x.value().exit_code == 0);
    CHECK_FALSE(x.value().oom_killed);
  }
  {
    INFO("a job killed by a signal that is not the OOM killer's is not oom_killed");
    auto x = p.exec("vm-oom", shell("kill -9 $$"), {});
    REQUIRE_MESSAGE(x, (x ? "" : x.error().message()));
    CHECK(x.value().signal == SIGKILL);
    CHECK_FALSE(x.value().oom_killed);
  }
  {
    INFO("the memory hog is killed for memory");
    auto x = p.exec("vm-oom", shell(kHog, 180'000), {});
    REQUIRE_MESSAGE(x, (x ? "" : x.error().message()));
    const auto& r = x.value();
    MESSAGE("hog: exit " << r.exit_code << ", signal " << r.signal << ", peak "
                         << r.usage.peak_memory_kib << " KiB, stderr '" << r.stderr_data << "'");
    CHECK(r.oom_killed);
    CHECK(r.signal == SIGKILL);
    CHECK(r.exit_code == 128 + SIGKILL);
    CHECK_FALSE(r.timed_out);
    CHECK(r.stdout_data.find("never") == std::string::npos);
  }
  {
    INFO("the VM still answers after the OOM kill");
    auto x = p.exec("vm-oom", shell("echo ok"), {});
    REQUIRE_MESSAGE(x, (x ? "" : x.error().message()));
    CHECK(x.value().stdout_data == "ok\n");
    CHECK(x.value().exit_code == 0);
    CHECK_FALSE(x.value().oom_killed);  // the counter rose before this job, not during it
  }
  {
    INFO("a job whose subshell is OOM-killed but that exits by itself is not oom_killed");
    auto x = p.exec("vm-oom", shell(std::string("(") + kHog + "); echo survived $?", 180'000), {});
    REQUIRE_MESSAGE(x, (x ? "" : x.error().message()));
    CHECK(x.value().stdout_data == "survived 137\n");
    CHECK(x.value().exit_code == 0);
    CHECK(x.value().signal == 0);
    CHECK_FALSE(x.value().oom_killed);
  }
  REQUIRE(p.destroy("vm-oom").ok());
  CHECK(testing::qemu_processes_under(dir.path) == 0);
}
