#include "reaper.h"

#include <dirent.h>
#include <poll.h>
#include <signal.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <vector>

#include "paddock/base/os_error.h"

namespace paddock::guest {
namespace {

// Parent of `pid` from /proc/PID/stat, or -1 if it is gone.
pid_t parent_of(pid_t pid) {
  char path[64];
  std::snprintf(path, sizeof path, "/proc/%d/stat", static_cast<int>(pid));
  FILE* f = std::fopen(path, "re");
  if (f == nullptr) return -1;
  char line[1024];
  const size_t n = std::fread(line, 1, sizeof line - 1, f);
  std::fclose(f);
  line[n] = '\0';
  // "PID (COMM) STATE PPID ...": COMM may hold spaces and parentheses; the last ')' ends it.
  std::string_view s(line, n);
  const size_t close = s.rfind(')');
  if (close == std::string_view::npos || close + 4 >= s.size()) return -1;
  return static_cast<pid_t>(std::strtol(line + close + 4, nullptr, 10));
}

std::vector<pid_t> descendants_of(pid_t root) {
  std::multimap<pid_t, pid_t> children;
  if (DIR* d = ::opendir("/proc")) {
    while (const dirent* e = ::readdir(d)) {
      char* end = nullptr;
      const long pid = std::strtol(e->d_name, &end, 10);
      if (pid <= 0 || *end != '\0') continue;
      const pid_t parent = parent_of(static_cast<pid_t>(pid));
      if (parent > 0) children.emplace(parent, static_cast<pid_t>(pid));
    }
    ::closedir(d);
  }
  std::vector<pid_t> out;
  std::vector<pid_t> todo{root};
  while (!todo.empty()) {
    const pid_t p = todo.back();
    todo.pop_back();
    auto [lo, hi] = children.equal_range(p);
    for (auto it = lo; it != hi; ++it) {
      out.push_back(it->second);
      todo.push_back(it->second);
    }
  }
  return out;
}

}  // namespace

std::string Reaper::init() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGCHLD);
  if (::sigprocmask(SIG_BLOCK, &set, nullptr) != 0) return base::error_message("block SIGCHLD");
  fd_ = ::signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
  if (fd_ < 0) return base::error_message("signalfd SIGCHLD");
  return {};
}

Reaper::~Reaper() {
  if (fd_ >= 0) ::close(fd_);
}

void Reaper::reap(const std::function<void(pid_t, int, const rusage&)>& on_exit) {
  signalfd_siginfo info;
  while (::read(fd_, &info, sizeof info) == static_cast<ssize_t>(sizeof info)) {
  }
  for (;;) {
    int status = 0;
    rusage usage{};
    const pid_t pid = ::wait4(-1, &status, WNOHANG, &usage);
    if (pid <= 0) return;  // none exited (0), or no children at all (-1, ECHILD)
    if (on_exit) on_exit(pid, status, usage);
  }
}

bool kill_descendants(Reaper& reaper, int budget_ms,
                      const std::function<void(pid_t, int, const rusage&)>& on_exit) {
  const auto end = std::chrono::steady_clock::now() + std::chrono::milliseconds(budget_ms);
  const pid_t self = ::getpid();
  for (;;) {
    reaper.reap(on_exit);
    const auto pids = descendants_of(self);
    if (pids.empty()) return true;
    // Processes fork while we look: kill what we saw, reap, and look again.
    for (pid_t p : pids) ::kill(p, SIGKILL);
    if (std::chrono::steady_clock::now() >= end) return false;
    pollfd p{reaper.fd(), POLLIN, 0};
    ::poll(&p, 1, 5);
  }
}

}  // namespace paddock::guest
