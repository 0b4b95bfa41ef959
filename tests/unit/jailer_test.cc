// The Firecracker jailer command (argv for argv, as the reference runtime builds it), the
// detection of the host's cgroup version, and paddock-jailer: its spec's validation, its command
// line both ways, the cgroup paths, and the steps that only touch files (make_cgroup,
// make_chroot, teardown, sweep, oom_kills), run against temp directories. Nothing here touches the
// host's cgroups: every such spec's cgroup_root is a temp directory (or a path that does not
// exist), and no step that changes this process (namespaces, root, credentials) is called.
#include <doctest/doctest.h>
#include <fcntl.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <set>
#include <sstream>

#include "jail/steps.h"
#include "paddock/runtime/jailer.h"

using namespace paddock::runtime;
using namespace paddock::runtime::jail;

namespace {

FirecrackerJailerSpec spec() {
  FirecrackerJailerSpec s;
  s.jailer_binary = "/usr/bin/jailer";
  s.id = "job-42_a";
  s.exec_file = "/usr/bin/firecracker";
  s.uid = 10042;
  s.gid = 10042;
  s.chroot_base_dir = "/srv/jailer";
  s.cgroup_version = 1;
  s.parent_cgroup = "paddock";
  return s;
}

}  // namespace

TEST_CASE("firecracker jailer argv: exactly the reference runtime's, argument for argument") {
  auto argv = firecracker_jailer_argv(spec());
  REQUIRE(argv.ok());
  CHECK(argv.value() ==
        std::vector<std::string>{
            "/usr/bin/jailer", "--id", "job-42_a", "--exec-file", "/usr/bin/firecracker", "--uid",
            "10042", "--gid", "10042", "--chroot-base-dir", "/srv/jailer", "--cgroup-version", "1",
            "--parent-cgroup", "paddock", "--new-pid-ns", "--", "--api-sock", "/api.sock"});
}

TEST_CASE(
    "firecracker jailer: a NUMA node is two cpuset values read from sysfs and never a flag the "
    "jailer lacks") {
  char tmpl[] = "/tmp/paddock-numa-XXXXXX";
  REQUIRE(::mkdtemp(tmpl) != nullptr);
  const std::filesystem::path dir = tmpl;
  std::filesystem::create_directories(dir / "node1");
  std::ofstream(dir / "node1" / "cpulist") << "8-15,24-31\n";
  std::filesystem::create_directories(dir / "node2");
  std::ofstream(dir / "node2" / "cpulist") << "\n";  // a memory-only node
  auto cg = numa_node_cgroups(1, dir.string());
  REQUIRE(cg.ok());
  CHECK(cg.value() == std::vector<std::string>{"cpuset.mems=1", "cpuset.cpus=8-15,24-31"});
  auto s = spec();
  s.cgroup_version = 2;
  s.cgroups = cg.value();
  auto argv = firecracker_jailer_argv(s);
  REQUIRE(argv.ok());
  for (const auto& a : argv.value()) CHECK(a.find("numa") == std::string::npos);
  const std::vector<std::string> want = {"--cgroup", "cpuset.mems=1", "--cgroup",
                                         "cpuset.cpus=8-15,24-31"};
  CHECK(std::search(argv.value().begin(), argv.value().end(), want.begin(), want.end()) !=
        argv.value().end());
  auto missing = numa_node_cgroups(7, dir.string());
  REQUIRE_FALSE(missing.ok());
  CHECK(missing.error().name() == "Jailer");
  CHECK(missing.error().message().find("node7/cpulist") != std::string::npos);
  auto empty = numa_node_cgroups(2, dir.string());
  REQUIRE_FALSE(empty.ok());
  CHECK(empty.error().message().find("lists no CPU") != std::string::npos);
  // This host's node 0, where sysfs has one: its CPUs.
  if (std::filesystem::exists("/sys/devices/system/node/node0/cpulist")) {
    auto host = numa_node_cgroups(0);
    REQUIRE(host.ok());
    CHECK(host.value().at(0) == "cpuset.mems=0");
  }
  std::filesystem::remove_all(dir);
}

TEST_CASE(
    "firecracker jailer argv: cgroup values resource limits and the netns before --new-pid-ns") {
  auto s = spec();
  s.cgroups = {"memory.limit_in_bytes=402653184", "pids.max=128"};
  s.resource_limits = {"fsize=201326592", "no-file=1024"};
  s.netns = "/run/netns/pdk-vm3";
  auto argv = firecracker_jailer_argv(s);
  REQUIRE(argv.ok());
  const std::vector<std::string> tail = {
      "--parent-cgroup",  "paddock",      "--cgroup",         "memory.limit_in_bytes=402653184",
      "--cgroup",         "pids.max=128", "--resource-limit", "fsize=201326592",
      "--resource-limit", "no-file=1024", "--netns",          "/run/netns/pdk-vm3",
      "--new-pid-ns",     "--",           "--api-sock",       "/api.sock"};
  REQUIRE(argv.value().size() > tail.size());
  CHECK(std::vector<std::string>(argv.value().end() - static_cast<std::ptrdiff_t>(tail.size()),
                                 argv.value().end()) == tail);
  // A value with a space is one argument (cgroup v2's cpu.max is "quota period").
  s.cgroups = {"cpu.max=150000 100000"};
  CHECK(firecracker_jailer_argv(s).ok());
  for (const char* bad : {"memory.max", "=5", "pids.max=", "a=b\nc"}) {
    s.cgroups = {bad};
    auto r = firecracker_jailer_argv(s);
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().message().find("not <name>=<value>") != std::string::npos);
  }
  s.cgroups = {};
  s.resource_limits = {"fsize"};
  CHECK_FALSE(firecracker_jailer_argv(s).ok());
  s.resource_limits = {};
  s.netns = "run/netns/x";
  auto r = firecracker_jailer_argv(s);
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().message().find("network namespace 'run/netns/x': not an absolute path") !=
        std::string::npos);
}

TEST_CASE("firecracker jailer argv: bad ids and paths are Jailer errors naming the value") {
  auto refused = [](FirecrackerJailerSpec s, const std::string& names) {
    auto r = firecracker_jailer_argv(s);
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().variant() == Variant::kJailer);
    CHECK_MESSAGE(r.error().message().find(names) != std::string::npos, r.error().message());
  };
  auto s = spec();
  s.id = "";
  refused(s, "jailer id: empty");
  s.id = "a/b";
  refused(s, "'a/b'");
  s.id = std::string(65, 'a');
  refused(s, "not 1-64");
  s = spec();
  s.exec_file = "firecracker";
  refused(s, "exec file 'firecracker': not an absolute path");
  s = spec();
  s.chroot_base_dir = "srv";
  refused(s, "chroot base dir 'srv'");
  s = spec();
  s.cgroup_version = 3;
  refused(s, "cgroup version 3");
  s = spec();
  s.parent_cgroup = "../escape";
  refused(s, "parent cgroup '../escape'");
  s.parent_cgroup = "/abs";
  refused(s, "parent cgroup '/abs'");
  s = spec();
  s.api_sock = "api.sock";
  refused(s, "api socket 'api.sock'");
}

TEST_CASE("jail ids: 1-64 of [A-Za-z0-9_-]") {
  CHECK(valid_jail_id("vm-1_A"));
  CHECK(valid_jail_id(std::string(64, 'x')));
  CHECK_FALSE(valid_jail_id(""));
  CHECK_FALSE(valid_jail_id(std::string(65, 'x')));
  CHECK_FALSE(valid_jail_id("vm.1"));
  CHECK_FALSE(valid_jail_id("vm 1"));
}

TEST_CASE("cgroup version: detected from the mount, not assumed") {
  // This host's, whatever it is: v1 here (DESIGN.md §6), v2 on most current distributions.
  auto here = cgroup_version();
  REQUIRE(here.has_value());
  CHECK((*here == 1 || *here == 2));
  MESSAGE("this host's cgroup version: " << *here);
  // A plain directory is neither.
  CHECK_FALSE(cgroup_version(std::filesystem::temp_directory_path().string()).has_value());
  CHECK_FALSE(cgroup_version("/nonexistent/cgroup").has_value());
}

namespace {

namespace fs = std::filesystem;

// A temp directory (/tmp/paddock-test-jail-*, which the leak check watches), removed with all it
// holds.
class TempDir {
 public:
  explicit TempDir(const std::string& parent = "/tmp") {
    std::string tmpl = parent + "/paddock-test-jail-XXXXXX";
    REQUIRE(::mkdtemp(tmpl.data()) != nullptr);
    path_ = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }
  std::string operator/(const std::string& rel) const { return path_ + "/" + rel; }

 private:
  std::string path_;
};

// Empty when `r` is a Jailer error (code 11) whose message holds every part; else what is wrong.
template <typename R>
std::string jailer_error_lacking(const R& r, const std::vector<std::string>& parts) {
  if (r.ok()) return "not an error";
  const Error& e = r.error();
  std::string wrong;
  if (e.variant() != Variant::kJailer || e.code() != 11) {
    wrong += "variant " + std::string(e.name()) + " (code " + std::to_string(e.code()) + "); ";
  }
  for (const auto& p : parts) {
    if (e.message().find(p) == std::string::npos) wrong += "no \"" + p + "\"; ";
  }
  return wrong.empty() ? "" : wrong + "message: " + e.message();
}

// The file's whole content; nullopt when it cannot be opened.
std::optional<std::string> slurp(const std::string& path) {
  std::ifstream in(path);
  if (!in) return std::nullopt;
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

void put(const std::string& path, const std::string& content) {
  std::ofstream out(path, std::ios::trunc);
  out << content;
  REQUIRE(out.good());
}

// The names in a directory.
std::set<std::string> names_in(const std::string& dir) {
  std::set<std::string> names;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec)) names.insert(e.path().filename().string());
  return names;
}

// A spec validate() accepts, with every field away from its default where that is allowed. Its
// cgroup root does not exist: validate and argv never touch it.
JailSpec valid_jail() {
  JailSpec s;
  s.id = "vm-7_b";
  s.exec_file = "/usr/bin/qemu-system-x86_64";
  s.chroot_base = "/srv/paddock-test";
  s.uid = 10007;
  s.gid = 10008;
  s.cgroup_root = "/nonexistent/paddock-test-cgroup";
  s.cgroup_parent = "paddock/jobs";
  s.cgroup_version = 1;
  s.cpu_quota_us = 50'000;
  s.cpu_period_us = 100'000;
  s.memory_bytes = 512ull << 20;
  s.pids_max = 32;
  s.netns = "/run/netns/vm-7_b";
  s.files = {{"kernel", "/var/lib/paddock/vmlinux"}, {"rootfs.img", "/var/lib/paddock/rootfs"}};
  s.kvm = true;
  s.ro_binds = {"/usr", "/opt/firmware"};
  s.rlimit_nofile = 2048;
  s.rlimit_fsize = 1ull << 33;
  s.keep_fds = {3, 9};
  s.args = {"-M", "microvm"};
  return s;
}

// A spec for the file steps: everything below `tmp`, cgroup version explicit (never detected, so
// the host's cgroups are never looked at).
JailSpec file_jail(const TempDir& tmp, int version, const std::string& id = "vm-1") {
  JailSpec s;
  s.id = id;
  s.exec_file = "/usr/bin/qemu-system-x86_64";
  s.chroot_base = tmp / "base";
  s.uid = 20001;
  s.gid = 20002;
  s.cgroup_root = tmp / "cg";
  s.cgroup_parent = "paddock";
  s.cgroup_version = version;
  return s;
}

}  // namespace

TEST_CASE("paddock jail validate: a full spec and the boundary values pass") {
  CHECK(validate(valid_jail()).ok());
  auto s = valid_jail();
  s.id = std::string(64, 'v');
  s.cpu_period_us = 1000;
  s.rlimit_nofile = 16;
  s.cgroup_version = 0;
  s.keep_fds = {3};
  CHECK(validate(s).ok());
  s.cpu_period_us = 1'000'000;
  s.cgroup_version = 2;
  CHECK(validate(s).ok());
  // Without a CPU quota the period is not used, and not checked.
  s.cpu_quota_us = 0;
  s.cpu_period_us = 5;
  CHECK(validate(s).ok());
  // No netns (a new one), no files, no binds, no fds, no args.
  JailSpec minimal;
  minimal.id = "m";
  minimal.exec_file = "/usr/bin/qemu";
  minimal.chroot_base = "/srv";
  minimal.uid = 1;
  minimal.gid = 1;
  minimal.ro_binds.clear();
  CHECK(validate(minimal).ok());
}

TEST_CASE("paddock jail validate: every refusal is a Jailer error naming the field and the value") {
  struct Refusal {
    const char* what;
    std::function<void(JailSpec&)> change;
    std::vector<std::string> names;
  };
  const std::string id65(65, 'a');
  const std::vector<Refusal> refusals = {
      {"empty id", [](JailSpec& s) { s.id = ""; }, {"jail id: empty"}},
      {"id with /", [](JailSpec& s) { s.id = "a/b"; }, {"jail id 'a/b'"}},
      {"id with .", [](JailSpec& s) { s.id = "vm.1"; }, {"jail id 'vm.1'"}},
      {"65-char id", [&](JailSpec& s) { s.id = id65; }, {"jail id '" + id65 + "'", "1-64"}},
      {"relative exec file",
       [](JailSpec& s) { s.exec_file = "qemu-system-x86_64"; },
       {"exec file 'qemu-system-x86_64'", "not an absolute path"}},
      {"empty exec file", [](JailSpec& s) { s.exec_file = ""; }, {"exec file ''"}},
      {"relative chroot base",
       [](JailSpec& s) { s.chroot_base = "srv/jails"; },
       {"chroot base 'srv/jails'", "not an absolute path"}},
      {"uid 0", [](JailSpec& s) { s.uid = 0; }, {"uid 0 gid 10008", "never runs as root"}},
      {"gid 0", [](JailSpec& s) { s.gid = 0; }, {"uid 10007 gid 0", "never runs as root"}},
      {"relative cgroup root",
       [](JailSpec& s) { s.cgroup_root = "sys/fs/cgroup"; },
       {"cgroup root 'sys/fs/cgroup'"}},
      {"absolute cgroup parent",
       [](JailSpec& s) { s.cgroup_parent = "/paddock"; },
       {"cgroup parent '/paddock'"}},
      {"cgroup parent climbing",
       [](JailSpec& s) { s.cgroup_parent = "paddock/../../escape"; },
       {"cgroup parent 'paddock/../../escape'"}},
      {"cgroup parent ..", [](JailSpec& s) { s.cgroup_parent = ".."; }, {"cgroup parent '..'"}},
      {"cgroup parent with .",
       [](JailSpec& s) { s.cgroup_parent = "paddock/./jobs"; },
       {"cgroup parent 'paddock/./jobs'"}},
      {"cgroup parent .", [](JailSpec& s) { s.cgroup_parent = "."; }, {"cgroup parent '.'"}},
      {"empty cgroup parent", [](JailSpec& s) { s.cgroup_parent = ""; }, {"cgroup parent ''"}},
      {"cgroup version 3", [](JailSpec& s) { s.cgroup_version = 3; }, {"cgroup version 3"}},
      {"cgroup version -1", [](JailSpec& s) { s.cgroup_version = -1; }, {"cgroup version -1"}},
      {"cpu period below 1000 with a quota",
       [](JailSpec& s) { s.cpu_period_us = 999; },
       {"cpu period 999 us", "1000-1000000"}},
      {"cpu period above 1 s with a quota",
       [](JailSpec& s) { s.cpu_period_us = 1'000'001; },
       {"cpu period 1000001 us"}},
      {"relative netns",
       [](JailSpec& s) { s.netns = "run/netns/vm"; },
       {"network namespace 'run/netns/vm'"}},
      {"empty file name",
       [](JailSpec& s) { s.files.emplace_back("", "/x"); },
       {"file name ''", "not a plain file name"}},
      {"file name a/b",
       [](JailSpec& s) { s.files.emplace_back("a/b", "/x"); },
       {"file name 'a/b'"}},
      {"file name ..", [](JailSpec& s) { s.files.emplace_back("..", "/x"); }, {"file name '..'"}},
      {"file name .", [](JailSpec& s) { s.files.emplace_back(".", "/x"); }, {"file name '.'"}},
      {"file name dev",
       [](JailSpec& s) { s.files.emplace_back("dev", "/x"); },
       {"file name 'dev'"}},
      {"relative file source",
       [](JailSpec& s) { s.files.emplace_back("disk", "images/disk.img"); },
       {"file 'images/disk.img'", "not an absolute path"}},
      {"ro bind /", [](JailSpec& s) { s.ro_binds.push_back("/"); }, {"read-only bind '/'"}},
      {"ro bind usr", [](JailSpec& s) { s.ro_binds = {"usr"}; }, {"read-only bind 'usr'"}},
      {"ro bind /usr/../etc",
       [](JailSpec& s) { s.ro_binds = {"/usr/../etc"}; },
       {"read-only bind '/usr/../etc'"}},
      {"keep fd 2",
       [](JailSpec& s) {
         s.keep_fds = {3, 2};
       },
       {"keep fd 2", "below 3"}},
      {"keep fd -1", [](JailSpec& s) { s.keep_fds = {-1}; }, {"keep fd -1"}},
      {"nofile 8", [](JailSpec& s) { s.rlimit_nofile = 8; }, {"open files limit 8", "below 16"}},
  };
  for (const auto& r : refusals) {
    INFO("refusal: " << r.what);
    JailSpec s = valid_jail();
    r.change(s);
    std::vector<std::string> names = r.names;
    names.push_back("step validate");
    CHECK(jailer_error_lacking(validate(s), names) == "");
    // The command line is never built for a spec validate refuses.
    CHECK(jailer_error_lacking(paddock_jailer_argv("/usr/bin/paddock-jailer", s), names) == "");
  }
}

TEST_CASE("paddock jail argv: parses back to the same spec, flag-like VMM arguments included") {
  JailSpec s = valid_jail();
  s.cgroup_root = "/sys/fs/cgroup";  // only a string here
  s.cgroup_version = 2;
  s.cpu_quota_us = 150'000;
  s.cpu_period_us = 50'000;
  s.memory_bytes = std::numeric_limits<uint64_t>::max();
  s.pids_max = 4096;
  s.rlimit_fsize = std::numeric_limits<uint64_t>::max() - 1;
  s.files.emplace_back("config", "/etc/paddock/a=b.json");  // '=' in a source is fine
  s.keep_fds = {12, 3, 7};
  s.ro_binds = {"/opt/qemu", "/usr/lib"};
  s.args = {"-M", "microvm", "--id", "x", "--kvm", "--uid", "0", "--", "-nodefaults", "", "a b"};
  auto argv = paddock_jailer_argv("/usr/libexec/paddock-jailer", s);
  REQUIRE(argv.ok());
  REQUIRE(argv.value().size() > s.args.size() + 1);
  CHECK(argv.value().front() == "/usr/libexec/paddock-jailer");
  // The VMM's arguments come last, after "--", untouched.
  const std::vector<std::string> tail(argv.value().end() - static_cast<long>(s.args.size()) - 1,
                                      argv.value().end());
  std::vector<std::string> expected_tail = {"--"};
  expected_tail.insert(expected_tail.end(), s.args.begin(), s.args.end());
  CHECK(tail == expected_tail);

  auto parsed = parse_paddock_jailer_args({argv.value().begin() + 1, argv.value().end()});
  REQUIRE_MESSAGE(parsed.ok(), parsed.error().message());
  const JailSpec& p = parsed.value();
  CHECK(p.id == s.id);
  CHECK(p.exec_file == s.exec_file);
  CHECK(p.chroot_base == s.chroot_base);
  CHECK(p.uid == s.uid);
  CHECK(p.gid == s.gid);
  CHECK(p.cgroup_root == s.cgroup_root);
  CHECK(p.cgroup_parent == s.cgroup_parent);
  CHECK(p.cgroup_version == s.cgroup_version);
  CHECK(p.cpu_quota_us == s.cpu_quota_us);
  CHECK(p.cpu_period_us == s.cpu_period_us);
  CHECK(p.memory_bytes == s.memory_bytes);
  CHECK(p.pids_max == s.pids_max);
  CHECK(p.netns == s.netns);
  CHECK(p.files == s.files);
  CHECK(p.kvm == s.kvm);
  CHECK(p.ro_binds == s.ro_binds);
  CHECK(p.rlimit_nofile == s.rlimit_nofile);
  CHECK(p.rlimit_fsize == s.rlimit_fsize);
  CHECK(p.keep_fds == s.keep_fds);
  CHECK(p.args == s.args);
}

TEST_CASE("paddock jail argv: a minimal spec round-trips, and flags after -- stay the VMM's") {
  JailSpec s;
  s.id = "vm-min";
  s.exec_file = "/usr/bin/qemu";
  s.chroot_base = "/srv/jails";
  s.uid = 30001;
  s.gid = 30001;
  s.args = {"--kvm", "--netns", "/run/netns/x", "--keep-fd", "9"};
  auto argv = paddock_jailer_argv("paddock-jailer", s);
  REQUIRE(argv.ok());
  auto parsed = parse_paddock_jailer_args({argv.value().begin() + 1, argv.value().end()});
  REQUIRE_MESSAGE(parsed.ok(), parsed.error().message());
  const JailSpec& p = parsed.value();
  CHECK_FALSE(p.kvm);
  CHECK(p.netns == "");
  CHECK(p.keep_fds.empty());
  CHECK(p.files.empty());
  CHECK(p.ro_binds == std::vector<std::string>{"/usr"});
  CHECK(p.cgroup_root == "/sys/fs/cgroup");
  CHECK(p.cgroup_parent == "paddock");
  CHECK(p.cgroup_version == 0);
  CHECK(p.cpu_quota_us == 0);
  CHECK(p.cpu_period_us == 100'000);
  CHECK(p.memory_bytes == 0);
  CHECK(p.pids_max == 0);
  CHECK(p.rlimit_nofile == 1024);
  CHECK(p.rlimit_fsize == 0);
  CHECK(p.args == s.args);
}

TEST_CASE("paddock jail args: bad flags are Jailer errors naming the flag, binds default to /usr") {
  const std::vector<std::string> base = {
      "--id", "vm-1",  "--exec-file", "/usr/bin/qemu",     "--uid",
      "1000", "--gid", "1001",        "--chroot-base-dir", "/srv/jails"};
  auto with = [&](std::vector<std::string> more) {
    auto a = base;
    a.insert(a.end(), more.begin(), more.end());
    return parse_paddock_jailer_args(a);
  };
  auto plain = parse_paddock_jailer_args(base);
  REQUIRE_MESSAGE(plain.ok(), plain.error().message());
  CHECK(plain.value().ro_binds == std::vector<std::string>{"/usr"});
  CHECK(plain.value().uid == 1000);
  CHECK(plain.value().gid == 1001);
  CHECK(plain.value().args.empty());
  // Given binds replace the default.
  auto binds = with({"--ro-bind", "/opt/qemu", "--ro-bind", "/lib"});
  REQUIRE(binds.ok());
  CHECK(binds.value().ro_binds == std::vector<std::string>{"/opt/qemu", "/lib"});

  CHECK(jailer_error_lacking(with({"--bogus", "1"}),
                             {"step arguments", "unknown flag '--bogus'"}) == "");
  CHECK(jailer_error_lacking(with({"-M", "microvm"}), {"unknown flag '-M'"}) == "");
  CHECK(jailer_error_lacking(with({"--uid"}), {"step arguments", "--uid", "needs a value"}) == "");
  CHECK(jailer_error_lacking(with({"--netns"}), {"--netns", "needs a value"}) == "");
  CHECK(jailer_error_lacking(with({"--uid", "abc"}), {"step arguments", "--uid 'abc'"}) == "");
  CHECK(jailer_error_lacking(with({"--uid", "-5"}), {"--uid '-5'"}) == "");
  CHECK(jailer_error_lacking(with({"--gid", "4294967296"}), {"--gid '4294967296'"}) == "");
  CHECK(jailer_error_lacking(with({"--memory-bytes", "12x"}), {"--memory-bytes '12x'"}) == "");
  CHECK(jailer_error_lacking(with({"--cgroup-version", "two"}), {"--cgroup-version 'two'"}) == "");
  CHECK(jailer_error_lacking(with({"--keep-fd", "fd3"}), {"--keep-fd 'fd3'"}) == "");
  CHECK(jailer_error_lacking(with({"--file", "kernel"}), {"step arguments", "--file 'kernel'"}) ==
        "");
  // Parsed arguments are validated like a spec.
  CHECK(jailer_error_lacking(with({"--uid", "0"}), {"step validate", "uid 0"}) == "");
  CHECK(jailer_error_lacking(with({"--file", "kernel=vmlinux"}), {"step validate", "'vmlinux'"}) ==
        "");
}

TEST_CASE("paddock jail cgroup_dirs: cpu, memory, pids on v1, one directory on v2") {
  JailSpec s = valid_jail();
  s.cgroup_root = "/cg";
  s.cgroup_parent = "paddock/jobs";
  s.id = "vm-9";
  CHECK(cgroup_dirs(s, 1) == std::vector<std::string>{"/cg/cpu/paddock/jobs/vm-9",
                                                      "/cg/memory/paddock/jobs/vm-9",
                                                      "/cg/pids/paddock/jobs/vm-9"});
  CHECK(cgroup_dirs(s, 2) == std::vector<std::string>{"/cg/paddock/jobs/vm-9"});
}

TEST_CASE("paddock jail make_cgroup v1: limits in each controller, this process moved in") {
  TempDir tmp;
  const std::string pid = std::to_string(::getpid());
  JailSpec s = file_jail(tmp, 1, "vm-v1");
  s.cgroup_parent = "paddock/jobs";
  s.cpu_quota_us = 150'000;
  s.cpu_period_us = 50'000;
  s.memory_bytes = 3'221'225'472;
  s.pids_max = 77;
  const auto dirs = cgroup_dirs(s, 1);
  REQUIRE(dirs.size() == 3);

  SUBCASE("memory + swap limited with memory where the host accounts swap") {
    REQUIRE(fs::create_directories(dirs[1]));
    put(dirs[1] + "/memory.memsw.limit_in_bytes", "9223372036854771712");
    REQUIRE(steps::make_cgroup(s).ok());
    CHECK(slurp(dirs[1] + "/memory.memsw.limit_in_bytes") == "3221225472");
    CHECK(names_in(dirs[1]) == std::set<std::string>{"memory.limit_in_bytes",
                                                     "memory.memsw.limit_in_bytes",
                                                     "cgroup.procs"});
  }
  SUBCASE("no swap accounting: no memsw file made") {
    REQUIRE(steps::make_cgroup(s).ok());
    CHECK_FALSE(fs::exists(dirs[1] + "/memory.memsw.limit_in_bytes"));
    CHECK(names_in(dirs[1]) == std::set<std::string>{"memory.limit_in_bytes", "cgroup.procs"});
  }
  CHECK(slurp(dirs[0] + "/cpu.cfs_period_us") == "50000");
  CHECK(slurp(dirs[0] + "/cpu.cfs_quota_us") == "150000");
  CHECK(slurp(dirs[1] + "/memory.limit_in_bytes") == "3221225472");
  CHECK(slurp(dirs[2] + "/pids.max") == "77");
  for (const auto& d : dirs) CHECK_MESSAGE(slurp(d + "/cgroup.procs") == pid, d);
  CHECK(names_in(dirs[0]) ==
        std::set<std::string>{"cpu.cfs_period_us", "cpu.cfs_quota_us", "cgroup.procs"});
  CHECK(names_in(dirs[2]) == std::set<std::string>{"pids.max", "cgroup.procs"});
  // v1 writes no v2 files anywhere.
  CHECK_FALSE(fs::exists(tmp / "cg/cgroup.subtree_control"));
  CHECK(names_in(tmp / "cg") == std::set<std::string>{"cpu", "memory", "pids"});
}

TEST_CASE("paddock jail make_cgroup v2: controllers delegated at each level, limits below") {
  TempDir tmp;
  const std::string pid = std::to_string(::getpid());
  JailSpec s = file_jail(tmp, 2, "vm-v2");
  s.cgroup_parent = "paddock/jobs";
  s.cpu_quota_us = 150'000;
  s.cpu_period_us = 50'000;
  s.memory_bytes = 1'073'741'824;
  s.pids_max = 64;
  const std::string root = tmp / "cg";
  const std::string dir = root + "/paddock/jobs/vm-v2";
  REQUIRE(cgroup_dirs(s, 2) == std::vector<std::string>{dir});
  REQUIRE(fs::create_directory(root));

  SUBCASE("swap limited to 0 where the host has memory.swap.max") {
    REQUIRE(fs::create_directories(dir));
    put(dir + "/memory.swap.max", "max");
    REQUIRE(steps::make_cgroup(s).ok());
    CHECK(slurp(dir + "/memory.swap.max") == "0");
    CHECK(names_in(dir) == std::set<std::string>{"cpu.max", "memory.max", "memory.swap.max",
                                                 "pids.max", "cgroup.procs"});
  }
  SUBCASE("no swap file: none made") {
    REQUIRE(steps::make_cgroup(s).ok());
    CHECK_FALSE(fs::exists(dir + "/memory.swap.max"));
    CHECK(names_in(dir) ==
          std::set<std::string>{"cpu.max", "memory.max", "pids.max", "cgroup.procs"});
  }
  for (const auto& level :
       std::vector<std::string>{root, root + "/paddock", root + "/paddock/jobs"}) {
    CHECK_MESSAGE(slurp(level + "/cgroup.subtree_control") == "+cpu +memory +pids", level);
  }
  CHECK(slurp(dir + "/cpu.max") == "150000 50000");
  CHECK(slurp(dir + "/memory.max") == "1073741824");
  CHECK(slurp(dir + "/pids.max") == "64");
  CHECK(slurp(dir + "/cgroup.procs") == pid);
  // The jail's own cgroup delegates nothing (its VMM makes no cgroups), and no v1 files appear.
  CHECK_FALSE(fs::exists(dir + "/cgroup.subtree_control"));
  CHECK(names_in(root) == std::set<std::string>{"cgroup.subtree_control", "paddock"});
}

TEST_CASE("paddock jail make_cgroup: a zero limit writes no file") {
  TempDir tmp;
  const std::string pid = std::to_string(::getpid());
  SUBCASE("v1") {
    JailSpec s = file_jail(tmp, 1, "vm-z1");
    const auto dirs = cgroup_dirs(s, 1);
    // With no memory limit even an existing memsw file is left as it is.
    REQUIRE(fs::create_directories(dirs[1]));
    put(dirs[1] + "/memory.memsw.limit_in_bytes", "untouched");
    REQUIRE(steps::make_cgroup(s).ok());
    CHECK(names_in(dirs[0]) == std::set<std::string>{"cgroup.procs"});
    CHECK(names_in(dirs[1]) ==
          std::set<std::string>{"memory.memsw.limit_in_bytes", "cgroup.procs"});
    CHECK(slurp(dirs[1] + "/memory.memsw.limit_in_bytes") == "untouched");
    CHECK(names_in(dirs[2]) == std::set<std::string>{"cgroup.procs"});
    for (const auto& d : dirs) CHECK_MESSAGE(slurp(d + "/cgroup.procs") == pid, d);
  }
  SUBCASE("v2") {
    JailSpec s = file_jail(tmp, 2, "vm-z2");
    REQUIRE(fs::create_directory(tmp / "cg"));
    const std::string dir = cgroup_dirs(s, 2).front();
    REQUIRE(fs::create_directories(dir));
    put(dir + "/memory.swap.max", "max");
    REQUIRE(steps::make_cgroup(s).ok());
    CHECK(names_in(dir) == std::set<std::string>{"memory.swap.max", "cgroup.procs"});
    CHECK(slurp(dir + "/memory.swap.max") == "max");
    CHECK(slurp(dir + "/cgroup.procs") == pid);
  }
}

TEST_CASE("paddock jail make_cgroup: a root that is no directory is a Jailer error naming it") {
  TempDir tmp;
  const std::string file = tmp / "not-a-dir";
  put(file, "");
  SUBCASE("v1") {
    JailSpec s = file_jail(tmp, 1);
    s.cgroup_root = file;
    s.memory_bytes = 1 << 30;
    CHECK(jailer_error_lacking(steps::make_cgroup(s),
                               {"step cgroup", file + "/cpu", "Not a directory"}) == "");
  }
  SUBCASE("v2") {
    JailSpec s = file_jail(tmp, 2);
    s.cgroup_root = file;
    CHECK(jailer_error_lacking(
              steps::make_cgroup(s),
              {"step cgroup", file + "/cgroup.subtree_control", "Not a directory"}) == "");
  }
  SUBCASE("detected: a plain directory is neither version") {
    JailSpec s = file_jail(tmp, 0);
    s.cgroup_root = tmp.path();
    CHECK(jailer_error_lacking(steps::make_cgroup(s),
                               {"step cgroup", tmp.path(), "neither a cgroup v2 mount"}) == "");
    CHECK(names_in(tmp.path()) == std::set<std::string>{"not-a-dir"});
  }
}

TEST_CASE("paddock jail make_chroot: inputs hard-linked into a root owned by the jail's user") {
  if (::geteuid() != 0) {
    MESSAGE("SKIPPED: needs root (chown of the chroot to the jail's uid)");
    return;
  }
  TempDir tmp;
  REQUIRE(fs::create_directory(tmp / "src"));
  const std::string kernel = tmp / "src/vmlinux";
  put(kernel, "kernel bytes");
  REQUIRE(::chmod(kernel.c_str(), 0644) == 0);
  REQUIRE(::chown(kernel.c_str(), 0, 0) == 0);
  JailSpec s = file_jail(tmp, 1, "vm-c1");
  s.files = {{"vmlinuz", kernel}};
  REQUIRE(!fs::exists(s.chroot_base));

  auto made = steps::make_chroot(s);
  REQUIRE_MESSAGE(made.ok(), made.error().message());
  CHECK(jail_dir(s) == tmp / "base/qemu/vm-c1");
  CHECK(jail_root(s) == tmp / "base/qemu/vm-c1/root");
  struct stat src {};
  struct stat in {};
  struct stat root {};
  struct stat dir {};
  REQUIRE(::stat(kernel.c_str(), &src) == 0);
  REQUIRE(::stat((jail_root(s) + "/vmlinuz").c_str(), &in) == 0);
  CHECK(in.st_ino == src.st_ino);
  CHECK(in.st_dev == src.st_dev);
  CHECK(src.st_nlink == 2);
  REQUIRE(::stat(jail_root(s).c_str(), &root) == 0);
  CHECK(S_ISDIR(root.st_mode));
  CHECK(root.st_uid == 20001);
  CHECK(root.st_gid == 20002);
  CHECK((root.st_mode & 07777) == 0700);
  // The jail's directory stays root's: the jail's user cannot rename its root away.
  REQUIRE(::stat(jail_dir(s).c_str(), &dir) == 0);
  CHECK(dir.st_uid == 0);
  CHECK((dir.st_mode & 07777) == 0700);
  CHECK(names_in(jail_root(s)) == std::set<std::string>{"vmlinuz"});

  // The same id again: refused, and the first jail is left as it was.
  CHECK(jailer_error_lacking(steps::make_chroot(s),
                             {"step chroot", jail_dir(s), "a jail with this id exists"}) == "");
  CHECK(fs::exists(jail_root(s) + "/vmlinuz"));

  SUBCASE("a missing source") {
    JailSpec m = file_jail(tmp, 1, "vm-c2");
    const std::string missing = tmp / "src/missing.img";
    m.files = {{"disk", missing}};
    CHECK(jailer_error_lacking(steps::make_chroot(m),
                               {"step chroot", missing, "No such file or directory"}) == "");
  }
  SUBCASE("a world-writable source") {
    REQUIRE(::chmod(kernel.c_str(), 0666) == 0);
    JailSpec w = file_jail(tmp, 1, "vm-c3");
    w.files = {{"vmlinuz", kernel}};
    CHECK(jailer_error_lacking(steps::make_chroot(w),
                               {"step chroot", kernel, "writable by the jail's user 20001"}) == "");
  }
  SUBCASE("a source owned by the jail's uid") {
    REQUIRE(::chown(kernel.c_str(), 20001, 0) == 0);
    JailSpec w = file_jail(tmp, 1, "vm-c4");
    w.files = {{"vmlinuz", kernel}};
    CHECK(jailer_error_lacking(steps::make_chroot(w),
                               {"step chroot", kernel, "writable by the jail's user"}) == "");
  }
  SUBCASE("group-writable: refused for the jail's gid only") {
    REQUIRE(::chmod(kernel.c_str(), 0664) == 0);
    JailSpec w = file_jail(tmp, 1, "vm-c5");
    w.files = {{"vmlinuz", kernel}};
    CHECK(steps::make_chroot(w).ok());  // group 0, not the jail's
    REQUIRE(::chown(kernel.c_str(), 0, 20002) == 0);
    JailSpec g = file_jail(tmp, 1, "vm-c6");
    g.files = {{"vmlinuz", kernel}};
    CHECK(jailer_error_lacking(steps::make_chroot(g),
                               {"step chroot", kernel, "writable by the jail's user"}) == "");
  }
  SUBCASE("a fifo is not a regular file") {
    const std::string fifo = tmp / "src/fifo";
    REQUIRE(::mkfifo(fifo.c_str(), 0644) == 0);
    JailSpec f = file_jail(tmp, 1, "vm-c7");
    f.files = {{"pipe", fifo}};
    CHECK(jailer_error_lacking(steps::make_chroot(f),
                               {"step chroot", fifo, "not a regular file"}) == "");
  }
}

TEST_CASE("paddock jail make_chroot: a source on another filesystem is copied, read-only") {
  if (::geteuid() != 0) {
    MESSAGE("SKIPPED: needs root (chown of the chroot to the jail's uid)");
    return;
  }
  TempDir tmp;
  struct stat tmp_st {};
  struct stat shm_st {};
  if (::stat("/dev/shm", &shm_st) != 0 || ::stat(tmp.path().c_str(), &tmp_st) != 0 ||
      shm_st.st_dev == tmp_st.st_dev) {
    MESSAGE("SKIPPED: needs /dev/shm on another filesystem than /tmp");
    return;
  }
  TempDir shm("/dev/shm");
  const std::string source = shm / "rootfs.img";
  put(source, std::string(3 << 20, 'r') + "end");  // over the 1 MiB copy buffer
  REQUIRE(::chmod(source.c_str(), 0644) == 0);
  JailSpec s = file_jail(tmp, 1, "vm-x");
  s.files = {{"rootfs", source}};
  auto made = steps::make_chroot(s);
  REQUIRE_MESSAGE(made.ok(), made.error().message());
  const std::string copy = jail_root(s) + "/rootfs";
  struct stat src {};
  struct stat in {};
  REQUIRE(::stat(source.c_str(), &src) == 0);
  REQUIRE(::stat(copy.c_str(), &in) == 0);
  CHECK(in.st_dev != src.st_dev);
  CHECK(in.st_uid == 0);
  CHECK((in.st_mode & 07777) == 0444);
  CHECK(slurp(copy) == slurp(source));
}

TEST_CASE("paddock jail teardown: removes the jail and its cgroups, and again is fine") {
  TempDir tmp;
  JailSpec s = file_jail(tmp, 1, "vm-t1");
  REQUIRE(fs::create_directories(jail_root(s)));
  put(jail_root(s) + "/vmlinuz", "k");
  REQUIRE(fs::create_directories(jail_root(s) + "/usr/lib"));
  for (const auto& d : cgroup_dirs(s, 1)) REQUIRE(fs::create_directories(d));
  // Another jail's cgroups and chroot stay.
  JailSpec other = file_jail(tmp, 1, "vm-t2");
  REQUIRE(fs::create_directories(jail_root(other)));
  for (const auto& d : cgroup_dirs(other, 1)) REQUIRE(fs::create_directories(d));

  auto first = teardown_jail(s);
  REQUIRE_MESSAGE(first.ok(), first.error().message());
  CHECK_FALSE(fs::exists(jail_dir(s)));
  for (const auto& d : cgroup_dirs(s, 1)) CHECK_MESSAGE(!fs::exists(d), d);
  for (const auto& c : {"cpu", "memory", "pids"}) {
    CHECK(fs::is_directory(tmp / (std::string("cg/") + c + "/paddock")));
  }
  CHECK(fs::exists(jail_root(other)));
  for (const auto& d : cgroup_dirs(other, 1)) CHECK_MESSAGE(fs::exists(d), d);
  auto second = teardown_jail(s);
  CHECK_MESSAGE(second.ok(), second.error().message());
  CHECK(names_in(tmp / "base/qemu") == std::set<std::string>{"vm-t2"});
}

TEST_CASE("paddock jail teardown: a cgroup that cannot go is named, the rest still goes") {
  TempDir tmp;
  JailSpec s = file_jail(tmp, 1, "vm-t3");
  REQUIRE(fs::create_directories(jail_root(s)));
  const auto dirs = cgroup_dirs(s, 1);
  for (const auto& d : dirs) REQUIRE(fs::create_directories(d));
  // A plain directory with a file in it: rmdir fails (ENOTEMPTY), unlike a real cgroup.
  put(dirs[1] + "/memory.limit_in_bytes", "1");
  CHECK(jailer_error_lacking(teardown_jail(s),
                             {"step teardown", "rmdir " + dirs[1], "Directory not empty"}) == "");
  CHECK_FALSE(fs::exists(dirs[0]));
  CHECK(fs::exists(dirs[1]));
  CHECK_FALSE(fs::exists(dirs[2]));
  CHECK_FALSE(fs::exists(jail_dir(s)));
}

TEST_CASE("paddock jail teardown: refuses a jail with a mount below it") {
  if (::geteuid() != 0) {
    MESSAGE("SKIPPED: needs root (a tmpfs mounted in a child's own mount namespace)");
    return;
  }
  TempDir tmp;
  JailSpec s = file_jail(tmp, 0, "vm-t4");
  REQUIRE(fs::create_directories(jail_root(s)));
  put(jail_dir(s) + "/marker", "m");
  // A child in its own mount namespace (private: nothing reaches the host's) mounts a tmpfs at
  // the jail's root and tries the teardown there. Exit codes: 0 refused as expected, 10+ setup.
  const pid_t child = ::fork();
  REQUIRE(child >= 0);
  if (child == 0) {
    if (::unshare(CLONE_NEWNS) != 0) ::_exit(10);
    if (::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0) ::_exit(11);
    if (::mount("tmpfs", jail_root(s).c_str(), "tmpfs", 0, "size=64k") != 0) ::_exit(12);
    auto st = teardown_jail(s);
    if (st.ok()) ::_exit(1);
    const std::string m = st.error().message();
    if (st.error().variant() != Variant::kJailer || m.find("step teardown") == std::string::npos ||
        m.find("a mount below it (" + jail_root(s) + ")") == std::string::npos) {
      ::_exit(2);
    }
    if (!fs::exists(jail_dir(s) + "/marker")) ::_exit(3);
    ::_exit(0);
  }
  int status = 0;
  REQUIRE(::waitpid(child, &status, 0) == child);
  REQUIRE(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
  // Here (no mount in this namespace) the same teardown goes through.
  CHECK(teardown_jail(s).ok());
  CHECK_FALSE(fs::exists(jail_dir(s)));
}

TEST_CASE("paddock jail sweep: every leftover jail below the base goes") {
  TempDir tmp;
  JailSpec like = file_jail(tmp, 1, "unused");
  REQUIRE(fs::create_directories(tmp / "base/qemu/vm-a/root/usr"));
  put(tmp / "base/qemu/vm-a/root/vmlinuz", "k");
  REQUIRE(fs::create_directories(tmp / "base/qemu/vm-b/root"));
  CHECK(sweep_jails(like) == 2);
  CHECK(names_in(tmp / "base/qemu").empty());
  CHECK(sweep_jails(like) == 0);
}

TEST_CASE("paddock jail sweep: cgroups without a chroot go too, names that are no jail id stay") {
  TempDir tmp;
  JailSpec like = file_jail(tmp, 1, "unused");
  REQUIRE(fs::create_directories(tmp / "base/qemu/vm-a/root"));
  REQUIRE(fs::create_directories(tmp / "base/qemu/not.a.jail"));
  JailSpec orphan = file_jail(tmp, 1, "vm-orphan");
  for (const auto& d : cgroup_dirs(orphan, 1)) REQUIRE(fs::create_directories(d));
  CHECK(sweep_jails(like) == 2);
  CHECK(names_in(tmp / "base/qemu") == std::set<std::string>{"not.a.jail"});
  for (const auto& d : cgroup_dirs(orphan, 1)) CHECK_MESSAGE(!fs::exists(d), d);
  CHECK(names_in(tmp / "cg/memory/paddock").empty());
  // No base at all: nothing to do.
  JailSpec nowhere = file_jail(tmp, 1, "unused");
  nowhere.chroot_base = tmp / "no-base";
  CHECK(sweep_jails(nowhere) == 0);
}

TEST_CASE("paddock jail oom_kills: read from memory.oom_control (v1) or memory.events (v2)") {
  TempDir tmp;
  SUBCASE("v1") {
    JailSpec s = file_jail(tmp, 1, "vm-o1");
    CHECK(oom_kills(s) == 0);  // no file
    const std::string dir = cgroup_dirs(s, 1)[1];
    REQUIRE(dir == tmp / "cg/memory/paddock/vm-o1");
    REQUIRE(fs::create_directories(dir));
    put(dir + "/memory.oom_control", "oom_kill_disable 0\nunder_oom 0\n");
    CHECK(oom_kills(s) == 0);  // a kernel without the counter
    put(dir + "/memory.oom_control", "oom_kill_disable 0\nunder_oom 0\noom_kill 3\n");
    CHECK(oom_kills(s) == 3);
    // The other controllers' directories are not read.
    for (const auto& other : {cgroup_dirs(s, 1)[0], cgroup_dirs(s, 1)[2]}) {
      REQUIRE(fs::create_directories(other));
      put(other + "/memory.oom_control", "oom_kill 99\n");
    }
    CHECK(oom_kills(s) == 3);
  }
  SUBCASE("v2") {
    JailSpec s = file_jail(tmp, 2, "vm-o2");
    CHECK(oom_kills(s) == 0);  // no file
    const std::string dir = cgroup_dirs(s, 2)[0];
    REQUIRE(fs::create_directories(dir));
    put(dir + "/memory.events", "low 0\nhigh 0\nmax 7\noom 5\noom_kill 2\noom_group_kill 0\n");
    CHECK(oom_kills(s) == 2);
  }
  SUBCASE("undetectable version") {
    JailSpec s = file_jail(tmp, 0, "vm-o0");
    REQUIRE(fs::create_directories(tmp / "cg/memory/paddock/vm-o0"));
    put(tmp / "cg/memory/paddock/vm-o0/memory.oom_control", "oom_kill 4\n");
    CHECK(oom_kills(s) == 0);
  }
}

TEST_CASE(
    "paddock jail validate: names that clash with binds or the argv, and a bind with a trailing "
    "slash") {
  auto s = valid_jail();
  s.files = {{"usr", "/etc/hostname"}};  // /usr is bound there
  CHECK(jailer_error_lacking(validate(s), {"step validate", "file name 'usr'"}) == "");
  s = valid_jail();
  s.files = {{"a=b", "/etc/hostname"}};  // the argv joins name=source
  CHECK(jailer_error_lacking(validate(s), {"step validate", "file name 'a=b'"}) == "");
  s = valid_jail();
  s.ro_binds = {"/usr/"};
  CHECK(jailer_error_lacking(validate(s), {"step validate", "'/usr/'"}) == "");
}

TEST_CASE("paddock jail args: an unknown flag given last is named as unknown") {
  CHECK(jailer_error_lacking(parse_paddock_jailer_args({"--bogus"}), {"unknown flag '--bogus'"}) ==
        "");
}

TEST_CASE("paddock jail oom_kills: a cgroup parent named memory does not confuse the v1 lookup") {
  TempDir tmp;
  JailSpec s = file_jail(tmp, 1, "vm-o3");
  s.cgroup_parent = "memory";
  const std::string dir = cgroup_dirs(s, 1)[1];
  REQUIRE(fs::create_directories(dir));
  put(dir + "/memory.oom_control", "oom_kill 3\n");
  CHECK(oom_kills(s) == 3);
}

TEST_CASE(
    "paddock jail make_chroot: a symlink, a fifo or a device as a source is refused, never "
    "followed or read") {
  TempDir tmp;
  REQUIRE(fs::create_directory(tmp / "src"));
  const std::string real = tmp / "src/real";
  put(real, "bytes");
  REQUIRE(::chmod(real.c_str(), 0644) == 0);
  const std::string link = tmp / "src/link";
  REQUIRE(::symlink(real.c_str(), link.c_str()) == 0);
  const std::string fifo = tmp / "src/fifo";
  REQUIRE(::mkfifo(fifo.c_str(), 0644) == 0);
  int n = 0;
  for (const std::string& source : {link, fifo, std::string("/dev/null")}) {
    JailSpec s = file_jail(tmp, 1, "vm-s" + std::to_string(n++));
    s.files = {{"input", source}};
    auto made = steps::make_chroot(s);
    CHECK_MESSAGE(jailer_error_lacking(made, {"step chroot", source, "not a regular file"}) == "",
                  source);
    CHECK_FALSE(fs::exists(jail_root(s) + "/input"));
  }
}
