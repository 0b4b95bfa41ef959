#include "init.h"

#include <fcntl.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>

#include "console.h"
#include "paddock/base/os_error.h"

namespace paddock::guest {

std::vector<std::string> mount_filesystems() {
  struct Mount {
    const char* source;
    const char* target;
    const char* type;
    unsigned long flags;
    const char* data;
  };
  // Order matters: /dev before /dev/pts and /dev/shm, which live in it.
  constexpr unsigned long kNoExecs = MS_NOSUID | MS_NODEV | MS_NOEXEC;
  const Mount mounts[] = {
      {"proc", "/proc", "proc", kNoExecs, nullptr},
      {"sysfs", "/sys", "sysfs", kNoExecs, nullptr},
      {"devtmpfs", "/dev", "devtmpfs", MS_NOSUID, "mode=0755"},
      {"devpts", "/dev/pts", "devpts", MS_NOSUID | MS_NOEXEC, "mode=0620,ptmxmode=0666"},
      {"tmpfs", "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777"},
      {"tmpfs", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777"},
      {"tmpfs", "/work", "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755"},
  };
  std::vector<std::string> errors;
  for (const auto& m : mounts) {
    if (::mkdir(m.target, 0755) != 0 && errno != EEXIST) {
      errors.push_back(base::error_message(std::string("mkdir ") + m.target));
      continue;
    }
    if (::mount(m.source, m.target, m.type, m.flags, m.data) != 0 && errno != EBUSY) {
      errors.push_back(base::error_message(std::string("mount ") + m.type + " on " + m.target));
    }
  }
  return errors;
}

void ensure_std_fds(const char* device) {
  for (int fd = 0; fd <= 2; ++fd) {
    if (::fcntl(fd, F_GETFD) >= 0) continue;
    int opened = ::open(device, O_RDWR | O_NOCTTY);
    if (opened < 0) opened = ::open("/dev/null", O_RDWR);
    if (opened >= 0 && opened != fd) {
      ::dup2(opened, fd);
      ::close(opened);
    }
  }
}

void power_off() {
  ::sync();
  ::reboot(RB_POWER_OFF);
  // Still here: not allowed to power off (not PID 1 in the initial namespaces). Wait for the host.
  for (;;) ::pause();
}

}  // namespace paddock::guest
