// The Firecracker provider's additions around Firecracker's jailer (runtime/src/firecracker/
// jail.h): the --cgroup limits per cgroup version and the per-provider jail prefix. No root.
#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "firecracker/jail.h"

using namespace paddock::runtime;

TEST_CASE(
    "firecracker jail: cgroup limits name the controllers cgroup_dirs lists for each version") {
  const uint64_t memory = (256ull + 128) << 20;
  CHECK(firecracker::cgroup_limits(1, 2, memory, 128) ==
        std::vector<std::string>{"cpu.cfs_period_us=100000", "cpu.cfs_quota_us=250000",
                                 "memory.limit_in_bytes=402653184", "pids.max=128"});
  CHECK(firecracker::cgroup_limits(2, 1, memory, 64) ==
        std::vector<std::string>{"cpu.max=150000 100000", "memory.max=402653184", "pids.max=64"});
  // On v1 the controllers named are exactly those whose directories teardown removes.
  FirecrackerJailConfig config;
  config.parent_cgroup = "paddock-fc/pf00000000";
  const auto dirs = jail::cgroup_dirs(firecracker::cgroup_spec(config, 1, "pf00000000-1-0"), 1);
  CHECK(dirs ==
        std::vector<std::string>{"/sys/fs/cgroup/cpu/paddock-fc/pf00000000/pf00000000-1-0",
                                 "/sys/fs/cgroup/memory/paddock-fc/pf00000000/pf00000000-1-0",
                                 "/sys/fs/cgroup/pids/paddock-fc/pf00000000/pf00000000-1-0"});
}

TEST_CASE("firecracker jail: the prefix is pf and 8 hex digits of the normal absolute run dir") {
  const std::string a = firecracker::jail_prefix("/run/paddock/w1/firecracker");
  CHECK(a.size() == 10);
  CHECK(a.rfind("pf", 0) == 0);
  CHECK(a.find_first_not_of("0123456789abcdef", 2) == std::string::npos);
  CHECK(firecracker::jail_prefix("/run/paddock/w1/./firecracker/") == a);
  CHECK(firecracker::jail_prefix("/run/paddock/w2/firecracker") != a);
  CHECK(jail::valid_jail_id(a + "-12345-0"));
  CHECK(firecracker::jail_dir(FirecrackerJailConfig{}, "firecracker", a + "-1-0") ==
        "/srv/jailer/firecracker/" + a + "-1-0");
}
