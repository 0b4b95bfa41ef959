// What the Firecracker provider adds around Firecracker's own jailer (runtime/README.md, "The
// Firecracker backend", "Jailer"): the limits it passes as --cgroup values, the cgroups and chroot
// directories a jail leaves, and the startup sweep of those a crashed predecessor left.
//
// A provider's jails are named `<prefix>-<pid>-<n>`, its prefix `pf` + 8 hex digits of a hash of
// its run directory, and their cgroups live below its parent cgroup: a sweep removes only its own.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "paddock/runtime/firecracker_provider.h"
#include "paddock/runtime/jailer.h"

namespace paddock::runtime::firecracker {

// "pf" + 8 hex digits of the FNV-1a hash of the (absolute, normal) run directory.
std::string jail_prefix(const std::string& run_dir);

// The --cgroup values for one VM: CPU (vcpus + 1/2 CPU for Firecracker's own threads, per
// 100 ms), memory (guest + allowance) and pids, named for cgroup `version` (1 or 2). On v1 they
// name exactly the controllers jail::cgroup_dirs lists (cpu, memory, pids), so the jail's cgroups
// are the ones jail::remove_jail_cgroups removes.
std::vector<std::string> cgroup_limits(int version, uint32_t vcpus, uint64_t memory_bytes,
                                       uint64_t pids_max);

// A JailSpec that names jail `id`'s cgroups (only its cgroup fields are set).
jail::JailSpec cgroup_spec(const FirecrackerJailConfig& config, int version, const std::string& id);

// <chroot_base>/<exec name>/<id>: the jailer's directory for the VM (its chroot is `root` below).
std::string jail_dir(const FirecrackerJailConfig& config, const std::string& exec_name,
                     const std::string& id);

// At startup: kills what is in every cgroup below the provider's parent and removes them, and
// removes every <chroot_base>/<exec name>/<prefix>-* directory. Returns how many jails it
// removed. A directory with a mount below it in our view is left (and logged), never deleted
// through.
size_t sweep_jails(const FirecrackerJailConfig& config, int version, const std::string& exec_name,
                   const std::string& prefix);

}  // namespace paddock::runtime::firecracker
