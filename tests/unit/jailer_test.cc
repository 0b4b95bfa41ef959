// The Firecracker jailer command (argv for argv, as the reference runtime builds it) and the
// detection of the host's cgroup version.
#include <doctest/doctest.h>

#include <filesystem>

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
  auto s = spec();
  s.numa_node = 1;
  s.cgroup_version = 2;
  auto with_numa = firecracker_jailer_argv(s);
  REQUIRE(with_numa.ok());
  CHECK(with_numa.value() == std::vector<std::string>{"/usr/bin/jailer",
                                                      "--id",
                                                      "job-42_a",
                                                      "--exec-file",
                                                      "/usr/bin/firecracker",
                                                      "--uid",
                                                      "10042",
                                                      "--gid",
                                                      "10042",
                                                      "--chroot-base-dir",
                                                      "/srv/jailer",
                                                      "--cgroup-version",
                                                      "2",
                                                      "--parent-cgroup",
                                                      "paddock",
                                                      "--numa-node",
                                                      "1",
                                                      "--new-pid-ns",
                                                      "--",
                                                      "--api-sock",
                                                      "/api.sock"});
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
