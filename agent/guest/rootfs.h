// An image's root filesystem (agent/guest/IMAGE.md, "Root filesystem images"). When the host
// attaches one (a read-only virtio-blk drive, and "paddock.rootfs=/dev/vda" on the kernel command
// line), the agent, still PID 1 of the initramfs, mounts it read-only, puts a tmpfs overlay on it
// for writes, moves /proc, /sys, /dev, /tmp and /work into it and makes it the root (as
// switch_root does): every job then runs in the image, and what a job writes lands in the tmpfs.
// The image itself cannot change: QEMU opens it read-only and the guest sees a read-only disk.
#pragma once

#include <map>
#include <string>
#include <string_view>
#include <vector>

namespace paddock::guest {

// The modules that mount it, in load order (tools/build-guest-image.sh --rootfs-modules).
inline constexpr const char* kRootfsModulesFile = "/etc/paddock/modules.rootfs";
// In the root filesystem: the jobs' default environment, KEY=VALUE lines.
inline constexpr const char* kImageEnvFile = "/etc/paddock/image.env";

// The device after "paddock.rootfs=" in a kernel command line; "" when there is none.
std::string rootfs_device(std::string_view cmdline);

// KEY=VALUE lines; blank lines and '#' comments skipped. A line without '=' or with a bad name
// is reported in `errors` and skipped.
std::map<std::string, std::string> parse_env(std::string_view text,
                                             std::vector<std::string>& errors);

// As PID 1, after mount_filesystems(): loads the modules, waits for `device` (up to 10 s), mounts
// it and the overlay, moves the mounts in and switches root. `env` gets the image's environment.
// Empty on success, else what failed (the guest is then unusable for the image: the caller stops).
std::string enter_rootfs(const std::string& device, std::vector<std::string>& loaded,
                         std::map<std::string, std::string>& env);

}  // namespace paddock::guest
