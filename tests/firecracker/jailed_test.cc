// FirecrackerProvider started through a FAKE jailer (tests/firecracker/fake_jailer.py, a test
// double of Firecracker's jailer: it parses the real jailer's command line strictly, checks the
// chroot the provider prepared, and then chroots, makes the device nodes, joins the cgroups and
// the network namespace, drops to the jail's uid in a new pid namespace and execs the FAKE
// Firecracker). No VM runs. Root is needed (chroot, mknod, cgroups, setuid): CI runs as root;
// elsewhere every test here says loudly that it was skipped.
#include <doctest/doctest.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <stop_token>

#include "fake_firecracker.h"
#include "firecracker_test_util.h"
#include "paddock/runtime/firecracker_provider.h"
#include "paddock/runtime/jailer.h"

using namespace paddock::runtime;
using namespace std::chrono_literals;
namespace fs = std::filesystem;
using paddock::test::JailedBackend;
using paddock::test::running;

namespace {

bool skip_unless_root() {
  if (::geteuid() == 0) return false;
  MESSAGE(
      "SKIPPED LOUDLY: the jailed Firecracker tests need root (chroot, mknod, cgroups, "
      "setuid); they were NOT run");
  return true;
}

// The uid and the pid namespace of a process, from /proc.
struct ProcInfo {
  uint32_t uid = 0;
  std::string nspid;  // "NSpid:\t<host pid>\t1" for pid 1 of a child namespace
};

ProcInfo proc_info(int pid) {
  ProcInfo p;
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("Uid:", 0) == 0) p.uid = static_cast<uint32_t>(std::stoul(line.substr(5)));
    if (line.rfind("NSpid:", 0) == 0) p.nspid = line;
  }
  return p;
}

}  // namespace

TEST_CASE("firecracker jailed: lifecycle through the jailer then teardown leaves nothing") {
  if (skip_unless_root()) return;
  JailedBackend b;
  Provider& p = *b.provider;
  REQUIRE(p.create("vm1", VmSpec{"default", 2, 256}));
  auto started = p.start("vm1");
  REQUIRE_MESSAGE(started, (started ? "" : started.error().message()));
  const int pid = b.provider->vmm_pid("vm1");
  const fs::path jail = b.provider->jail_dir("vm1");
  const fs::path root = jail / "root";
  REQUIRE(running(pid));
  // The chroot is the jailer's: <base>/<exec name>/<id>/root.
  CHECK(jail.parent_path() == b.dir / "jail" / "fake_firecracker.py");
  CHECK(jail.filename().string().rfind(b.provider->jail_prefix() + "-", 0) == 0);
  // Firecracker runs as the jail's uid, as pid 1 of its own pid namespace, chrooted.
  const ProcInfo info = proc_info(pid);
  CHECK(info.uid == b.uid_base);
  CHECK(info.nspid.size() > 2);
  CHECK(info.nspid.substr(info.nspid.size() - 2) == "\t1");
  CHECK(fs::equivalent("/proc/" + std::to_string(pid) + "/root", root));
  // The pid file the jailer wrote; the device nodes it made, owned by the jail's user; the
  // exec file it copied in.
  std::ifstream pidfile(root / "fake_firecracker.py.pid");
  int written = 0;
  CHECK((pidfile >> written && written == pid));
  for (const char* dev : {"dev/kvm", "dev/net/tun"}) {
    struct stat st {};
    REQUIRE(::stat((root / dev).c_str(), &st) == 0);
    CHECK(S_ISCHR(st.st_mode));
    CHECK(st.st_uid == b.uid_base);
  }
  CHECK(fs::is_regular_file(root / "fake_firecracker.py"));
  // The cgroups the --cgroup limits named, with the limits, holding Firecracker.
  const auto cgroups = b.cgroup_dirs(jail.filename().string());
  REQUIRE_FALSE(cgroups.empty());
  for (const auto& dir : cgroups) {
    CHECK_MESSAGE(fs::is_directory(dir), dir);
    CHECK(paddock::test::read_file(dir + "/cgroup.procs").find(std::to_string(pid)) !=
          std::string::npos);
  }
  if (b.cgroup_version == 1) {
    CHECK(paddock::test::read_file(cgroups[1] + "/memory.limit_in_bytes") ==
          std::to_string((256ull + 128) << 20) + "\n");
    CHECK(paddock::test::read_file(cgroups[0] + "/cpu.cfs_quota_us") == "250000\n");
  }
  // The agent answers over the hybrid vsock in the chroot.
  CHECK(p.ping("vm1", 5s));
  ExecRequest req;
  req.argv = {"/bin/echo", "hello from the jail"};
  auto ran = p.exec("vm1", req, std::stop_token{});
  REQUIRE_MESSAGE(ran, (ran ? "" : ran.error().message()));
  CHECK(ran.value().stdout_data == "hello from the jail\n");
  REQUIRE(p.stop("vm1"));
  auto snap = p.snapshot("vm1", "s1");
  REQUIRE_MESSAGE(snap, (snap ? "" : snap.error().message()));
  CHECK_FALSE(fs::exists(root / "snapshot.state"));  // moved into the store
  REQUIRE(p.resume("vm1"));
  // The image files were hard-linked in, not chowned to the jail's user.
  struct stat kernel {};
  REQUIRE(::stat((b.dir / "image" / "vmlinux").c_str(), &kernel) == 0);
  CHECK(kernel.st_uid == 0);
  CHECK(kernel.st_nlink == 2);
  REQUIRE(p.destroy("vm1"));
  CHECK_FALSE(running(pid));
  CHECK_FALSE(fs::exists(root / "metrics.fifo"));
  CHECK_FALSE(fs::exists(jail));
  for (const auto& dir : cgroups) CHECK_FALSE_MESSAGE(fs::exists(dir), dir);
  CHECK(b.sequence_conforms());
}

TEST_CASE("firecracker jailed: a clone restored through the jailer and destroyed leaves nothing") {
  if (skip_unless_root()) return;
  JailedBackend b;
  Provider& p = *b.provider;
  REQUIRE(p.create("tmpl", VmSpec{"default", 1, 128}));
  auto started = p.start("tmpl");
  REQUIRE_MESSAGE(started, (started ? "" : started.error().message()));
  REQUIRE(p.stop("tmpl"));
  REQUIRE(p.snapshot("tmpl", "warm"));
  REQUIRE(p.destroy("tmpl"));
  auto restored = p.restore("tmpl", "warm", "clone1");
  REQUIRE_MESSAGE(restored, (restored ? "" : restored.error().message()));
  const int pid = b.provider->vmm_pid("clone1");
  const fs::path jail = b.provider->jail_dir("clone1");
  REQUIRE(running(pid));
  // The snapshot's files are linked in and stay root's and read-only.
  const fs::path state = b.dir / "snapshots" / "tmpl" / "warm" / "state";
  struct stat st {};
  REQUIRE(::stat(state.c_str(), &st) == 0);
  CHECK(st.st_uid == 0);
  CHECK(st.st_nlink == 2);
  CHECK((st.st_mode & 0222) == 0);
  // The agent in its host test mode applies no refresh: the clone stays paused (as unjailed).
  auto resumed = p.resume("clone1");
  REQUIRE_FALSE(resumed);
  CHECK(resumed.error().detail().find("applied nothing") != std::string::npos);
  const auto cgroups = b.cgroup_dirs(jail.filename().string());
  REQUIRE(p.destroy("clone1"));
  CHECK_FALSE(running(pid));
  CHECK_FALSE(fs::exists(jail));
  for (const auto& dir : cgroups) CHECK_FALSE_MESSAGE(fs::exists(dir), dir);
  REQUIRE(::stat(state.c_str(), &st) == 0);
  CHECK(st.st_nlink == 1);
  CHECK(b.sequence_conforms());
}

TEST_CASE(
    "firecracker jailed: an image file the jail could not read is refused before the jailer runs") {
  if (skip_unless_root()) return;
  JailedBackend b;
  // A file the jailed Firecracker could not read: refused before the jailer runs.
  REQUIRE(::chmod((b.dir / "image" / "vmlinux").c_str(), 0600) == 0);
  REQUIRE(b.provider->create("vm1", VmSpec{}));
  auto st = b.provider->start("vm1");
  REQUIRE_FALSE(st);
  CHECK(st.error().variant() == Variant::kJailer);
  CHECK(st.error().detail().find("not readable by others") != std::string::npos);
  CHECK(fs::is_empty(b.dir / "jail" / "fake_firecracker.py"));
  CHECK(b.provider->get("vm1").value().state == VmState::kCreated);
}

TEST_CASE("firecracker jailed: the startup sweep removes the jails of a crashed provider") {
  if (skip_unless_root()) return;
  auto b = std::make_unique<JailedBackend>();
  b->provider.reset();  // one provider per snapshot directory: the child's
  // A provider in a child process starts a VM and dies without cleaning up: Firecracker, in its
  // own pid namespace, outlives it (the jailer that had PDEATHSIG exited long before).
  int fds[2];
  REQUIRE(::pipe(fds) == 0);
  const pid_t child = ::fork();
  REQUIRE(child >= 0);
  if (child == 0) {
    ::close(fds[0]);
    auto opened = FirecrackerProvider::open(b->config);
    int out[2] = {-1, -1};
    if (opened && opened.value()->create("lost", VmSpec{}) && opened.value()->start("lost")) {
      out[0] = opened.value()->vmm_pid("lost");
    }
    (void)!::write(fds[1], out, sizeof out);
    ::_exit(0);  // no destructors: a crash
  }
  ::close(fds[1]);
  int got[2] = {-1, -1};
  REQUIRE(::read(fds[0], got, sizeof got) == static_cast<ssize_t>(sizeof got));
  ::close(fds[0]);
  ::waitpid(child, nullptr, 0);
  const int lost = got[0];
  REQUIRE_MESSAGE(lost > 0, "the child provider could not start its VM");
  CHECK(running(lost));
  const fs::path exec_dir = b->dir / "jail" / "fake_firecracker.py";
  REQUIRE(std::distance(fs::directory_iterator(exec_dir), fs::directory_iterator{}) == 1);
  const std::string lost_id = fs::directory_iterator(exec_dir)->path().filename().string();
  const auto cgroups = b->cgroup_dirs(lost_id);
  for (const auto& dir : cgroups) CHECK(fs::exists(dir));
  // Another worker's jail beside it is not this provider's to sweep.
  fs::create_directories(exec_dir / "pfdeadbeef-1-0" / "root");
  b->reopen();  // a new provider on the same run directory sweeps at open
  CHECK_FALSE(running(lost));
  CHECK_FALSE(fs::exists(exec_dir / lost_id));
  for (const auto& dir : cgroups) CHECK_FALSE_MESSAGE(fs::exists(dir), dir);
  CHECK(fs::exists(exec_dir / "pfdeadbeef-1-0" / "root"));
  fs::remove_all(exec_dir / "pfdeadbeef-1-0");
}

TEST_CASE("fake jailer: refuses what the real jailer refuses and a chroot with device nodes") {
  if (skip_unless_root()) return;
  const auto dir = paddock::test::fresh_temp_dir("fjail-");
  const std::string base = (dir / "base").string();
  const std::string good = std::string("--id vm-1 --exec-file ") + PADDOCK_FAKE_FIRECRACKER +
                           " --uid 1100000 --gid 1100000 --chroot-base-dir " + base;
  auto fails_with = [](const std::string& args, const std::string& expected) {
    const auto out = paddock::test::run_capture(std::string(PADDOCK_FAKE_JAILER) + " " + args);
    CHECK_MESSAGE(out.status == 1, args);
    CHECK_MESSAGE(out.output.find(expected) != std::string::npos, out.output);
  };
  fails_with(good + " --numa-node 0", "unknown");
  fails_with(good + " --uid 5", "given twice");
  fails_with("--exec-file " + std::string(PADDOCK_FAKE_FIRECRACKER) + " --uid 1 --gid 1",
             "--id: required");
  fails_with(good + " --cgroup memory.max", "not <cgroup_file>=<value>");
  fails_with(good + " --resource-limit cpu=1", "not fsize=N or no-file=N");
  fails_with(good + " --netns /run/netns/no-such-namespace-here", "no such namespace");
  fails_with(std::string("--id vm_1 --exec-file ") + PADDOCK_FAKE_FIRECRACKER + " --uid 1 --gid 1",
             "not 1-64 alphanumerics and hyphens");
  fails_with("--id vm-1 --exec-file /bin/true --uid 1 --gid 1", "must include 'firecracker'");
  // A chroot with a device node already in it (the real jailer's mknod would fail).
  const fs::path root = dir / "base" / "fake_firecracker.py" / "vm-1" / "root";
  fs::create_directories(root / "dev");
  REQUIRE(::chown(root.c_str(), 1100000, 1100000) == 0);
  fails_with(good + " --new-pid-ns", "must not exist before it runs");
  fs::remove_all(dir);
}

TEST_CASE(
    "firecracker jailed: a jailer that fails is a Jailer error with its message and leaves "
    "nothing") {
  if (skip_unless_root()) return;
  JailedBackend b;
  // A stand-in jailer that refuses, as the real one does on a bad chroot or flag.
  const fs::path failing = b.dir / "failing-jailer";
  {
    std::ofstream script(failing);
    script << "#!/bin/sh\necho 'jailer: Failed to do something for a test' >&2\nexit 3\n";
  }
  fs::permissions(failing, fs::perms::owner_all);
  b.config.jail->jailer_binary = failing.string();
  b.reopen();
  REQUIRE(b.provider->create("vm1", VmSpec{}));
  auto st = b.provider->start("vm1");
  REQUIRE_FALSE(st);
  CHECK(st.error().variant() == Variant::kJailer);
  CHECK(st.error().detail().find("the jailer failed (exit 3)") != std::string::npos);
  CHECK(st.error().detail().find("Failed to do something for a test") != std::string::npos);
  CHECK(fs::is_empty(b.dir / "jail" / "fake_firecracker.py"));
  CHECK(b.provider->get("vm1").value().state == VmState::kCreated);
}
