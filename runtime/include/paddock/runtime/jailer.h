// Jailing a VMM (issue 6; runtime/README.md "The jail"). Two jailers:
//  - paddock-jailer, ours, which starts every QEMU: JailSpec says what it does, paddock_jailer_argv
//    builds its command line and parse_paddock_jailer_args reads it back; the steps themselves
//    are in src/jail/steps.cc. teardown_jail and sweep_jails remove what a jail leaves.
//  - Firecracker's own jailer, for the Firecracker backend: firecracker_jailer_argv builds its
//    command exactly as the reference runtime does.
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
  // --cgroup <file>=<value> each (the jailer makes the cgroups these name, and only those):
  // e.g. "memory.limit_in_bytes=402653184" (v1) or "memory.max=402653184" (v2).
  std::vector<std::string> cgroups;
  // --resource-limit <name>=<value> each: "fsize=N", "no-file=N".
  std::vector<std::string> resource_limits;
  std::string netns;  // --netns: a network namespace handle (/run/netns/NAME); empty: none
  std::string api_sock = "/api.sock";  // inside the chroot
};

// The jailer's argv (argv[0] is the jailer binary):
//   <jailer> --id <id> --exec-file <fc> --uid <uid> --gid <gid> --chroot-base-dir <base>
//            --cgroup-version <1|2> --parent-cgroup <parent>
//            [--cgroup <file>=<value>]... [--resource-limit <name>=<value>]... [--netns <path>]
//            --new-pid-ns -- --api-sock <api_sock>
// Jailer errors, naming the value: an empty or invalid id, a relative exec file or chroot base,
// a cgroup version other than 1 or 2, a parent cgroup that is absolute or climbs with "..", a
// cgroup or resource limit not of the form name=value, a relative netns path, an api socket that
// is not an absolute path.
Result<std::vector<std::string>> firecracker_jailer_argv(const FirecrackerJailerSpec& spec);

// The cgroup values that keep a jailed Firecracker on NUMA node `node`, for
// FirecrackerJailerSpec::cgroups: {"cpuset.mems=<node>", "cpuset.cpus=<the node's CPUs>"}, the
// CPUs read from <sysfs_node_dir>/node<node>/cpulist. Firecracker's jailer has no NUMA flag of its
// own (its old --node is gone): pinning is these two cpuset files. A Jailer error naming the file
// if the node does not exist or lists no CPU.
Result<std::vector<std::string>> numa_node_cgroups(
    uint32_t node, const std::string& sysfs_node_dir = "/sys/devices/system/node");

// 2 when `root` (normally /sys/fs/cgroup) is a cgroup2 mount (the unified hierarchy), 1 when it
// holds v1 controllers, nullopt when it is neither. Detected, never assumed.
std::optional<int> cgroup_version(const std::string& root = "/sys/fs/cgroup");

// What paddock-jailer does for one VMM. Paths are absolute host paths.
struct JailSpec {
  std::string id;           // valid_jail_id: names the chroot and the cgroup
  std::string exec_file;    // the VMM binary (absolute); it must be below a read-only bind
  std::string chroot_base;  // the chroot is <chroot_base>/qemu/<id>/root
  uint32_t uid = 0;         // the VMM runs as uid:gid (neither may be 0)
  uint32_t gid = 0;
  // Cgroups: <cgroup_root>/<controller>/<parent>/<id> on v1 (cpu, memory, pids),
  // <cgroup_root>/<parent>/<id> on v2. Version 0: detected from cgroup_root.
  std::string cgroup_root = "/sys/fs/cgroup";
  std::string cgroup_parent = "paddock";
  int cgroup_version = 0;
  uint64_t cpu_quota_us = 0;  // per cpu_period_us; 0: no CPU limit
  uint64_t cpu_period_us = 100'000;
  uint64_t memory_bytes = 0;  // 0: no memory limit (swap is limited with it where the host can)
  uint64_t pids_max = 0;      // 0: no pids limit
  // The network namespace to join (a /run/netns path); empty: a new, empty one.
  std::string netns;
  // Files hard-linked (copied across filesystems) into the chroot, as name -> source.
  std::vector<std::pair<std::string, std::string>> files;
  bool kvm = false;  // /dev/kvm in the jail (besides null, zero, random, urandom)
  // Directories (or files) bound read-only (nosuid, nodev) at the same place in the jail: the
  // VMM's binary, libraries and firmware. Debian's QEMU is dynamically linked: /usr holds all of
  // it. The provider adds /etc/ld.so.cache: without it the loader probes every library directory
  // for each of QEMU's ~100 libraries, which was measured to slow every start.
  std::vector<std::string> ro_binds = {"/usr"};
  uint64_t rlimit_nofile = 1024;
  uint64_t rlimit_fsize = 0;  // largest file the VMM may write; 0: unlimited
  std::vector<int> keep_fds;  // inherited fds that stay open (the TAP); 0-2 always stay
  // The read end of a pipe whose write end only the starting process holds, for its whole life
  // (`--lifeline-fd`; -1: none). EOF on it means that process is gone, however it died: the
  // jailer then kills the VMM and exits. Process-bound, unlike PR_SET_PDEATHSIG, which fires when
  // the starting *thread* ends and is cleared by the jailer's own credential change. Kept open
  // like keep_fds; the VMM does not inherit it.
  int lifeline_fd = -1;
  std::vector<std::string> args;  // the VMM's arguments (after argv[0])
};

// <chroot_base>/qemu/<id> and its root.
std::string jail_dir(const JailSpec& spec);
std::string jail_root(const JailSpec& spec);
// Jailer errors naming the field and the value; nothing is touched.
Status validate(const JailSpec& spec);
// paddock-jailer's argv (argv[0] = jailer_binary), and back (args without argv[0]).
Result<std::vector<std::string>> paddock_jailer_argv(const std::string& jailer_binary,
                                                     const JailSpec& spec);
Result<JailSpec> parse_paddock_jailer_args(const std::vector<std::string>& args);
// The jail's cgroup directories (one per controller on v1, one on v2).
std::vector<std::string> cgroup_dirs(const JailSpec& spec, int version);
// The directories its jails' cgroups go in: cgroup_dirs without the id (only cgroup_root and
// cgroup_parent of `spec` are used).
std::vector<std::string> cgroup_parent_dirs(const JailSpec& spec, int version);

// How many times the kernel's OOM killer acted in the jail's memory cgroup (0 if unknown).
uint64_t oom_kills(const JailSpec& spec);

// Removes the jail's cgroups, killing any process still in them and retrying while the kernel
// finishes their exit (teardown_jail's first half). What is already gone is not an error.
Status remove_jail_cgroups(const JailSpec& spec);

// Removes the jail's cgroups (killing any process still in them) and its directory. Idempotent:
// what is already gone is not an error. Refuses (Jailer) to delete a directory with a mount below
// it: the jail's mounts live only in its own mount namespace, and one seen here is a bug.
Status teardown_jail(const JailSpec& spec);
// At startup: removes every jail below <chroot_base>/qemu and every cgroup below cgroup_parent
// (only id, cgroup_root, cgroup_parent, cgroup_version and chroot_base of `like` are used).
// Returns how many jails were removed.
size_t sweep_jails(const JailSpec& like);

// Where paddock-jailer is: next to the running executable, else where this build put it.
std::string default_jailer_binary();

}  // namespace paddock::runtime::jail
