// Child processes of the agent: SIGCHLD as a file descriptor, reaping, and killing a job's whole
// process tree. The agent is PID 1 in a VM, or a child subreaper on the host, so every process a
// job leaves behind (daemonised, in a new session or not) ends up as its descendant and is
// reaped here.
//
// Thread-safety: the agent is single-threaded.
#pragma once

#include <sys/resource.h>
#include <sys/types.h>

#include <functional>
#include <string>

namespace paddock::guest {

class Reaper {
 public:
  // Blocks SIGCHLD and opens a signalfd for it. Empty on success, else why not.
  std::string init();
  ~Reaper();

  // Readable when a child changed state; poll it, then call reap().
  int fd() const { return fd_; }

  // Reaps every child that has exited; calls on_exit(pid, wait status, its rusage) for each.
  void reap(const std::function<void(pid_t, int, const rusage&)>& on_exit = {});

 private:
  int fd_ = -1;
};

// SIGKILLs every descendant of the agent (found through /proc), reaping as it goes, until none is
// left or `budget_ms` has passed; on_exit as for Reaper::reap. True if none is left.
bool kill_descendants(Reaper& reaper, int budget_ms,
                      const std::function<void(pid_t, int, const rusage&)>& on_exit);

}  // namespace paddock::guest
