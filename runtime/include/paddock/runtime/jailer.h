// Jailing a VMM (issue 6; DESIGN.md §4 "Jail"). For now: the command that starts Firecracker
// through Firecracker's own jailer, exactly as the reference runtime builds it, and the cgroup
// version of the host. Our own jailer for QEMU (paddock-jailer) is not built yet.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "paddock/runtime/error.h"

namespace paddock::runtime::jail {

// Jail ids name directories and cgroups: 1-64 of [A-Za-z0-9_-].
bool valid_jail_id(std::string_view id);

struct FirecrackerJailerSpec {
  std::string jailer_binary = "jailer";  // as found on PATH, or an absolute path
  std::string id;                        // the VM's jail id (see valid_jail_id)
  std::string exec_file;                 // the firecracker binary: an absolute path
  uint32_t uid = 0;
  uint32_t gid = 0;
  std::string chroot_base_dir = "/srv/jailer";  // absolute
  int cgroup_version = 2;                       // 1 or 2
  std::string parent_cgroup = "paddock";        // relative to the cgroup root, no ".."
  std::optional<uint32_t> numa_node;
  std::string api_sock = "/api.sock";  // inside the chroot
};

// The jailer's argv (argv[0] is the jailer binary):
//   <jailer> --id <id> --exec-file <fc> --uid <uid> --gid <gid> --chroot-base-dir <base>
//            --cgroup-version <1|2> --parent-cgroup <parent> [--numa-node N] --new-pid-ns
//            -- --api-sock <api_sock>
// Jailer errors, naming the value: an empty or invalid id, a relative exec file or chroot base,
// a cgroup version other than 1 or 2, a parent cgroup that is absolute or climbs with "..", an
// api socket that is not an absolute path.
Result<std::vector<std::string>> firecracker_jailer_argv(const FirecrackerJailerSpec& spec);

// 2 when `root` (normally /sys/fs/cgroup) is a cgroup2 mount (the unified hierarchy), 1 when it
// holds v1 controllers, nullopt when it is neither. Detected, never assumed.
std::optional<int> cgroup_version(const std::string& root = "/sys/fs/cgroup");

}  // namespace paddock::runtime::jail
