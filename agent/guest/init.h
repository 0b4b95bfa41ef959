// What the agent does as PID 1 of the guest, before it serves: mounts, a console on fds 0-2, and
// power-off at the end. PID 1 must never exit (the kernel would panic), so fatal errors end in
// power_off() after saying why on the console.
#pragma once

#include <string>
#include <vector>

namespace paddock::guest {

// Mounts proc on /proc, sysfs on /sys, devtmpfs on /dev, devpts on /dev/pts, tmpfs on /dev/shm,
// /tmp (1777) and /work (0755), creating the mount points. One message per failure; a file
// system already mounted there is fine.
std::vector<std::string> mount_filesystems();

// Makes sure fds 0, 1 and 2 are open: on `device` if it can be opened, else /dev/null. (The
// kernel opens /dev/console for init only if the initramfs has that node.)
void ensure_std_fds(const char* device);

// Flushes file systems and powers the machine off (QEMU then exits). Never returns.
[[noreturn]] void power_off();

}  // namespace paddock::guest
