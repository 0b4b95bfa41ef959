// Reading a file out of a directory that an untrusted process controls — a jailed QEMU's chroot,
// which a guest that took QEMU over controls too. Such a process can put a symlink, a FIFO or a
// hard link where a file is expected, to make a root process on the host read (and publish) a
// host file or block on a read forever; these functions open only a regular file with one link,
// and never follow a symlink in its last component.
//
// REQUIRES: the directories above the file are the host's (the untrusted process cannot rename
// them). Thread-safety: free functions.
#pragma once

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <string>

#include "paddock/base/os_error.h"

namespace paddock::runtime::os {

// Opens `path` for reading if it is a regular file with one link and not a symlink; sets `error`
// (naming `what` and errno) and returns -1 otherwise. The caller closes the fd.
inline int open_untrusted_file(const std::string& path, const std::string& what,
                               std::string& error) {
  // O_NONBLOCK: opening a FIFO must not wait for a writer.
  const int fd = ::open(path.c_str(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) {
    error = base::error_message(what + ": open");
    return -1;
  }
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    error = base::error_message(what + ": stat");
  } else if (!S_ISREG(st.st_mode)) {
    error = what + ": not a regular file";
  } else if (st.st_nlink != 1) {
    error = what + ": has " + std::to_string(st.st_nlink) + " links (a hard link to another file?)";
  }
  if (error.empty()) return fd;
  ::close(fd);
  return -1;
}

// The first `max_bytes` of `path` (in the untrusted directory), or "" with `error` set ("read
// /run/vm/qemu.pid: not a regular file").
inline std::string read_untrusted_file(const std::string& path, size_t max_bytes,
                                       std::string& error) {
  const int fd = open_untrusted_file(path, "read " + path, error);
  if (fd < 0) return {};
  std::string text(max_bytes, '\0');
  size_t got = 0;
  while (got < max_bytes) {
    const ssize_t n = ::read(fd, text.data() + got, max_bytes - got);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) error = base::error_message("read " + path);
    if (n <= 0) break;
    got += static_cast<size_t>(n);
  }
  ::close(fd);
  text.resize(error.empty() ? got : 0);
  return text;
}

// Copies `from` (in the untrusted directory) to `to` (the host's), which is created or replaced
// and gets `mode` exactly. Returns "" or what failed, naming the file and errno
// ("copy /run/vm/snapshot.state: open: Too many levels of symbolic links").
inline std::string copy_untrusted_file(const std::string& from, const std::string& to,
                                       mode_t mode) {
  const std::string what = "copy " + from;
  std::string error;
  const int in = open_untrusted_file(from, what, error);
  if (in < 0) return error;
  ::unlink(to.c_str());  // a new inode: nothing that holds the old one open sees the change
  const int out = ::open(to.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode);
  if (out < 0) {
    error = base::error_message(what + " to " + to + ": create");
  } else {
    char buf[1 << 16];
    for (;;) {
      const ssize_t n = ::read(in, buf, sizeof buf);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) {
        error = base::error_message(what + ": read");
        break;
      }
      if (n == 0) break;
      for (ssize_t done = 0; done < n;) {
        const ssize_t w = ::write(out, buf + done, static_cast<size_t>(n - done));
        if (w < 0 && errno == EINTR) continue;
        if (w < 0) {
          error = base::error_message(what + " to " + to + ": write");
          break;
        }
        done += w;
      }
      if (!error.empty()) break;
    }
    if (error.empty() && ::fchmod(out, mode) != 0) error = base::error_message("chmod " + to);
    if (::close(out) != 0 && error.empty())
      error = base::error_message(what + " to " + to + ": close");
  }
  ::close(in);
  return error;
}

}  // namespace paddock::runtime::os
