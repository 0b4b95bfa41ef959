#include "jail/steps.h"

#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <vector>

#include "paddock/base/os_error.h"

namespace paddock::runtime::jail::steps {

namespace fs = std::filesystem;

namespace {

Error fail(const char* step, const std::string& what, int err = errno) {
  return Error::jailer(std::string("step ") + step + ": " + base::error_message(what, err));
}

// Writes `value` to a (cgroup) file.
Status write_file(const char* step, const std::string& path, const std::string& value) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return fail(step, "open " + path);
  const ssize_t n = ::write(fd, value.data(), value.size());
  const int err = errno;
  ::close(fd);
  if (n != static_cast<ssize_t>(value.size())) {
    return fail(step, "write '" + value + "' to " + path, n < 0 ? err : EIO);
  }
  return {};
}

// mkdir -p, each level 0755 and root's; an existing directory is fine.
Status make_dirs(const char* step, const std::string& path) {
  // Each prefix of `path` ending before a '/' (and the whole path), made in turn.
  for (size_t end = path.find('/', 1);; end = path.find('/', end + 1)) {
    const std::string at = path.substr(0, end);
    if (!at.empty() && ::mkdir(at.c_str(), 0755) != 0 && errno != EEXIST) {
      return fail(step, "mkdir " + at);
    }
    if (end == std::string::npos) return {};
  }
}

Status copy_file(const std::string& from, const std::string& to) {
  const int in = ::open(from.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
  if (in < 0) return fail("chroot", "open " + from);
  const int out = ::open(to.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0444);
  if (out < 0) {
    const int err = errno;
    ::close(in);
    return fail("chroot", "create " + to, err);
  }
  // A plain read/write loop: copy_file_range refuses to cross filesystems on current kernels,
  // and this only runs when a hard link could not be made.
  Status st;
  std::vector<char> buf(1 << 20);
  while (true) {
    const ssize_t n = ::read(in, buf.data(), buf.size());
    if (n == 0) break;
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 || ::write(out, buf.data(), static_cast<size_t>(n)) != n) {
      st = fail("chroot", "copy " + from + " to " + to);
      break;
    }
  }
  ::close(in);
  ::close(out);
  return st;
}

bool below(const std::string& path, const std::string& dir) {
  return path.rfind(dir + "/", 0) == 0;
}

int cgroup_version_of(const JailSpec& s) {
  return s.cgroup_version != 0 ? s.cgroup_version : cgroup_version(s.cgroup_root).value_or(0);
}

volatile sig_atomic_t g_child = 0;

void forward(int sig) {
  if (g_child > 0) ::kill(g_child, sig);
}

}  // namespace

Status sanitize_process(const JailSpec& s) {
  std::vector<int> keep = s.keep_fds;
  if (s.lifeline_fd >= 0) keep.push_back(s.lifeline_fd);
  std::sort(keep.begin(), keep.end());
  keep.erase(std::unique(keep.begin(), keep.end()), keep.end());
  unsigned from = 3;
  for (int fd : keep) {
    if (static_cast<unsigned>(fd) > from && ::close_range(from, fd - 1, 0) != 0) {
      return fail("sanitize", "close_range");
    }
    if (::fcntl(fd, F_GETFD) < 0) return fail("sanitize", "fd " + std::to_string(fd) + " to keep");
    from = static_cast<unsigned>(fd) + 1;
  }
  if (::close_range(from, ~0U, 0) != 0) return fail("sanitize", "close_range");
  if (::clearenv() != 0) return fail("sanitize", "clearenv");
  return {};
}

Status make_chroot(const JailSpec& s) {
  if (auto st = make_dirs("chroot", s.chroot_base + "/qemu"); !st) return st;
  const std::string dir = jail_dir(s);
  if (::mkdir(dir.c_str(), 0700) != 0) {
    return fail("chroot",
                "mkdir " + dir + (errno == EEXIST ? " (a jail with this id exists)" : ""));
  }
  const std::string root = jail_root(s);
  if (::mkdir(root.c_str(), 0700) != 0) return fail("chroot", "mkdir " + root);
  // The VMM creates its sockets and (booted) RAM file here.
  if (::chown(root.c_str(), s.uid, s.gid) != 0) return fail("chroot", "chown " + root);
  for (const auto& [name, source] : s.files) {
    const std::string target = root + "/" + name;
    // The source itself, not what a link points to, must be a regular file the jail's user cannot
    // write: a hard link is the same file, and what a VMM could change, other VMs (and later
    // clones) would read. (A fifo or device would also block or fill the chroot when copied.)
    struct stat st {};
    if (::lstat(source.c_str(), &st) != 0) return fail("chroot", "lstat " + source);
    const bool writable = st.st_uid == s.uid || (st.st_mode & S_IWOTH) != 0 ||
                          ((st.st_mode & S_IWGRP) != 0 && st.st_gid == s.gid);
    if (!S_ISREG(st.st_mode)) {
      return Error::jailer("step chroot: " + source + ": not a regular file");
    }
    if (writable) {
      return Error::jailer("step chroot: " + source + ": writable by the jail's user " +
                           std::to_string(s.uid));
    }
    if (::link(source.c_str(), target.c_str()) != 0) {
      if (errno != EXDEV) return fail("chroot", "link " + source + " to " + target);
      if (auto copied = copy_file(source, target); !copied) return copied;
    }
    struct stat linked {};
    if (::lstat(target.c_str(), &linked) != 0 || !S_ISREG(linked.st_mode)) {
      return fail("chroot", "lstat " + target);
    }
  }
  return {};
}

Status make_cgroup(const JailSpec& s) {
  const int version = cgroup_version_of(s);
  if (version == 0) {
    return Error::jailer("step cgroup: " + s.cgroup_root +
                         ": neither a cgroup v2 mount nor a directory of v1 controllers");
  }
  const auto dirs = cgroup_dirs(s, version);
  const std::string pid = std::to_string(::getpid());
  if (version == 2) {
    // Every level from the root down to the parent delegates the controllers to its children.
    std::string at = s.cgroup_root;
    for (const auto& part : fs::path(s.cgroup_parent)) {
      if (auto st = write_file("cgroup", at + "/cgroup.subtree_control", "+cpu +memory +pids");
          !st) {
        return st;
      }
      at += '/';
      at += part.string();
      if (::mkdir(at.c_str(), 0755) != 0 && errno != EEXIST) return fail("cgroup", "mkdir " + at);
    }
    if (auto st = write_file("cgroup", at + "/cgroup.subtree_control", "+cpu +memory +pids"); !st)
      return st;
    const std::string& dir = dirs.front();
    if (::mkdir(dir.c_str(), 0755) != 0 && errno != EEXIST) return fail("cgroup", "mkdir " + dir);
    if (s.cpu_quota_us != 0) {
      if (auto st =
              write_file("cgroup", dir + "/cpu.max",
                         std::to_string(s.cpu_quota_us) + " " + std::to_string(s.cpu_period_us));
          !st)
        return st;
    }
    if (s.memory_bytes != 0) {
      if (auto st = write_file("cgroup", dir + "/memory.max", std::to_string(s.memory_bytes)); !st)
        return st;
      if (fs::exists(dir + "/memory.swap.max")) {
        if (auto st = write_file("cgroup", dir + "/memory.swap.max", "0"); !st) return st;
      }
    }
    if (s.pids_max != 0) {
      if (auto st = write_file("cgroup", dir + "/pids.max", std::to_string(s.pids_max)); !st)
        return st;
    }
    return write_file("cgroup", dir + "/cgroup.procs", pid);
  }
  // v1: one directory per controller (cpu, memory, pids, in cgroup_dirs' order).
  for (const auto& dir : dirs) {
    if (auto st = make_dirs("cgroup", fs::path(dir).parent_path().string()); !st) return st;
    if (::mkdir(dir.c_str(), 0755) != 0 && errno != EEXIST) return fail("cgroup", "mkdir " + dir);
  }
  if (s.cpu_quota_us != 0) {
    if (auto st =
            write_file("cgroup", dirs[0] + "/cpu.cfs_period_us", std::to_string(s.cpu_period_us));
        !st)
      return st;
    if (auto st =
            write_file("cgroup", dirs[0] + "/cpu.cfs_quota_us", std::to_string(s.cpu_quota_us));
        !st)
      return st;
  }
  if (s.memory_bytes != 0) {
    if (auto st = write_file("cgroup", dirs[1] + "/memory.limit_in_bytes",
                             std::to_string(s.memory_bytes));
        !st)
      return st;
    // With swap accounting, memory + swap gets the same limit: no escape into swap.
    if (fs::exists(dirs[1] + "/memory.memsw.limit_in_bytes")) {
      if (auto st = write_file("cgroup", dirs[1] + "/memory.memsw.limit_in_bytes",
                               std::to_string(s.memory_bytes));
          !st)
        return st;
    }
  }
  if (s.pids_max != 0) {
    if (auto st = write_file("cgroup", dirs[2] + "/pids.max", std::to_string(s.pids_max)); !st)
      return st;
  }
  for (const auto& dir : dirs) {
    if (auto st = write_file("cgroup", dir + "/cgroup.procs", pid); !st) return st;
  }
  return {};
}

Status join_netns(const JailSpec& s) {
  if (s.netns.empty()) {
    if (::unshare(CLONE_NEWNET) != 0) return fail("netns", "unshare a new network namespace");
    return {};
  }
  const int fd = ::open(s.netns.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return fail("netns", "open " + s.netns);
  const int rc = ::setns(fd, CLONE_NEWNET);
  const int err = errno;
  ::close(fd);
  if (rc != 0) return fail("netns", "setns " + s.netns, err);
  return {};
}

Status unshare_namespaces(const JailSpec& s) {
  if (::unshare(CLONE_NEWNS | CLONE_NEWIPC | CLONE_NEWUTS) != 0) {
    return fail("namespaces", "unshare mount, ipc and uts namespaces");
  }
  if (::sethostname(s.id.data(), s.id.size()) != 0) return fail("namespaces", "sethostname");
  return {};
}

Status pivot_into_chroot(const JailSpec& s) {
  // Nothing mounted from here on propagates back to the host.
  if (::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0) {
    return fail("pivot_root", "make / private");
  }
  const std::string root = jail_root(s);
  if (::mount(root.c_str(), root.c_str(), nullptr, MS_BIND, nullptr) != 0) {
    return fail("pivot_root", "bind " + root);
  }
  auto bind_ro = [&](const std::string& from, const std::string& to) -> Status {
    if (::mount(from.c_str(), to.c_str(), nullptr, MS_BIND, nullptr) != 0) {
      return fail("pivot_root", "bind " + from + " at " + to);
    }
    const unsigned long flags = MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV;
    if (::mount(nullptr, to.c_str(), nullptr, flags, nullptr) != 0) {
      return fail("pivot_root", "remount " + to + " read-only");
    }
    return {};
  };
  // A file is bound onto an empty file of its own name, a directory onto a directory.
  auto bind_path = [&](const std::string& path) -> Status {
    struct stat st {};
    if (::stat(path.c_str(), &st) != 0) return fail("pivot_root", "stat " + path);
    const std::string target = root + path;
    if (S_ISDIR(st.st_mode)) {
      if (auto made = make_dirs("pivot_root", target); !made) return made;
    } else {
      if (auto made = make_dirs("pivot_root", fs::path(target).parent_path().string()); !made)
        return made;
      const int fd = ::open(target.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0444);
      if (fd < 0) return fail("pivot_root", "create " + target);
      ::close(fd);
    }
    return bind_ro(path, target);
  };
  bool exec_bound = false;
  for (const auto& path : s.ro_binds) {
    if (auto st = bind_path(path); !st) return st;
    exec_bound = exec_bound || below(s.exec_file, path);
  }
  // The VMM binary on its own, at its own path, when no bind holds it.
  if (!exec_bound) {
    if (auto st = bind_path(s.exec_file); !st) return st;
  }
  // The host's top-level links into a bound directory (merged /usr: /lib64 -> usr/lib64 holds the
  // dynamic loader), recreated as they are.
  std::error_code ec;
  for (const auto& e : fs::directory_iterator("/", ec)) {
    if (!e.is_symlink(ec)) continue;
    const fs::path target = fs::read_symlink(e.path(), ec);
    if (ec) continue;
    const std::string resolved = (fs::path("/") / target).lexically_normal().string();
    for (const auto& dir : s.ro_binds) {
      if (resolved == dir || below(resolved, dir)) {
        const std::string link = root + "/" + e.path().filename().string();
        if (::symlink(target.c_str(), link.c_str()) != 0 && errno != EEXIST) {
          return fail("pivot_root", "symlink " + link);
        }
        break;
      }
    }
  }
  if (::chdir(root.c_str()) != 0) return fail("pivot_root", "chdir " + root);
  // pivot_root(".", "."): the old root is stacked on the new one and detached at once.
  if (::syscall(SYS_pivot_root, ".", ".") != 0) return fail("pivot_root", "pivot_root " + root);
  if (::umount2(".", MNT_DETACH) != 0) return fail("pivot_root", "detach the host's root");
  if (::chdir("/") != 0) return fail("pivot_root", "chdir /");
  return {};
}

Status make_devices(const JailSpec& s) {
  if (::mkdir("/dev", 0755) != 0 && errno != EEXIST) return fail("devices", "mkdir /dev");
  if (::mount("tmpfs", "/dev", "tmpfs", MS_NOSUID | MS_NOEXEC, "mode=0755,size=64k,nr_inodes=32") !=
      0) {
    return fail("devices", "mount a tmpfs at /dev");
  }
  struct Node {
    const char* path;
    unsigned major, minor;
    mode_t mode;
  };
  std::vector<Node> nodes = {{"/dev/null", 1, 3, 0666},
                             {"/dev/zero", 1, 5, 0666},
                             {"/dev/random", 1, 8, 0666},
                             {"/dev/urandom", 1, 9, 0666}};
  if (s.kvm) nodes.push_back({"/dev/kvm", 10, 232, 0660});
  for (const auto& n : nodes) {
    if (::mknod(n.path, S_IFCHR | n.mode, makedev(n.major, n.minor)) != 0) {
      return fail("devices", std::string("mknod ") + n.path);
    }
    if (::chmod(n.path, n.mode) != 0) return fail("devices", std::string("chmod ") + n.path);
  }
  if (s.kvm && ::chown("/dev/kvm", s.uid, s.gid) != 0) return fail("devices", "chown /dev/kvm");
  return {};
}

Status set_rlimits(const JailSpec& s) {
  auto set = [](int resource, rlim_t value, const char* name) -> Status {
    const rlimit r{value, value};
    if (::setrlimit(resource, &r) != 0) return fail("rlimits", std::string("setrlimit ") + name);
    return {};
  };
  if (auto st = set(RLIMIT_NOFILE, s.rlimit_nofile, "RLIMIT_NOFILE"); !st) return st;
  if (s.rlimit_fsize != 0) {
    if (auto st = set(RLIMIT_FSIZE, s.rlimit_fsize, "RLIMIT_FSIZE"); !st) return st;
  }
  return set(RLIMIT_CORE, 0, "RLIMIT_CORE");
}

Status drop_privileges(const JailSpec& s) {
  if (::setgroups(0, nullptr) != 0) return fail("privileges", "setgroups");
  if (::setresgid(s.gid, s.gid, s.gid) != 0) {
    return fail("privileges", "setresgid " + std::to_string(s.gid));
  }
  if (::setresuid(s.uid, s.uid, s.uid) != 0) {
    return fail("privileges", "setresuid " + std::to_string(s.uid));
  }
  if (::getuid() != s.uid || ::geteuid() != s.uid || ::getgid() != s.gid || ::setuid(0) == 0) {
    return Error::jailer("step privileges: uid " + std::to_string(s.uid) + ": not dropped");
  }
  return {};
}

int run(const JailSpec& s) {
  auto report = [](const Error& e, int code) {
    std::fprintf(stderr, "paddock-jailer: %s\n", e.detail().c_str());
    std::fflush(stderr);
    return code;
  };
  for (auto step : {sanitize_process, make_chroot, make_cgroup, join_netns, unshare_namespaces,
                    pivot_into_chroot, make_devices}) {
    if (auto st = step(s); !st) return report(st.error(), 70);
  }
  // The VMM is pid 1 of its own pid namespace: it sees no other process.
  if (::unshare(CLONE_NEWPID) != 0) return report(fail("pid_namespace", "unshare"), 70);
  sigset_t forwarded, old;
  sigemptyset(&forwarded);
  for (int sig : {SIGTERM, SIGINT, SIGHUP}) sigaddset(&forwarded, sig);
  // The supervisor's own lifeline: it holds the write end for as long as it lives, and never
  // writes. The VMM's parent is outside its pid namespace (getppid() reads 0 there), so the child
  // learns that its supervisor died before it armed its own parent-death signal from EOF on this
  // pipe.
  int alive_pipe[2];
  if (::pipe2(alive_pipe, O_CLOEXEC) != 0) return report(fail("pid_namespace", "pipe2"), 70);
  ::sigprocmask(SIG_BLOCK, &forwarded, &old);
  const pid_t child = ::fork();
  if (child < 0) return report(fail("pid_namespace", "fork"), 70);
  if (child == 0) {
    ::sigprocmask(SIG_SETMASK, &old, nullptr);
    ::close(alive_pipe[1]);
    if (s.lifeline_fd >= 0)
      ::close(s.lifeline_fd);  // the worker's lifeline stays with the supervisor
    for (auto step : {set_rlimits, drop_privileges}) {
      if (auto st = step(s); !st) ::_exit(report(st.error(), 71));
    }
    // The VMM dies with its jailer (which dies with the worker). Armed after the last credential
    // change, which would clear it; then that pipe says whether the jailer is already gone.
    if (::prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || ::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) {
      ::_exit(report(fail("exec", "prctl"), 71));
    }
    pollfd alive{alive_pipe[0], POLLIN, 0};
    if (::poll(&alive, 1, 0) != 0) ::_exit(72);  // EOF (or an error): the supervisor is gone
    std::vector<char*> argv;
    argv.push_back(const_cast<char*>(s.exec_file.c_str()));
    for (const auto& a : s.args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    char* envp[] = {nullptr};
    ::execve(s.exec_file.c_str(), argv.data(), envp);
    ::_exit(report(fail("exec", "execve " + s.exec_file), 71));
  }
  g_child = child;
  struct sigaction sa {};
  sa.sa_handler = forward;
  for (int sig : {SIGTERM, SIGINT, SIGHUP}) ::sigaction(sig, &sa, nullptr);
  ::sigprocmask(SIG_SETMASK, &old, nullptr);
  // The supervisor keeps no privilege either (it may still signal its child: same uid).
  ::close(alive_pipe[0]);
  if (auto st = drop_privileges(s); !st) {
    ::kill(child, SIGKILL);
    return report(st.error(), 70);
  }
  // The worker's lifeline: EOF when the worker process is gone, however it died (its
  // PR_SET_PDEATHSIG was cleared by setresuid() above, and is bound to the thread that started
  // us, not to the worker). Then the VMM is killed; it dies with us anyway (its own
  // parent-death signal), but not before it is reaped here.
  if (s.lifeline_fd >= 0) {
    const int pidfd = static_cast<int>(::syscall(SYS_pidfd_open, child, 0));
    if (pidfd < 0) {
      ::kill(child, SIGKILL);
      return report(fail("supervise", "pidfd_open"), 70);
    }
    while (true) {
      pollfd watch[2] = {{pidfd, POLLIN, 0}, {s.lifeline_fd, POLLIN, 0}};
      if (::poll(watch, 2, -1) < 0) {
        if (errno == EINTR) continue;  // a forwarded signal
        ::kill(child, SIGKILL);
        break;
      }
      if (watch[0].revents != 0) break;  // the VMM ended
      if (watch[1].revents != 0) {
        char byte;
        if (::read(s.lifeline_fd, &byte, 1) <= 0) {  // EOF: the worker is gone
          ::kill(child, SIGKILL);
          break;
        }
      }
    }
    ::close(pidfd);
  }
  int status = 0;
  while (::waitpid(child, &status, 0) < 0) {
    if (errno != EINTR) return report(fail("wait", "waitpid"), 70);
  }
  if (WIFSIGNALED(status)) {
    // Die the same way, so the caller sees how the VMM ended.
    const int sig = WTERMSIG(status);
    struct sigaction dfl {};
    dfl.sa_handler = SIG_DFL;
    ::sigaction(sig, &dfl, nullptr);
    ::raise(sig);
    return 128 + sig;
  }
  return WEXITSTATUS(status);
}

}  // namespace paddock::runtime::jail::steps
