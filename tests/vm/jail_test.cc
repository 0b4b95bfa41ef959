// The jail around every QEMU (paddock-jailer), checked from the host's side on real microVMs:
// the VMM's uid and gid, its root, its namespaces, its cgroup limits, its seccomp mode; the
// Jailer errors; a VMM over its memory limit; a fork bomb in a guest; what teardown and the
// startup sweep leave.
#include <doctest/doctest.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <boost/process.hpp>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <thread>

#include "paddock/runtime/jailer.h"
#include "paddock/runtime/qemu_provider.h"
#include "vm_fixture.h"

using namespace paddock;
using namespace paddock::runtime;
namespace fs = std::filesystem;
namespace bp = boost::process;
using namespace std::chrono_literals;

namespace {

struct Dirs {
  std::string run = "/run/paddock-test-jail-" + std::to_string(::getpid());
  std::string snapshots = "/run/paddock-test-jailsnap-" + std::to_string(::getpid());
  ~Dirs() {
    std::error_code ec;
    fs::remove_all(run, ec);
    fs::remove_all(snapshots, ec);
  }
  QemuConfig config() const {
    QemuConfig c = testing::test_qemu_config(run);
    c.snapshot_dir = snapshots;
    c.jail->cgroup_parent = "paddock-test/" + std::to_string(::getpid());
    return c;
  }
};

std::unique_ptr<QemuProvider> open_provider(const QemuConfig& c) {
  auto opened = QemuProvider::open(c);
  REQUIRE_MESSAGE(opened, (opened ? "" : opened.error().message()));
  return std::move(opened.value());
}

std::string read_all(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

std::string trimmed(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  return s;
}

// The value of one "Name:\tvalue" line of /proc/<pid>/status, tabs kept.
std::string status_field(int pid, const std::string& name) {
  std::istringstream in(read_all("/proc/" + std::to_string(pid) + "/status"));
  for (std::string line; std::getline(in, line);) {
    if (line.rfind(name + ":", 0) == 0) {
      std::string v = line.substr(name.size() + 1);
      while (!v.empty() && (v.front() == '\t' || v.front() == ' ')) v.erase(v.begin());
      return v;
    }
  }
  return "<no " + name + ">";
}

std::string ns_of(const std::string& pid, const std::string& ns) {
  std::error_code ec;
  return fs::read_symlink("/proc/" + pid + "/ns/" + ns, ec).string();
}

std::set<std::string> entries(const std::string& dir) {
  std::set<std::string> out;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec)) out.insert(e.path().filename().string());
  return out;
}

// "Max open files  1024  1024  files" -> "1024 1024"
std::string limit_of(int pid, const std::string& name) {
  std::istringstream in(read_all("/proc/" + std::to_string(pid) + "/limits"));
  for (std::string line; std::getline(in, line);) {
    if (line.rfind(name, 0) == 0) {
      std::istringstream f(line.substr(name.size()));
      std::string soft, hard;
      f >> soft >> hard;
      return soft + " " + hard;
    }
  }
  return "<no " + name + ">";
}

int version() { return jail::cgroup_version().value_or(0); }

// A limit file of the jail's cgroup, by its v1 and v2 names.
std::string cgroup_value(const jail::JailSpec& js, const std::string& v1_controller,
                         const std::string& v1_file, const std::string& v2_file) {
  const auto dirs = jail::cgroup_dirs(js, version());
  if (version() == 2) return trimmed(read_all(dirs.front() + "/" + v2_file));
  for (const auto& d : dirs) {
    if (d.find("/" + v1_controller + "/") != std::string::npos) {
      return trimmed(read_all(d + "/" + v1_file));
    }
  }
  return "<no " + v1_controller + ">";
}

void check_jail_gone(const jail::JailSpec& js) {
  CHECK_MESSAGE(!fs::exists(jail::jail_dir(js)), jail::jail_dir(js));
  for (const auto& d : jail::cgroup_dirs(js, version())) CHECK_MESSAGE(!fs::exists(d), d);
}

// Everything the issue asks of a jailed VMM, checked on a live one.
void check_jailed(QemuProvider& p, const std::string& vm, uint32_t mem_mib, const Dirs& d) {
  const int pid = p.vmm_pid(vm);
  REQUIRE(pid > 0);
  const auto js_opt = p.jail_of(vm);
  REQUIRE(js_opt.has_value());
  const jail::JailSpec& js = *js_opt;
  const std::string u = std::to_string(js.uid), g = std::to_string(js.gid);
  INFO("vm " << vm << ", QEMU pid " << pid << ", jail " << js.id << ", uid " << u);
  CHECK(js.uid != 0);
  CHECK(status_field(pid, "Uid") == u + "\t" + u + "\t" + u + "\t" + u);
  CHECK(status_field(pid, "Gid") == g + "\t" + g + "\t" + g + "\t" + g);
  CHECK(status_field(pid, "Groups") == "");
  CHECK(status_field(pid, "Seccomp") == "2");
  CHECK(status_field(pid, "NoNewPrivs") == "1");
  // pid 1 of its own pid namespace
  const std::string nspid = status_field(pid, "NSpid");
  CHECK(nspid.size() > 2);
  CHECK(nspid.substr(nspid.size() - 2) == "\t1");
  for (const char* ns : {"pid", "mnt", "ipc", "uts", "net"}) {
    CHECK_MESSAGE(ns_of(std::to_string(pid), ns) != ns_of("self", ns), ns);
  }
  // Its root is the chroot, and the chroot holds only what QEMU needs.
  struct stat root_st {
  }, chroot_st{};
  REQUIRE(::stat(("/proc/" + std::to_string(pid) + "/root").c_str(), &root_st) == 0);
  REQUIRE(::stat(jail::jail_root(js).c_str(), &chroot_st) == 0);
  CHECK(root_st.st_ino == chroot_st.st_ino);
  CHECK(root_st.st_dev == chroot_st.st_dev);
  CHECK(chroot_st.st_uid == js.uid);
  const auto inside = entries("/proc/" + std::to_string(pid) + "/root");
  for (const char* must : {"vmlinuz", "initrd", "dev", "usr", "agent.sock", "qmp.sock"}) {
    CHECK_MESSAGE(inside.count(must) == 1, must);
  }
  for (const char* never : {"proc", "sys", "home", "root", "tmp", "var", "run", "boot"}) {
    CHECK_MESSAGE(inside.count(never) == 0, never);
  }
  // Of the host's /etc only the loader's cache, read-only.
  if (inside.count("etc") == 1) {
    CHECK(entries("/proc/" + std::to_string(pid) + "/root/etc") ==
          std::set<std::string>{"ld.so.cache"});
  }
  CHECK(entries("/proc/" + std::to_string(pid) + "/root/dev") ==
        std::set<std::string>{"null", "zero", "random", "urandom"});
  // The kernel is a hard link of the image's, root's and read-only to the VMM.
  struct stat k_in {
  }, k_img{};
  REQUIRE(::stat((jail::jail_root(js) + "/vmlinuz").c_str(), &k_in) == 0);
  REQUIRE(::stat((testing::guest_image_dir() + "/vmlinuz").c_str(), &k_img) == 0);
  if (k_in.st_dev == k_img.st_dev) CHECK(k_in.st_ino == k_img.st_ino);
  CHECK(k_in.st_uid == 0);
  CHECK((k_in.st_mode & (S_IWGRP | S_IWOTH)) == 0);
  CHECK(read_all("/proc/" + std::to_string(pid) + "/environ").empty());
  CHECK(limit_of(pid, "Max open files") == "1024 1024");
  CHECK(limit_of(pid, "Max core file size") == "0 0");
  // Its cgroups carry the limits.
  const std::string cg = read_all("/proc/" + std::to_string(pid) + "/cgroup");
  CHECK_MESSAGE(cg.find(js.cgroup_parent + "/" + js.id) != std::string::npos, cg);
  const uint64_t mem_limit = (uint64_t{mem_mib} + JailConfig{}.vmm_allowance_mib) << 20;
  CHECK(cgroup_value(js, "memory", "memory.limit_in_bytes", "memory.max") ==
        std::to_string(mem_limit));
  CHECK(cgroup_value(js, "pids", "pids.max", "pids.max") == std::to_string(JailConfig{}.pids_max));
  CHECK(cgroup_value(js, "cpu", "cpu.cfs_quota_us", "cpu.max").rfind("150000", 0) == 0);
  (void)d;
}

ExecRequest shell(const std::string& script, uint32_t timeout_ms = 20'000) {
  ExecRequest r;
  r.argv = {"/bin/sh", "-c", script};
  r.timeout_ms = timeout_ms;
  return r;
}

}  // namespace

TEST_CASE(
    "qemu jail: booted VMs and clones run as their own uid in the chroot, in their own namespaces, "
    "under cgroup limits and seccomp") {
  if (!testing::vm_tests_can_run()) return;
  Dirs d;
  auto p = open_provider(d.config());
  REQUIRE(p->create("j-boot", VmSpec{"default", 1, 256}).ok());
  auto started = p->start("j-boot");
  REQUIRE_MESSAGE(started.ok(), (started.ok() ? "" : started.error().message()));
  check_jailed(*p, "j-boot", 256, d);
  const auto boot_jail = *p->jail_of("j-boot");
  {
    INFO("the jailed VM runs jobs");
    auto x = p->exec("j-boot", shell("echo $((6*7))"), {});
    REQUIRE_MESSAGE(x, (x ? "" : x.error().message()));
    CHECK(x.value().stdout_data == "42\n");
  }
  // A snapshot of a jailed VM, and a clone of it: jailed too, with another uid, and the
  // snapshot's files linked in are root's and read-only to it.
  auto snap = p->snapshot("j-boot", "t");
  REQUIRE_MESSAGE(snap, (snap ? "" : snap.error().message()));
  REQUIRE(p->destroy("j-boot").ok());
  check_jail_gone(boot_jail);
  REQUIRE(p->restore("j-boot", "t", "j-clone").ok());
  REQUIRE(p->resume("j-clone").ok());
  check_jailed(*p, "j-clone", 256, d);
  const auto clone_jail = *p->jail_of("j-clone");
  CHECK(clone_jail.uid != boot_jail.uid);
  for (const char* f : {"memory", "state"}) {
    struct stat st {};
    REQUIRE(::stat((jail::jail_root(clone_jail) + "/" + f).c_str(), &st) == 0);
    CHECK_MESSAGE(st.st_uid == 0, f);
    CHECK_MESSAGE((st.st_mode & (S_IWGRP | S_IWOTH)) == 0, f);
    CHECK_MESSAGE(st.st_nlink >= 2, f);  // the snapshot's own file, not a copy
  }
  {
    INFO("the jailed clone runs jobs");
    auto x = p->exec("j-clone", shell("echo clone"), {});
    REQUIRE_MESSAGE(x, (x ? "" : x.error().message()));
    CHECK(x.value().stdout_data == "clone\n");
  }
  REQUIRE(p->destroy("j-clone").ok());
  check_jail_gone(clone_jail);
  CHECK(p->delete_snapshot("j-boot", "t").ok());
  CHECK(testing::nothing_left_in(d.run));
}

TEST_CASE(
    "qemu jail: a bad id, a missing input file and a cgroup failure are Jailer errors naming the "
    "step, the path and the OS error") {
  if (!testing::vm_tests_can_run()) return;
  Dirs d;
  {
    INFO("a bad id is refused before anything runs");
    jail::JailSpec js;
    js.id = "../etc";
    js.exec_file = "/usr/bin/qemu-system-x86_64";
    js.chroot_base = d.run;
    js.uid = js.gid = 4242;
    auto argv = jail::paddock_jailer_argv("/bin/paddock-jailer", js);
    REQUIRE_FALSE(argv);
    CHECK(argv.error().variant() == Variant::kJailer);
    CHECK(argv.error().message().find("jail id '../etc'") != std::string::npos);
    // The binary itself refuses it too (its arguments are parsed and validated first).
    bp::ipstream err;
    bp::child c(jail::default_jailer_binary(), "--id", "../etc", "--exec-file",
                "/usr/bin/qemu-system-x86_64", "--uid", "4242", "--gid", "4242",
                "--chroot-base-dir", d.run, "--", "-version", bp::std_err > err,
                bp::std_out > bp::null);
    std::string line;
    std::getline(err, line);
    c.wait();
    CHECK(c.exit_code() == 64);
    CHECK_MESSAGE(line.find("jail id '../etc'") != std::string::npos, line);
    CHECK_FALSE(fs::exists(d.run + "/qemu/../etc"));
  }
  {
    INFO("a missing input file: the image's initramfs vanishes after the provider opened");
    const std::string image = d.run + "-image";
    fs::create_directories(image);
    for (const auto& e : fs::directory_iterator(testing::guest_image_dir())) {
      if (e.is_regular_file()) fs::copy_file(e.path(), image / e.path().filename());
    }
    QemuConfig c = d.config();
    c.image_dir = image;
    auto p = open_provider(c);
    for (const auto& e : fs::directory_iterator(image)) {
      if (e.path().filename().string().rfind("initramfs", 0) == 0) fs::remove(e.path());
    }
    REQUIRE(p->create("j-missing", VmSpec{"default", 1, 128}).ok());
    auto st = p->start("j-missing");
    REQUIRE_FALSE(st.ok());
    CHECK(st.error().variant() == Variant::kJailer);
    CHECK(st.error().code() == 11);
    const std::string m = st.error().message();
    CHECK_MESSAGE(m.find("step chroot") != std::string::npos, m);
    CHECK_MESSAGE(m.find(image + "/initramfs") != std::string::npos, m);
    CHECK_MESSAGE(m.find("No such file or directory") != std::string::npos, m);
    CHECK(testing::nothing_left_in(d.run));
    p.reset();
    fs::remove_all(image);
  }
  {
    INFO("a cgroup that cannot be made: its parent path runs through a file");
    QemuConfig c = d.config();
    c.jail->cgroup_parent = "cgroup.procs/paddock-test";
    auto p = open_provider(c);
    REQUIRE(p->create("j-cgroup", VmSpec{"default", 1, 128}).ok());
    auto st = p->start("j-cgroup");
    REQUIRE_FALSE(st.ok());
    CHECK(st.error().variant() == Variant::kJailer);
    const std::string m = st.error().message();
    CHECK_MESSAGE(m.find("step cgroup") != std::string::npos, m);
    CHECK_MESSAGE(m.find("cgroup.procs/paddock-test") != std::string::npos, m);
    CHECK_MESSAGE(m.find("Not a directory") != std::string::npos, m);
    CHECK(testing::nothing_left_in(d.run));
  }
}

TEST_CASE(
    "qemu jail: a VMM over its memory limit is killed and its job gets an error that says so, "
    "never a hang") {
  if (!testing::vm_tests_can_run()) return;
  Dirs d;
  // The guest's RAM file on a tmpfs, as a worker keeps it: on a disk its pages would be written
  // back and reclaimed instead of counting against the limit.
  d.run = "/dev/shm/paddock-test-jail-" + std::to_string(::getpid());
  QemuConfig c = d.config();
  c.jail->vmm_allowance_mib = 16;  // too little for QEMU's own memory once the guest's is used
  auto p = open_provider(c);
  REQUIRE(p->create("j-oom", VmSpec{"default", 1, 256}).ok());
  auto started = p->start("j-oom");
  REQUIRE_MESSAGE(started.ok(), (started.ok() ? "" : started.error().message()));
  const auto js = *p->jail_of("j-oom");
  // The guest fills its own RAM (a file in its RAM-backed root, capped at half its RAM, then a
  // shell variable): QEMU's pages reach the limit before the guest runs out.
  const auto t0 = std::chrono::steady_clock::now();
  auto x = p->exec("j-oom",
                   shell("dd if=/dev/zero of=/fill bs=1M count=110 2>&1; "
                         "x=$(head -c 200000000 /dev/zero | tr '\\0' a); echo filled",
                         60'000),
                   {});
  const auto took = std::chrono::steady_clock::now() - t0;
  MESSAGE(
      "the job ended after " << std::chrono::duration_cast<std::chrono::milliseconds>(took).count()
                             << " ms");
  REQUIRE_FALSE_MESSAGE(x, (x ? "the job finished: " + x.value().stdout_data : ""));
  const std::string m = x.error().message();
  CHECK_MESSAGE(m.find("killed by signal 9") != std::string::npos, m);
  CHECK_MESSAGE(m.find("memory limit") != std::string::npos, m);
  CHECK(p->destroy("j-oom").ok());
  check_jail_gone(js);
  CHECK(testing::nothing_left_in(d.run));
}

TEST_CASE("qemu jail: a fork bomb in the guest stays in the guest") {
  if (!testing::vm_tests_can_run()) return;
  Dirs d;
  auto p = open_provider(d.config());
  REQUIRE(p->create("j-bomb", VmSpec{"default", 1, 128}).ok());
  auto started = p->start("j-bomb");
  REQUIRE_MESSAGE(started.ok(), (started.ok() ? "" : started.error().message()));
  const auto js = *p->jail_of("j-bomb");
  const std::string before = cgroup_value(js, "pids", "pids.current", "pids.current");
  std::atomic<bool> done{false};
  uint64_t most = 0;
  std::thread watch([&] {
    while (!done) {
      most = std::max<uint64_t>(
          most, std::stoull("0" + cgroup_value(js, "pids", "pids.current", "pids.current")));
      std::this_thread::sleep_for(50ms);
    }
  });
  auto x = p->exec("j-bomb", shell("b(){ b | b & }; b", 3'000), {});
  done = true;
  watch.join();
  MESSAGE("host tasks in the VMM's cgroup: " << before << " before, at most " << most
                                             << " during the bomb");
  // The job ends (a timeout, a failure to fork, or the agent reports it could not finish).
  if (x) {
    MESSAGE("the bomb's result: exit " << x.value().exit_code << ", signal " << x.value().signal
                                       << ", timed out " << x.value().timed_out << ", stderr "
                                       << x.value().stderr_data.substr(0, 200));
  } else {
    MESSAGE("the bomb's error: " << x.error().message().substr(0, 300));
  }
  // The host sees QEMU's threads only: the guest's processes are not host processes.
  CHECK(most <= JailConfig{}.pids_max);
  CHECK(most <= std::stoull(before) + 8);
  CHECK(p->destroy("j-bomb").ok());
  check_jail_gone(js);
}

TEST_CASE(
    "qemu jail: the startup sweep removes a jail a crash left, with its process, chroot and "
    "cgroups") {
  if (!testing::vm_tests_can_run()) return;
  Dirs d;
  const QemuConfig c = d.config();
  jail::JailSpec js;
  js.id = "crashed-1";
  js.exec_file = "/usr/bin/sleep";
  js.chroot_base = d.run;
  js.uid = js.gid = 4243;
  js.cgroup_parent = c.jail->cgroup_parent;
  js.pids_max = 16;
  js.args = {"600"};
  auto argv = jail::paddock_jailer_argv(jail::default_jailer_binary(), js);
  REQUIRE(argv);
  // A jailed process whose worker died without tearing it down.
  bp::child left(argv.value().front(),
                 bp::args(std::vector<std::string>(argv.value().begin() + 1, argv.value().end())));
  const std::string procs = jail::cgroup_dirs(js, version()).back() + "/cgroup.procs";
  for (int i = 0; i < 200 && trimmed(read_all(procs)).find('\n') == std::string::npos; ++i) {
    std::this_thread::sleep_for(10ms);  // the jailer and its child
  }
  REQUIRE(fs::exists(jail::jail_root(js)));
  REQUIRE(trimmed(read_all(procs)).find('\n') != std::string::npos);
  auto p = open_provider(c);
  left.wait();  // killed by the sweep
  CHECK_FALSE(left.running());
  check_jail_gone(js);
  CHECK(testing::nothing_left_in(d.run));
}
